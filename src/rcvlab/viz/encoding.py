"""Figures of paper 001: sparsity (Figs 4-5), alignment (Fig. 3) and consistency (Table 2).

The functions only build :class:`matplotlib.figure.Figure` objects (Agg canvas); saving or
showing them is up to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from rcvlab.analyses.alignment import AlignmentCurve, AlignmentResult
from rcvlab.analyses.consistency import ConsistencyResult
from rcvlab.analyses.sparsity import SparsityResult
from rcvlab.viz.profile import shared_legend

R2_FLOOR = -1.0
"""Lowest R² drawn by :func:`plot_sparsity`; points below sit on the floor as open triangles."""


def _title_bits(meta: Mapping[str, object]) -> str:
    return " — ".join(str(meta[k]) for k in ("model", "layer", "measure") if meta.get(k))


def plot_sparsity(result: SparsityResult, *, floor: float = R2_FLOOR) -> Figure:
    """Test R² against the number of non-zero coefficients, one panel per test set.

    As the paper's Figs 4-5: every alpha of the grid is a point at its mean non-zero count
    (x, log scale; symmetric-log when some fit kept no coefficient), the test R² mean with its 95 %
    interval as a band, and the training R² (dashed) for comparison. The plain fit
    (alpha 0) is the right-most point, marked with a square.

    Parameters
    ----------
    result : SparsityResult
    floor : float
        Lowest R² shown; means below it are drawn on it as open triangles (a plain fit
        evaluated on another class can be far below 0).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per test set (``result.test_sets`` order), each with its own R² range.
    """
    f = result.to_frame()
    sets = list(result.test_sets)
    fig = Figure(figsize=(4.2 * len(sets) + 0.6, 3.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    x_all = f.n_nonzero_mean.to_numpy()
    log_x = bool(np.nanmin(x_all) >= 1)
    for ax, name in zip(axes, sets, strict=True):
        g = f[f.test_set == name].sort_values("n_nonzero_mean")
        x = g.n_nonzero_mean.to_numpy()
        for col, label, color, style in (
            ("r2_train", "training data", "tab:gray", "--"),
            ("r2_test", "test" if name != "same" else "test (same class)", "tab:blue", "-"),
        ):
            y = g[f"{col}_mean"].to_numpy()
            lo = g[f"{col}_ci95_low"].to_numpy()
            hi = g[f"{col}_ci95_high"].to_numpy()
            shown = np.maximum(y, floor)
            ax.plot(x, shown, style, color=color, marker=".", label=label)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(
                    x[ok],
                    np.clip(lo[ok], floor, None),
                    np.clip(hi[ok], floor, None),
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
            below = y < floor
            if below.any():
                ax.plot(x[below], np.full(below.sum(), floor), "v", mfc="none", color=color)
        plain = g[g.alpha == 0]
        if not plain.empty:
            ax.plot(
                plain.n_nonzero_mean,
                np.maximum(plain.r2_test_mean, floor),
                "s",
                color="tab:orange",
                label=f"plain fit ({result.plain})",
            )
        if log_x:
            ax.set_xscale("log")
            ax.set_xlim(np.nanmin(x_all) / 1.5, np.nanmax(x_all) * 1.5)
        else:  # some fit kept no coefficient: 0 must fit on the axis
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(0, np.nanmax(x_all) * 1.5)
        # plain numbers on the count axis; minor-tick labels (3x10^1 ...) would overlap
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        means = g[["r2_test_mean", "r2_train_mean"]].to_numpy()
        low = float(np.nanmin(means)) if np.isfinite(means).any() else 0.0
        ax.set_ylim(max(floor, low) - 0.05, 1.02)
        ax.axhline(0.0, color="tab:red", linewidth=0.8, linestyle=":")
        ax.set_xlabel("non-zero coefficients (mean over repetitions)")
        ax.set_title(f"test set: {name} (n = {result.n_test[name]})", fontsize="medium")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("R²")
    shared_legend(
        fig,
        axes[:1],
        "bands: 95 % CI of the mean over repetitions",
        rename=lambda lb: lb.replace(" (same class)", ""),
    )
    train = result.meta.get("train_class", "training class")
    bits = _title_bits(result.meta)
    fig.suptitle(
        f"Lasso path, trained on {train}"
        + (f" ({bits})" if bits else "")
        + f": {result.reps} repetitions, {result.n_train} training images",
        fontsize="medium",
    )
    return fig


def plot_alignment(
    result: AlignmentResult | Sequence[AlignmentCurve] | Mapping[str, AlignmentCurve],
    *,
    title: str | None = None,
) -> Figure:
    """Cumulative norm ``|v̂_(1..d')|`` against ``d'`` for each RCV (the paper's Fig. 3).

    Parameters
    ----------
    result : AlignmentResult, sequence of AlignmentCurve, or mapping of label to curve
        E.g. the plain and the Lasso RCV of the same split (one :func:`alignment` call).
    title : str, optional
        Default: "Alignment of the RCV" with the model, layer and measure of
        ``result.meta``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one line per curve (an RCV without direction is listed in the legend but
        not drawn).
    """
    meta = result.meta if isinstance(result, AlignmentResult) else {}
    items = list(result.items()) if isinstance(result, Mapping) else [(None, r) for r in result]
    if not items:
        raise ValueError("plot_alignment needs at least one curve.")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, r) in enumerate(items):
        name = label or r.label
        extra = f"{r.n_nonzero} of {r.dim} non-zero"
        if math.isfinite(r.r2_test):
            extra += f", test R² = {r.r2_test:.3f}"
        if not r.defined:
            ax.plot([], [], color=f"C{i}", label=f"{name}: no direction (all coefficients 0)")
            continue
        ax.plot(np.arange(1, r.max_dims + 1), r.curve, color=f"C{i}", label=f"{name}: {extra}")
    ax.set_xlabel("d' (dimensions, sorted by |v̂_i|)")
    ax.set_ylabel("|v̂_1…d'|")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(1, max(r.max_dims for _, r in items))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    bits = _title_bits(meta)
    ax.set_title(
        title if title is not None else "Alignment of the RCV" + (f": {bits}" if bits else "")
    )
    return fig


def plot_consistency(result: ConsistencyResult, *, title: str | None = None) -> Figure:
    """Angle between RCVs per pair (mean ± std over repetitions), plain and Lasso side by side.

    Parameters
    ----------
    result : ConsistencyResult
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes with grouped bars (one group per pair, one bar per regressor) and a dashed
        line at 90° (orthogonal: no shared direction).
    """
    f = result.to_frame()
    pairs = list(dict.fromkeys(zip(f.a, f.b, strict=True)))
    regs = list(dict.fromkeys(f.regressor))
    fig = Figure(figsize=(max(5.0, 1.1 * len(pairs) + 2.0), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(regs), 1)
    for j, reg in enumerate(regs):
        g = f[f.regressor == reg].set_index(["a", "b"])
        y = [g.angle_mean.get(p, np.nan) for p in pairs]
        e = [g.angle_std.get(p, np.nan) for p in pairs]
        e = [0.0 if not np.isfinite(v) else v for v in e]
        xs = np.arange(len(pairs)) + (j - (len(regs) - 1) / 2) * width
        label = reg if reg != "lasso" or result.alpha is None else f"lasso (alpha={result.alpha:g})"
        ax.bar(xs, y, width, yerr=e, capsize=3, color=f"C{j}", alpha=0.8, label=label)
    ax.axhline(90.0, color="tab:red", linestyle="--", linewidth=1.0, label="90° (orthogonal)")
    ax.set_xticks(
        range(len(pairs)),
        [f"{a}\nvs {b}" for a, b in pairs],
        fontsize="small",
    )
    ax.set_ylabel("angle between RCVs (degrees)")
    ax.set_ylim(0, max(100.0, float(np.nanmax(f.angle_mean.to_numpy(), initial=0)) + 15))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    bits = _title_bits(result.meta)
    ax.set_title(
        title
        if title is not None
        else f"Consistency of RCVs ({result.reps} repetitions)" + (f": {bits}" if bits else "")
    )
    return fig


__all__ = ["R2_FLOOR", "plot_alignment", "plot_consistency", "plot_sparsity"]
