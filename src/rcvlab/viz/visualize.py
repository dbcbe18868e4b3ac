"""Activation-maximisation images as a grid: rows = weights, columns = channels (paper 004,
Figure 1: pretrained above finetuned)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.visualize import VisualizeResult
from rcvlab.analyses.weights import weights_label
from rcvlab.errors import RcvlabError

MAX_COLUMNS = 10
"""Images per row of the grid; more channels continue in further blocks of rows."""


def as_results(result: VisualizeResult | Sequence[VisualizeResult]) -> list[VisualizeResult]:
    """One result or several with the same layer and targets, as a list.

    Raises
    ------
    RcvlabError
        No result, or results of different layers or targets (they would not line up).
    """
    results = [result] if isinstance(result, VisualizeResult) else list(result)
    if not results:
        raise RcvlabError("No visualize result to show.")
    first = results[0]
    for r in results[1:]:
        if r.targets != first.targets or r.layer != first.layer:
            raise RcvlabError(
                f"Results to compare must show the same layer and channels: {first.layer} "
                f"{list(first.targets)[:5]}... vs {r.layer} {list(r.targets)[:5]}...; run "
                "visualize with the same layer and channels for every weights."
            )
    return results


def plot_visualize(
    result: VisualizeResult | Sequence[VisualizeResult], *, max_columns: int = MAX_COLUMNS
) -> Figure:
    """The images of one result, or of several weights one row each (same channels).

    Parameters
    ----------
    result : VisualizeResult or sequence of VisualizeResult
        Several: the same layer and targets (e.g. one per weights, as
        ``rcvlab visualize --compare-weights`` makes them).
    max_columns : int
        Images per row; more targets continue in further blocks of rows.

    Returns
    -------
    matplotlib.figure.Figure
        Columns titled by channel (and objective at the end), rows labelled by weights.
    """
    results = as_results(result)
    k = len(results[0].targets)
    ncols = max(1, min(k, max_columns))
    blocks = math.ceil(k / ncols)
    nrows = blocks * len(results)
    cell = 1.45
    fig = Figure(figsize=(0.6 + cell * ncols, 0.5 + (cell + 0.25) * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for b in range(blocks):
        for w, r in enumerate(results):
            row = b * len(results) + w
            for c in range(ncols):
                ax = axes[row][c]
                ax.set_xticks([])
                ax.set_yticks([])
                i = b * ncols + c
                if i >= k:
                    ax.set_axis_off()
                    continue
                ax.imshow(r.images[i], interpolation="nearest")
                target = r.targets[i]
                name = target if not target.lstrip("-").isdigit() else f"ch {target}"
                if target in ("+rcv", "-rcv") and r.rcv_measure:
                    name = f"{target[0]}{r.rcv_measure}"
                ax.set_title(f"{name}\n{r.objective_end[i]:.3g}", fontsize="x-small")
                if c == 0:
                    ax.set_ylabel(weights_label(r.weights), fontsize="small")
    first = results[0]
    fig.suptitle(
        f"{first.model} {first.layer}: activation maximisation "
        f"({first.steps} steps, {first.size} px, seed {first.seed}; titles: objective at end)",
        fontsize="small",
    )
    return fig


__all__ = ["MAX_COLUMNS", "as_results", "plot_visualize"]
