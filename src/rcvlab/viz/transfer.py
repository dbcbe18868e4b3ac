"""Transfer results as in the paper's Table 2: MAE per variant, and per magnification."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.transfer import TransferResult


def plot_transfer(result: TransferResult) -> Figure:
    """Two panels: test MAE per variant (mean ± std over seeds, seeds as dots) and the mean
    MAE per class (magnification) for every variant."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1, 1.4))
    frame = result.to_frame()
    variants = result.variants
    for i, v in enumerate(variants):
        mae = frame.loc[frame.variant == v, "mae"].to_numpy()
        ax1.bar(
            i,
            mae.mean(),
            yerr=mae.std(ddof=1) if len(mae) > 1 else 0,
            capsize=4,
            color=f"C{i}",
            alpha=0.7,
        )
        jitter = np.linspace(-0.15, 0.15, len(mae)) if len(mae) > 1 else [0.0]
        ax1.plot(i + np.asarray(jitter), mae, "k.", ms=4)
    ax1.set_xticks(range(len(variants)), variants, rotation=20, ha="right")
    ax1.set_ylabel(f"test MAE of {result.measure}")
    ax1.set_title(f"{result.model} ({result.mode}): MAE over {frame.seed.nunique()} seeds")
    classes = list(result.class_mean_area)
    by_class = result.class_frame().groupby(["variant", "class"])["mae"].mean()
    for i, v in enumerate(variants):
        means = [by_class.get((v, c), np.nan) for c in classes]
        ax2.plot(range(len(classes)), means, "o-", color=f"C{i}", label=v)
    ax2.set_xticks(range(len(classes)), classes)
    ax2.set_yscale("log")
    ax2.set_xlabel(
        "class (training-set mean area: "
        + ", ".join(f"{c} {result.class_mean_area[c]:.0f}" for c in classes)
        + ")",
        fontsize="small",
    )
    ax2.set_ylabel("test MAE (log scale)")
    ax2.set_title("MAE per class")
    ax2.legend(fontsize="small")
    return fig


__all__ = ["plot_transfer"]
