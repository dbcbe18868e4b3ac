"""Writing a profiling run's folder: JSON, CSV, figure, skip list and the one-page report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rcvlab.probe.result import ProfileResult
from rcvlab.runio import write_figure, write_skipped, write_text


def profiles_frame(profiles: Sequence[ProfileResult]) -> pd.DataFrame:
    """``profile.csv``: every profile's table with ``model`` and ``weights`` columns in front."""
    frames = []
    for res in profiles:
        f = res.to_frame()
        f.insert(0, "model", res.model)
        f.insert(1, "weights", res.weights)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def write_profile_run(
    out: str | os.PathLike[str],
    results: Sequence[ProfileResult],
    *,
    title: str = "rcvlab layer-wise concept profile",
    notes: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``profile.json`` (first result; others as ``profile_<model>.json``), ``profile.csv``
    (all results, a ``model`` column), ``profile.png``, ``skipped.csv`` and ``report.html``.

    Every file is written atomically (a temporary name, then a rename), so a killed run never
    leaves a half-written one. ``profile.csv`` has the columns ``model``, ``weights``, then
    those of :meth:`ProfileResult.to_frame` (``r2_median``, ``n_floored`` among them).

    Parameters
    ----------
    out : path
        The run folder (it exists).
    results : sequence of ProfileResult
        One per model; the first one is ``profile.json``.
    title, notes, sections
        Passed to :func:`rcvlab.report.html.write_report`.

    Returns
    -------
    dict of str to Path
        The files written, by kind.
    """
    from rcvlab.report.html import write_report
    from rcvlab.viz.profile import plot_profile, plot_profiles

    out = Path(out)
    files: dict[str, Path] = {}
    for i, res in enumerate(results):
        name = "profile.json" if i == 0 else f"profile_{res.model}.json"
        res.to_json(out / name)
        files[name] = out / name
    write_text(out / "profile.csv", profiles_frame(results).to_csv(index=False))
    files["profile.csv"] = out / "profile.csv"
    fig = plot_profile(results[0]) if len(results) == 1 else plot_profiles(results)
    write_figure(out / "profile.png", fig, dpi=120)
    files["profile.png"] = out / "profile.png"
    skipped: list[tuple[str, str]] = []
    for res in results:
        for s in res.data.get("skipped", []):
            if (s["path"], s["reason"]) not in skipped:
                skipped.append((s["path"], s["reason"]))
    write_skipped(out / "skipped.csv", skipped)
    files["skipped.csv"] = out / "skipped.csv"
    notes = list(notes)
    for res in results:
        empty = res.extra.get("no_positions")
        if empty:
            size = res.extra.get("preprocessing", {}).get("input_size", "?")
            notes.append(
                f"{res.model}: corrected GAP keeps no position free of padding in "
                f"{', '.join(empty)} at {size} px, so these layers were not probed."
            )
    write_report(
        out / "report.html",
        list(results),
        title=title,
        figures={"profile": fig},
        skipped=skipped,
        notes=list(notes),
        sections=list(sections),
    )
    files["report.html"] = out / "report.html"
    return files


__all__ = ["profiles_frame", "write_profile_run"]
