"""Writing a relevance run's folder."""

from __future__ import annotations

import os
from pathlib import Path

from rcvlab.analyses.relevance import RelevanceResult
from rcvlab.runio import write_figure, write_skipped, write_text


def write_relevance_run(out: str | os.PathLike[str], result: RelevanceResult) -> dict[str, Path]:
    """Write the run folder of a relevance result, every file atomically.

    ``relevance.csv`` (one row per measure and image: index, id, class, value,
    sensitivity), ``relevance.json`` (scores, settings and the per-image values; read back
    with :meth:`RelevanceResult.from_json`), ``summary.md`` (the Br table),
    ``relevance.png`` (:func:`rcvlab.viz.relevance.plot_relevance`) and ``skipped.csv``
    (unreadable images: path, reason).

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
    names = ("relevance.csv", "relevance.json", "summary.md", "relevance.png", "skipped.csv")
    files = {name: out / name for name in names}
    write_text(files["relevance.csv"], result.per_image_frame().to_csv(index=False))
    result.to_json(files["relevance.json"])
    write_text(files["summary.md"], result.to_markdown())
    write_figure(files["relevance.png"], plot_relevance(result))
    skipped = [(s["path"], s["reason"]) for s in result.meta.get("skipped", [])]
    write_skipped(files["skipped.csv"], skipped)
    return files


__all__ = ["write_relevance_run"]
