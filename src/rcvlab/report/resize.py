"""Writing a resizing sweep's run folder."""

from __future__ import annotations

import os
from pathlib import Path

from rcvlab.analyses.resize import ResizeSweepResult
from rcvlab.runio import write_figure, write_skipped, write_text


def write_resize_run(out: str | os.PathLike[str], result: ResizeSweepResult) -> dict[str, Path]:
    """Write ``sweep.json``, ``sweep.csv``, ``summary.md``, ``sweep.png`` and ``skipped.csv``.

    ``sweep.csv`` holds one row per (interpolation, size) (:meth:`ResizeSweepResult.to_frame`);
    ``sweep.json`` the metadata, that summary and every per-image probability and top-1/top-5
    hit (read back with :meth:`ResizeSweepResult.from_json`); ``sweep.png`` the Figure-6 plot.
    Every file is written atomically; the folder must exist (:func:`rcvlab.runio.prepare_out`).

    Returns
    -------
    dict of str to Path
        The files written, by name.
    """
    from rcvlab.viz.resize import plot_resize_sweep

    out = Path(out)
    files = {
        name: out / name
        for name in ("sweep.json", "sweep.csv", "summary.md", "sweep.png", "skipped.csv")
    }
    result.to_json(files["sweep.json"])
    write_text(files["sweep.csv"], result.to_frame().to_csv(index=False))
    write_text(files["summary.md"], result.to_markdown())
    write_figure(files["sweep.png"], plot_resize_sweep(result))
    write_skipped(files["skipped.csv"], [(s.path, s.reason) for s in result.skipped])
    return files


__all__ = ["write_resize_run"]
