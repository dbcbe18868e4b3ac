"""Layer-wise concept profiles drawn in the style of the papers' Figure 8.

Every layer gets the normalised score ``e^(R² - 1)`` (``1/e`` means "as good as predicting
the mean", values near 0 mean a collapsed regression) for the model, its random-weights twin
and the shuffled-measures baseline. The functions only build :class:`matplotlib.figure.Figure`
objects; saving or showing them is up to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.probe.stats import mean_ci95
from rcvlab.probe.stats import normalised_r2 as normalised

#: Plotting order, legend labels (the model's label is derived from its weights) and colours
#: (blue / orange / green as in the papers' figures).
CURVES: tuple[tuple[str, str, str], ...] = (
    ("model", "", "tab:blue"),
    ("random", "random weights", "tab:orange"),
    ("shuffled", "shuffled measures", "tab:green"),
)
ERRORBAR_NOTE = "error bars: 95 % CI of the mean\nover repetitions"
#: The same for a leave-one-class-out profile: one value per held-out class.
ERRORBAR_NOTE_LOCO = "error bars: 95 % CI of the mean\nover held-out classes"
#: Short names of the splits for titles.
SPLIT_LABELS = {
    "per-class": "per class",
    "pooled": "pooled",
    "leave-one-class-out": "leave-one-class-out",
}
Y_LABEL = "normalised test R²  e^(R²−1)"
Y_LIMITS = (0.0, 1.1)


def normalised_ci95(score: LayerScore) -> tuple[float, float]:
    """95 % interval of the mean normalised score of one layer.

    A Student-t interval (:func:`rcvlab.probe.stats.mean_ci95`) over the per-repetition
    values ``e^(R²_i - 1)``, so that it belongs to the plotted point ``r2_norm_mean`` (their
    mean). Without repetitions the stored R² interval is mapped through ``e^(x - 1)``.

    Parameters
    ----------
    score : LayerScore
        The layer's scores.

    Returns
    -------
    tuple of float
        ``(low, high)``, clipped below at 0 (the score is positive); NaN when unknown.
    """
    values = np.atleast_1d(normalised(np.asarray(score.r2, dtype=np.float64)))
    values = values[np.isfinite(values)]
    if values.size == 0:
        lo, hi = score.r2_ci95
        return (
            float(normalised(lo)) if math.isfinite(lo) else math.nan,
            float(normalised(hi)) if math.isfinite(hi) else math.nan,
        )
    if values.size == 1:
        return float(values[0]), float(values[0])
    lo, hi = mean_ci95(values)
    return max(lo, 0.0), hi


def model_label(result: ProfileResult) -> str:
    """Legend label of the model curve: ``"ImageNet"`` for ImageNet weights, else the weights."""
    weights = result.weights.strip()
    if not weights:
        return "pretrained"
    if "imagenet" in weights.lower():
        return "ImageNet"
    return weights


def _series(result: ProfileResult, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return ``(y, err_low, err_high)`` of profile ``kind`` aligned to the model's layers."""
    scores = result.profiles.get(kind)
    if not scores:
        return None
    by_layer = {s.layer: s for s in scores}
    n = len(result.layers)
    y = np.full(n, np.nan)
    lo = np.zeros(n)
    hi = np.zeros(n)
    for i, layer in enumerate(result.layers):
        s = by_layer.get(layer)
        if s is None:
            continue
        y[i] = s.r2_norm_mean
        ci_lo, ci_hi = normalised_ci95(s)
        # Error bars are distances from the point; an unknown bound draws no bar on that side.
        lo[i] = max(y[i] - ci_lo, 0.0) if math.isfinite(ci_lo) and math.isfinite(y[i]) else 0.0
        hi[i] = max(ci_hi - y[i], 0.0) if math.isfinite(ci_hi) and math.isfinite(y[i]) else 0.0
    return y, lo, hi


def _default_title(result: ProfileResult) -> str:
    parts = [p for p in (result.model, result.measure) if p]
    title = " — ".join(parts) if parts else "concept profile"
    if result.split == "leave-one-class-out":
        title += " (leave-one-class-out)"
    return title


def errorbar_note(results: Sequence[ProfileResult]) -> str:
    """What the error bars of ``results`` are intervals over (repetitions, held-out classes)."""
    loco = [r.split == "leave-one-class-out" for r in results]
    if all(loco):
        return ERRORBAR_NOTE_LOCO
    if any(loco):
        return (
            "error bars: 95 % CI of the mean\nover repetitions (leave-one-class-out: "
            "over held-out classes)"
        )
    return ERRORBAR_NOTE


def _root_figure(ax: Axes) -> Figure:
    try:
        fig = ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10 has no ``root`` and returns the root already
        fig = ax.get_figure()
    assert isinstance(fig, Figure)
    return fig


