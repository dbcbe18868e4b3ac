"""The resizing sweep as in paper 000's Figure 6 (pure: builds a figure, never writes files)."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.resize import ResizeSweepResult

#: What the bands show (for captions).
BAND_NOTE = "bands: 95 % intervals (Student-t for the mean probability, Wilson for accuracies)"


def plot_resize_sweep(result: ResizeSweepResult) -> Figure:
    """Two panels against the square input size, one line per interpolation.

    Left: mean probability of the correct class with its 95 % Student-t band. Right: top-5
    accuracy (solid) with its Wilson band, and top-1 accuracy (dashed). A dotted vertical line
    marks the size the network was trained at.

    Parameters
    ----------
    result : ResizeSweepResult

    Returns
    -------
    matplotlib.figure.Figure
        An Agg-backed figure (``fig.savefig(...)`` works without a display).
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_p, ax_k = fig.subplots(1, 2, sharex=True)
    frame = result.to_frame()
    for i, interp in enumerate(result.interps):
        f = frame[frame.interp == interp].sort_values("size")
        c = f"C{i}"
        ax_p.plot(f["size"], f.p_mean, "o-", ms=3, color=c, label=interp)
        ax_p.fill_between(f["size"], f.p_ci95_low, f.p_ci95_high, color=c, alpha=0.15, lw=0)
        ax_k.plot(f["size"], f.top5, "o-", ms=3, color=c, label=f"{interp} top-5")
        ax_k.fill_between(f["size"], f.top5_ci95_low, f.top5_ci95_high, color=c, alpha=0.15, lw=0)
        ax_k.plot(f["size"], f.top1, "--", color=c, alpha=0.8, label=f"{interp} top-1")
    for ax in (ax_p, ax_k):
        ax.axvline(result.input_size, color="0.4", ls=":", lw=1)
        ax.set_xlabel("input size (px, square; whole image resized)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    ax_p.text(
        result.input_size,
        1.0,
        f" trained at {result.input_size}",
        color="0.3",
        fontsize="small",
        va="top",
    )
    ax_p.set_ylabel("mean probability of the correct class")
    ax_k.set_ylabel("accuracy")
    ax_p.set_title(f"{result.model} ({result.weights}): p(correct) vs size")
    ax_k.set_title("top-5 (solid) and top-1 (dashed) accuracy")
    ax_p.legend(fontsize="small", title="interpolation", title_fontsize="small")
    ax_k.legend(fontsize="x-small", ncol=2)
    fig.suptitle(f"{result.n} images from {result.data_source}; {BAND_NOTE}", fontsize="small")
    return fig


__all__ = ["BAND_NOTE", "plot_resize_sweep"]
