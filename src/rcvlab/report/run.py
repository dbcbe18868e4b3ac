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
    held_out: Sequence[ProfileResult] = (),
) -> dict[str, Path]:
    """Write ``profile.json`` (first result; others as ``profile_<model>.json``), ``profile.csv``
    (all results, a ``model`` column), ``profile.png``, ``skipped.csv`` and ``report.html``.

    Every file is written atomically (a temporary name, then a rename), so a killed run never
    leaves a half-written one. ``profile.csv`` has the columns ``model``, ``weights``, then
    those of :meth:`ProfileResult.to_frame` (``split``, ``r2_median``, ``n_floored`` among
    them).

    With ``held_out`` (leave-one-class-out profiles of the same networks, in the same order)
    the run also gets ``profile_loco.json`` (first; others ``profile_loco_<model>.json``),
    their rows in ``profile.csv`` (``split`` tells them apart), ``profile_splits.png`` (per
    class beside leave-one-class-out, one row per network) and, in the report, their
    sections and a comparison table.

    Parameters
    ----------
    out : path
        The run folder (it exists).
    results : sequence of ProfileResult
        One per model; the first one is ``profile.json``.
    title, notes, sections
        Passed to :func:`rcvlab.report.html.write_report`.
    held_out : sequence of ProfileResult
        Empty, or one leave-one-class-out profile per result.

    Returns
    -------
    dict of str to Path
        The files written, by kind.
    """
    from rcvlab.report.html import split_comparison_section, write_report
    from rcvlab.viz.profile import plot_profile, plot_profiles, plot_split_comparison

    out = Path(out)
    if held_out and len(held_out) != len(results):
        raise ValueError(f"{len(held_out)} held-out profiles for {len(results)} results")
    files: dict[str, Path] = {}
    for stem, group in (("profile", results), ("profile_loco", held_out)):
        for i, res in enumerate(group):
            name = f"{stem}.json" if i == 0 else f"{stem}_{res.model}.json"
            res.to_json(out / name)
            files[name] = out / name
    frame = profiles_frame([*results, *held_out])
    write_text(out / "profile.csv", frame.to_csv(index=False))
    files["profile.csv"] = out / "profile.csv"
    fig = plot_profile(results[0]) if len(results) == 1 else plot_profiles(results)
    write_figure(out / "profile.png", fig, dpi=120)
    files["profile.png"] = out / "profile.png"
    figures = {"Normalised test R² e^(R²−1) per layer (95 % CI error bars)": fig}
    sections = list(sections)
    if held_out:
        both = plot_split_comparison(results, held_out)
        write_figure(out / "profile_splits.png", both, dpi=110)
        files["profile_splits.png"] = out / "profile_splits.png"
        figures[
            "Per class (left: fitted and tested within each class) versus leave-one-class-out "
            "(right: fitted on the other classes, tested on the held-out one); error bars: "
            "95 % CI over repetitions (left) and over held-out classes (right)"
        ] = both
        sections.insert(0, split_comparison_section(results, held_out))
    skipped: list[tuple[str, str]] = []
    for res in [*results, *held_out]:
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
        [*results, *held_out],
        title=title,
        figures=figures,
        skipped=skipped,
        notes=list(notes),
        sections=sections,
    )
    files["report.html"] = out / "report.html"
    return files


__all__ = ["profiles_frame", "write_profile_run"]
