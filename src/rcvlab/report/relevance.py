"""Writing a relevance run's folder."""

from __future__ import annotations

import os
from pathlib import Path

from rcvlab.analyses.relevance import RelevanceResult
from rcvlab.runio import write_figure, write_text


def write_relevance_run(out: str | os.PathLike[str], result: RelevanceResult) -> dict[str, Path]:
    """Write ``relevance.csv`` (one row per measure and image: index, id, class, value,
    sensitivity), ``relevance.json`` (scores and settings), ``summary.md`` (the Br table) and
    ``relevance.png`` (:func:`rcvlab.viz.relevance.plot_relevance`) into ``out``.

    Parameters
    ----------
    out : path
        An existing folder (see :func:`rcvlab.runio.prepare_out`).
    result : RelevanceResult

    Returns
    -------
    dict of str to Path
        The files written, by name.
    """
    from rcvlab.viz.relevance import plot_relevance

    out = Path(out)
    files = {
        "relevance.csv": out / "relevance.csv",
        "relevance.json": out / "relevance.json",
        "summary.md": out / "summary.md",
        "relevance.png": out / "relevance.png",
    }
    write_text(files["relevance.csv"], result.per_image_frame().to_csv(index=False))
    result.to_json(files["relevance.json"])
    write_text(files["summary.md"], result.to_markdown())
    write_figure(files["relevance.png"], plot_relevance(result))
    return files


__all__ = ["write_relevance_run"]
