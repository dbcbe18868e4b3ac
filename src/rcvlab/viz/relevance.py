"""Figure of an RCV relevance run: sensitivities per measure and their Br scores."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.relevance import RelevanceResult


def plot_relevance(result: RelevanceResult) -> Figure:
    """Two panels: histograms of the sensitivities of every measure (one colour each, the
    mean as a dashed line, 0 in black) and the bidirectional relevance score Br per measure
    (bars; an infinite Br, from constant sensitivities, is drawn at 0 and labelled)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.5, 1))
    measures = result.measures
    finite = [s[np.isfinite(s)] for s in (result.sensitivities[m] for m in measures)]
    allv = np.concatenate(finite) if finite else np.zeros(0)
    if allv.size and np.ptp(allv) > 0:
        bins = np.linspace(allv.min(), allv.max(), 31)
    else:  # constant sensitivities (a network linear after the layer): one bar
        c = float(allv[0]) if allv.size else 0.0
        half = 0.5 * abs(c) or 0.5
        bins = np.linspace(c - half, c + half, 31)
    for i, (m, s) in enumerate(zip(measures, finite, strict=True)):
        ax1.hist(s, bins=bins, histtype="stepfilled", alpha=0.35, color=f"C{i}", label=m)
        ax1.hist(s, bins=bins, histtype="step", color=f"C{i}")
        if s.size:
            ax1.axvline(float(s.mean()), color=f"C{i}", ls="--", lw=1.2)
    ax1.axvline(0.0, color="k", lw=0.8)
    target = f"class {result.target_class}" + (
        f" ({result.target_name})" if result.target_name else ""
    )
    ax1.set_xlabel(f"sensitivity of the {target} logit along the unit RCV")
    ax1.set_ylabel("images")
    ax1.set_title(f"{result.model or 'model'} at {result.layer}: sensitivities")
    if measures:
        ax1.legend(fontsize="small")
    brs = [result.score(m).br for m in measures]
    heights = [b if math.isfinite(b) else 0.0 for b in brs]
    x = np.arange(len(measures))
    ax2.bar(x, heights, color=[f"C{i}" for i in range(len(measures))], alpha=0.75)
    ax2.axhline(0.0, color="k", lw=0.8)
    for i, m in enumerate(measures):
        s = result.score(m)
        label = f"R²={s.r2_mean:.2f}" if math.isfinite(s.r2_mean) else "R²=n/a"
        if not math.isfinite(s.br):
            label = ("Br=" + ("+inf" if s.br > 0 else "-inf" if s.br < 0 else "n/a")) + "\n" + label
        va = "bottom" if heights[i] >= 0 else "top"
        ax2.annotate(label, (i, heights[i]), ha="center", va=va, fontsize="small")
    ax2.set_xticks(x, measures, rotation=20, ha="right")
    ax2.set_ylabel("Br = R² × mean(S) / std(S)")
    ax2.set_title("bidirectional relevance")
    lo, hi = min([0.0, *heights]), max([0.0, *heights])
    pad = 0.2 * (hi - lo) or 1.0
    ax2.set_ylim(lo - pad, hi + pad)
    return fig


__all__ = ["plot_relevance"]
