"""Concept R² per layer for several weights of one network: paper 004's Figure 3."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rcvlab.analyses.weights import WeightsComparison, weights_kind

#: The paper's colours: random red, pretrained blue, finetuned green.
KIND_COLOURS = {"random": "tab:red", "pretrained": "tab:blue", "finetuned": "tab:green"}
#: Lowest R² shown on the y axis.
FLOOR = -1.0
_OTHER = ("tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def weights_colours(result: WeightsComparison) -> dict[str, str]:
    """A colour per weights label: the paper's by kind, then distinct others (a second
    network of one kind gets another colour, so that no two series look alike)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    spare = iter(_OTHER)
    for label, source in zip(result.labels, result.weights, strict=True):
        c = KIND_COLOURS.get(weights_kind(source))
        if c is None or c in used:
            c = next(spare, "tab:gray")
        used.add(c)
        out[label] = c
    return out


def plot_weights_comparison(result: WeightsComparison, *, insample: bool = True) -> Figure:
    """One panel per concept: R² per layer for each network (paper 004, Figure 3).

    Solid lines with error bars: rcvlab's held-out R² (mean over the splits ± its standard
    error, std / sqrt(splits), as the paper's bars). Dashed lines (``insample``): the
    paper's in-sample R² (OLS on all images, no split); a hollow square marks a layer where
    it saturated (features span the images, so it is 1 whatever the layer encodes).

    Parameters
    ----------
    result : WeightsComparison
    insample : bool
        Draw the paper's in-sample R² when the result holds it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    frame = result.to_frame()
    measures = list(result.measures)
    fig = Figure(figsize=(4.2 * len(measures) + 0.6, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(measures), squeeze=False)[0])
    colours = weights_colours(result)
    show_insample = insample and bool(result.insample)
    any_saturated = False
    for ax, measure in zip(axes, measures, strict=True):
        sub = frame[frame.measure == measure]
        layers = list(dict.fromkeys(sub.layer))
        x_of = {k: i for i, k in enumerate(layers)}
        for j, label in enumerate(result.labels):
            s = sub[sub.weights == label]
            if s.empty:
                continue
            x = np.array([x_of[k] for k in s.layer], dtype=float)
            # a small offset keeps overlapping error bars readable
            x = x + (j - (len(result.labels) - 1) / 2) * 0.06
            c = colours[label]
            se = np.nan_to_num(s.r2_se.to_numpy(), nan=0.0)
            ax.errorbar(x, s.r2_mean, yerr=se, color=c, marker="o", ms=4, capsize=3, label=label)
            if show_insample:
                ax.plot(x, s.r2_insample, "--", color=c, alpha=0.8, lw=1.2)
                sat = s.insample_saturated.to_numpy(dtype=bool)
                if sat.any():
                    any_saturated = True
                    ax.plot(x[sat], s.r2_insample.to_numpy()[sat], "s", mfc="none", mec=c, ms=8)
        low = np.nanmin(sub.r2_mean.to_numpy(dtype=float), initial=0.0)
        if low < FLOOR:
            # one hopeless layer (R² of -50) would flatten every other series
            ax.set_ylim(FLOOR - 0.05, 1.05)  # no R² exceeds 1
            ax.text(
                0.01,
                0.01,
                f"held-out R² below {FLOOR:g} not shown",
                transform=ax.transAxes,
                fontsize="x-small",
                va="bottom",
            )
        ax.set_xticks(range(len(layers)), layers, rotation=35, ha="right")
        ax.set_title(measure)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("R² (held-out: mean ± SE over splits)")
    handles, names = axes[0].get_legend_handles_labels()
    if show_insample:
        handles.append(Line2D([], [], ls="--", color="k"))
        names.append("paper's in-sample R² (all images, no split)")
        if any_saturated:
            handles.append(Line2D([], [], ls="", marker="s", mfc="none", mec="k"))
            names.append("in-sample saturated (rank + 1 ≥ images)")
    fig.legend(
        handles, names, loc="outside lower center", ncol=min(len(names), 4), fontsize="small"
    )
    n = result.data.get("n_used") or result.data.get("n_images")
    fig.suptitle(
        f"{result.model}: concept R² per layer ({result.reps} splits, {result.regressor}"
        + (f", {n} images)" if n else ")")
    )
    return fig


__all__ = ["FLOOR", "KIND_COLOURS", "plot_weights_comparison", "weights_colours"]
