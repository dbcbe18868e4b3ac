"""The noise-input experiment as in the paper's Figure 7: R² of the width per layer."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.noise import NoiseSizeResult

FLOOR = -1.0
"""R² below this is drawn on the floor of the axis with a downward marker."""


def plot_noise(result: NoiseSizeResult) -> Figure:
    """Test R² of the image width per layer: regular GAP vs corrected GAP.

    Points are the median over repetitions and bands the interquartile range: with a few
    training images a single repetition can score far below -1 and would hide the typical
    one in a mean (means and 95 % intervals are in ``to_frame()`` and ``summary.md``).
    Layers where corrected GAP keeps no position at some requested size are marked along
    the bottom ("no positions"), not drawn as a number. Values below -1 sit on the floor of
    the axis with a downward triangle.
    """
    fig = Figure(figsize=(max(6.0, 0.55 * len(result.layers) + 2), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(result.layers))
    styles = {"gap": ("C0", "o", "regular GAP"), "corrected-gap": ("C3", "s", "corrected GAP")}
    for pooling, (colour, marker, label) in styles.items():
        rows = [e.summary(pooling) for e in result.layers]

        def col(key: str, rows=rows) -> np.ndarray:
            return np.array([np.nan if r[key] is None else r[key] for r in rows])

        m, lo, hi = col("r2_median"), col("r2_q25"), col("r2_q75")
        shown = np.clip(m, FLOOR, None)
        ax.plot(x, shown, marker=marker, color=colour, label=label)
        ax.fill_between(x, np.clip(lo, FLOOR, 1), np.clip(hi, FLOOR, 1), color=colour, alpha=0.2)
        below = m < FLOOR
        if below.any():
            ax.plot(x[below], np.full(below.sum(), FLOOR), "v", color=colour, ms=9)
    empty = [i for i, e in enumerate(result.layers) if e.r2_corrected is None]
    if empty:
        ax.plot(empty, np.full(len(empty), FLOOR), "x", color="C3", ms=8, mew=2)
        ax.text(empty[0], FLOOR + 0.06, "× corrected GAP: no positions", color="C3", fontsize=8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylim(FLOOR - 0.08, 1.05)
    ax.set_xticks(x, result.layer_names, rotation=45, ha="right")
    ax.set_ylabel("test R² of the image width\n(median, interquartile band)")
    sizes = f"{min(result.sizes)}–{max(result.sizes)} px"
    ax.set_title(
        f"{result.model} ({result.weights}) on white noise, {sizes}: "
        f"{result.n_train} train / {result.n_test} test, {result.reps} reps"
    )
    ax.legend(loc="best")
    return fig


__all__ = ["plot_noise"]