def plot_profile(
    result: ProfileResult,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    legend: bool = True,
) -> Figure:
    """Draw one layer-wise profile: model, random-weights twin and shuffled measures.

    Parameters
    ----------
    result : ProfileResult
        The profile; ``profiles["model"]`` fixes the layers and their order, baselines that
        were not run are left out.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure with one axes is made when omitted.
    title : str, optional
        Axes title; defaults to ``"<model> — <measure>"`` (with ``(leave-one-class-out)``
        for such a profile).
    legend : bool
        Whether to draw the legend in this axes.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes. The axes has one errorbar container per curve, in the
        order model, random, shuffled; y is ``r2_norm_mean`` of each layer, the error bars
        are 95 % intervals (see :func:`normalised_ci95`): over repetitions, or over held-out
        classes for a leave-one-class-out profile.
    """
    if ax is None:
        n = len(result.layers)
        fig = Figure(figsize=(max(5.0, 1.2 + 0.42 * n) + 2.2, 4.2), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)

    layers = result.layers
    x = np.arange(len(layers))
    for kind, label, color in CURVES:
        series = _series(result, kind)
        if series is None:
            continue
        y, lo, hi = series
        ax.errorbar(
            x,
            y,
            yerr=np.vstack([lo, hi]),
            label=label or model_label(result),
            color=color,
            marker="o",
            markersize=4,
            linewidth=1.5,
            capsize=3,
        )

    ax.axhline(1.0 / math.e, color="tab:red", linestyle="--", linewidth=1.2, label="R² = 0")

    best = result.best_layer
    i_best = layers.index(best)
    best_score = result.score(best)
    ax.axvline(i_best, color="0.6", linestyle=":", linewidth=1.0, zorder=0)
    ax.plot(
        [i_best],
        [best_score.r2_norm_mean],
        linestyle="none",
        marker="*",
        markersize=15,
        markerfacecolor="gold",
        markeredgecolor="black",
        zorder=5,
        label="best layer",
    )
    ax.annotate(
        best,
        (i_best, best_score.r2_norm_mean),
        xytext=(0, 9),
        textcoords="offset points",
        ha="center",
        fontsize="small",
        fontweight="bold",
    )

    ax.set_xticks(x, layers, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.5, len(layers) - 0.5)
    # Headroom above 1 for the best-layer label.
    ax.set_ylim(*Y_LIMITS)
    ax.set_ylabel(Y_LABEL)
    ax.set_xlabel("layer")
    ax.set_title(_default_title(result) if title is None else title)
    ax.grid(axis="y", alpha=0.3)
    if legend:
        # Outside the axes: the curves span the whole height, so any inside corner hides data.
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            title=errorbar_note([result]),
            title_fontsize="x-small",
        )
    return fig


def shared_legend(
    fig: Figure,
    axes: Sequence[Any],
    title: str,
    rename: Callable[[str], str] | None = None,
) -> None:
    """One legend below all panels: the curves and markers mean the same in every panel, so
    take the panel with the most entries (some results may lack a baseline)."""
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda h: len(h[1]))
    if rename is not None:
        labels = [rename(lb) for lb in labels]
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=len(labels),
        fontsize="small",
        title=title,
        title_fontsize="x-small",
    )


def plot_profiles(
    results: Sequence[ProfileResult],
    *,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Draw several profiles side by side, one panel per result (e.g. one per model).

    Parameters
    ----------
    results : sequence of ProfileResult
        The profiles, drawn left to right.
    titles : sequence of str, optional
        One title per panel; defaults to ``"<model> — <measure>"``.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with ``len(results)`` axes sharing the y axis.
    """
    if not results:
        raise ValueError("plot_profiles needs at least one result.")
    if titles is not None and len(titles) != len(results):
        raise ValueError(f"Got {len(titles)} titles for {len(results)} results.")
    widths = [max(4.0, 1.0 + 0.42 * len(r.layers)) for r in results]
    fig = Figure(figsize=(sum(widths), 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False, width_ratios=widths)[0]
    for i, (result, ax) in enumerate(zip(results, axes, strict=True)):
        plot_profile(result, ax=ax, title=None if titles is None else titles[i], legend=False)
        if i > 0:
            ax.set_ylabel("")
    shared_legend(fig, axes, errorbar_note(results).replace("\n", " "))
    return fig


def plot_split_comparison(
    per_class: Sequence[ProfileResult],
    held_out: Sequence[ProfileResult],
) -> Figure:
    """Per-class beside leave-one-class-out profiles: one row per network, two panels.

    The left panel of a row shows the profile fitted and tested within each class, the
    right one the profile fitted on the other classes and tested on the held-out class, on
    the same y axis, so that a layer that reads the measure only among images of a class it
    was fitted on stands out.

    Parameters
    ----------
    per_class, held_out : sequence of ProfileResult
        One per network, in the same order (``held_out[i]`` of the same model as
        ``per_class[i]``).

    Returns
    -------
    matplotlib.figure.Figure
        ``2 * len(per_class)`` axes, row-major (per class, leave-one-class-out per row),
        sharing the y axis, with one legend.

    Raises
    ------
    ValueError
        Empty or unequal sequences, or a pair of different models.
    """
    if not per_class or len(per_class) != len(held_out):
        raise ValueError(
            f"plot_split_comparison needs one held-out profile per per-class profile, got "
            f"{len(per_class)} and {len(held_out)}."
        )
    for a, b in zip(per_class, held_out, strict=True):
        if a.model != b.model:
            raise ValueError(f"Profiles of different models side by side: {a.model}, {b.model}.")
    width = max(4.0, 1.0 + 0.42 * max(len(r.layers) for r in (*per_class, *held_out)))
    fig = Figure(figsize=(2 * width, 4.2 * len(per_class) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(per_class), 2, sharey=True, squeeze=False)
    for row, (a, b) in enumerate(zip(per_class, held_out, strict=True)):
        for col, res in enumerate((a, b)):
            ax = axes[row, col]
            name = " — ".join(p for p in (res.model, res.measure) if p) or "profile"
            plot_profile(
                res,
                ax=ax,
                title=f"{name}: {SPLIT_LABELS.get(res.split, res.split)}",
                legend=False,
            )
            if col > 0:
                ax.set_ylabel("")
    shared_legend(fig, axes.ravel(), errorbar_note([*per_class, *held_out]).replace("\n", " "))
    return fig


__all__ = [
    "ERRORBAR_NOTE",
    "ERRORBAR_NOTE_LOCO",
    "errorbar_note",
    "model_label",
    "normalised",
    "normalised_ci95",
    "plot_profile",
    "plot_profiles",
    "plot_split_comparison",
]
