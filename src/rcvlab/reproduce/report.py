"""``report.html`` of a ``rcvlab reproduce`` run: every step, every figure, the published numbers.

One self-contained page (:func:`rcvlab.report.html.render_report`: inline style sheet, figures
as base64 data URIs, no JavaScript) at the top of the run folder::

    out/report.html
    out/manifest.json          versions, seeds, data fingerprints, timings (the runner's)
    out/reproduce.json         the ReproduceResult
    out/steps/<id>/            one folder per step: png figures, csv tables, *.json, run.json

The page has: the paper and the config (networks, inputs), a table of steps (id, kind,
status, seconds) in config order — a step that failed or never ran is listed as such, never
left out —, one section per step with every figure of its folder embedded and its tables
(csv files, capped at :data:`MAX_ROWS` rows, linked in full), the published numbers beside
ours with a verdict, the manifest, the items skipped by any step and the environment.

Every link is relative and points at a file that exists when the page is written (a step's
own ``report.html``, its csv and json files), so the run folder can be moved or archived
whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from rcvlab.report.html import figure_data_uri, fmt_num, html_table, render_report
from rcvlab.runio import RUN_FILE, write_text

#: Rows of a step's csv table shown on the page (the whole file is linked).
MAX_ROWS = 30
#: Columns of a step's csv table shown on the page.
MAX_COLUMNS = 24
#: Figures embedded per step (further ones are linked, not embedded, to keep the page small).
MAX_FIGURES = 40
#: Strings of the manifest longer than this are shown in a folded ``<pre>`` block.
LONG_TEXT = 200

STEPS_DIR = "steps"
REPORT_FILE = "report.html"
MANIFEST_FILE = "manifest.json"
RESULT_FILE = "reproduce.json"
SKIPPED_FILE = "skipped.csv"
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")
#: Statuses of a finished step: computed in this run, or loaded from an earlier one (the
#: runner says ran / loaded; done / resumed are read as the same).
OK_STATUSES = ("ran", "loaded", "done", "resumed")
NOT_RUN = "not run"
COMPARISON_COLUMNS = (
    "key",
    "source",
    "published",
    "published_std",
    "ours",
    "ours_std",
    "diff_in_std",
    "verdict",
)

_GOOD = "background:#d3f9d8;color:#1b5e20;font-weight:bold;padding:0 .3em"
_BAD = "background:#ffe3e3;color:#b71c1c;font-weight:bold;padding:0 .3em"
_NEUTRAL = "color:#777"
_STYLE = {
    **dict.fromkeys(OK_STATUSES, _GOOD),
    "within": _GOOD,
    "failed": _BAD,
    "outside": _BAD,
}


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a mapping or an attribute of an object (configs and results come as both)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _href(path: Path, base: Path) -> str:
    """A relative, URL-quoted link from ``base`` (a folder) to ``path``."""
    return quote(Path(os.path.relpath(path, base)).as_posix())


def _badge(text: str) -> str:
    return f'<span style="{_STYLE.get(text, _NEUTRAL)}">{_e(text)}</span>'


def _seconds(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return "n/a" if math.isnan(x) else f"{x:.1f} s"


@dataclass(frozen=True)
class StepEntry:
    """One row of the steps table.

    Attributes
    ----------
    id, kind : str
        As in the config.
    status : str
        What the runner recorded (ran, loaded, skipped, failed, ...), or ``not run`` for a
        step of the config the result does not know.
    seconds : float or None
        Wall time of the step (of the earlier run when resumed).
    result : str or None
        The step's result file as the runner recorded it (relative to ``out`` or absolute).
    error : str
        Why a failed step failed ("" when it did not).
    note : str
        The runner's note (e.g. why a step was skipped).
    """

    id: str
    kind: str
    status: str
    seconds: float | None
    result: str | None
    error: str
    note: str = ""


def step_entries(result: Any, config: Any) -> list[StepEntry]:
    """The steps of a run in config order, each with its status.

    Parameters
    ----------
    result : ReproduceResult or mapping
        Its ``steps``: step id -> {kind, status, seconds, result_file, note, error} (a
        mapping, or a sequence of such records with an ``id`` as
        :class:`rcvlab.reproduce.runner.StepRecord`), as mappings or objects.
    config : ReproConfig or mapping
        Its ``steps``: records with ``id`` and ``kind``.

    Returns
    -------
    list of StepEntry
        Every step of the config (those the result does not know are ``not run``), then any
        step the result has that the config does not.
    """
    raw = _get(result, "steps", None) or {}
    if isinstance(raw, Mapping):
        recorded = {str(k): v for k, v in raw.items()}
    else:
        recorded = {str(_get(v, "id")): v for v in raw}
    order = [str(_get(s, "id")) for s in (_get(config, "steps", None) or ())]
    kinds = {str(_get(s, "id")): str(_get(s, "kind", "")) for s in _get(config, "steps", ()) or ()}
    order += [k for k in recorded if k not in kinds]
    entries = []
    for sid in order:
        rec = recorded.get(sid)
        if rec is None:
            entries.append(StepEntry(sid, kinds.get(sid, ""), NOT_RUN, None, None, ""))
            continue
        seconds = _get(rec, "seconds")
        res = _get(rec, "result_file", None) or _get(rec, "result", None)
        entries.append(
            StepEntry(
                id=sid,
                kind=str(_get(rec, "kind", None) or kinds.get(sid, "")),
                status=str(_get(rec, "status", None) or NOT_RUN),
                seconds=None if seconds is None else float(seconds),
                result=None if res is None else os.fspath(res),
                error=str(_get(rec, "error", None) or ""),
                note=str(_get(rec, "note", None) or ""),
            )
        )
    return entries


# -- sections -------------------------------------------------------------------------------


def _meta(rows: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="meta">{items}</dl>'


def _steps_anchor(sid: str) -> str:
    return "step-" + re.sub(r"[^A-Za-z0-9_-]", "_", sid)


def _about_section(out: Path, config: Any, entries: Sequence[StepEntry]) -> str:
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.status] = counts.get(e.status, 0) + 1
    rows = [
        ("config", str(_get(config, "name", "") or "n/a")),
        ("paper", str(_get(config, "paper", "") or "n/a")),
        ("title", str(_get(config, "title", "") or "n/a")),
        ("seed", str(_get(config, "seed", "n/a"))),
        ("config file", str(_get(config, "source", "") or "n/a")),
        ("steps", ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"),
    ]
    overrides = _get(config, "overrides", None) or {}
    rows += [(f"--set {k}", repr(v)) for k, v in overrides.items()]
    parts = ['<section id="about"><h2>Paper and config</h2>', _meta(rows)]
    networks = _get(config, "networks", None) or {}
    if networks:
        frame = pd.DataFrame(
            [
                {
                    "network": nid,
                    "model": _get(n, "model", ""),
                    "weights": _get(n, "weights", ""),
                    "input size": _get(n, "input_size", None) or "default",
                }
                for nid, n in networks.items()
            ]
        )
        parts += ["<h3>Networks</h3>", html_table(frame, css_class="networks")]
    inputs = _get(config, "inputs", None) or {}
    if inputs:
        frame = pd.DataFrame(
            [
                {
                    "input": name,
                    "kind": _get(i, "kind", ""),
                    "required": "yes" if _get(i, "required", False) else "no",
                    "what": _get(i, "help", ""),
                }
                for name, i in inputs.items()
            ]
        )
        parts += ["<h3>Inputs</h3>", html_table(frame, css_class="inputs")]
    links = [
        f'<a href="{_href(out / f, out)}">{_e(f)}</a>'
        for f in (MANIFEST_FILE, RESULT_FILE, RUN_FILE)
        if (out / f).is_file()
    ]
    if links:
        parts.append(f"<p>Files: {', '.join(links)}.</p>")
    parts.append("</section>")
    return "".join(parts)


def _steps_table(out: Path, entries: Sequence[StepEntry]) -> str:
    rows = []
    for e in entries:
        own = out / STEPS_DIR / e.id / REPORT_FILE
        rows.append(
            {
                "step": f'<a href="#{_steps_anchor(e.id)}">{_e(e.id)}</a>',
                "kind": _e(e.kind),
                "status": _badge(e.status),
                "seconds": _e(_seconds(e.seconds)),
                "step report": f'<a href="{_href(own, out)}">report.html</a>'
                if own.is_file()
                else '<span class="muted">none</span>',
            }
        )
    if not rows:
        return '<section id="steps"><h2>Steps</h2><p class="muted">No steps.</p></section>'
    frame = pd.DataFrame(rows)
    table = html_table(frame, css_class="steps", raw_columns=set(frame.columns))
    return f'<section id="steps"><h2>Steps</h2>{table}</section>'


def _cell(x: Any) -> str:
    if isinstance(x, float):
        return fmt_num(x)
    return "" if x is None else str(x)


def csv_table(path: str | os.PathLike[str], *, max_rows: int = MAX_ROWS) -> str:
    """An HTML table of the first rows and columns of a csv file (every cell escaped).

    Parameters
    ----------
    path : path
        The csv file.
    max_rows : int
        Rows shown; a note says how many the file has when there are more.

    Returns
    -------
    str
        The table, or a one-line note when the file is empty or cannot be parsed.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f'<p class="muted">{_e(path.name)}: not shown ({_e(why)}).</p>'
    n_rows, n_cols = frame.shape
    if n_rows == 0:
        return f'<p class="muted">{_e(path.name)}: no rows.</p>'
    shown = frame.iloc[:max_rows, :MAX_COLUMNS].map(_cell)
    cut = []
    if n_rows > max_rows:
        cut.append(f"first {max_rows} of {n_rows} rows")
    if n_cols > MAX_COLUMNS:
        cut.append(f"first {MAX_COLUMNS} of {n_cols} columns")
    note = f' <span class="muted">({_e("; ".join(cut))})</span>' if cut else ""
    table = html_table(shown, css_class="steptable")
    # wide tables (a profile has ~20 columns) scroll inside the page, not the page itself
    return f'<p><code>{_e(path.name)}</code>{note}</p><div style="overflow-x:auto">{table}</div>'


def _step_files(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Figures (any depth), csv tables and other files (top level) of a step folder."""
    figures = sorted(
        (
            p
            for p in folder.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FIGURE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    top = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    tables = [p for p in top if p.suffix.lower() == ".csv" and p.name != SKIPPED_FILE]
    others = [p for p in top if p.suffix.lower() not in FIGURE_SUFFIXES]
    return figures, tables, others


def _step_section(out: Path, e: StepEntry, options: Mapping[str, Any]) -> str:
    folder = out / STEPS_DIR / e.id
    head = (
        f'<section id="{_steps_anchor(e.id)}"><h2>Step {_e(e.id)} '
        f'<span class="muted">({_e(e.kind or "?")})</span></h2>'
        f"<p>Status: {_badge(e.status)} · {_e(_seconds(e.seconds))}</p>"
    )
    parts = [head]
    if options:
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_value_html(v)}</dd>" for k, v in options.items())
        parts.append(f'<dl class="meta">{items}</dl>')
    if e.note:
        parts.append(f'<p class="note">{_e(e.note)}</p>')
    if e.error:
        parts.append(f"<pre>{_e(e.error)}</pre>")
    if not folder.is_dir():
        why = {
            NOT_RUN: "This step did not run: no output.",
            "skipped": "This step was skipped: no output.",
            "planned": "This step is planned (dry run): no output yet.",
            "failed": "This step failed before writing any output.",
        }.get(e.status, f"No folder {STEPS_DIR}/{e.id}/.")
        parts.append(f'<p class="note">{_e(why)}</p></section>')
        return "".join(parts)
    if e.status not in OK_STATUSES:
        parts.append(
            f'<p class="note">This step did not finish ({_e(e.status)}): the files below are '
            "what it left and may be incomplete.</p>"
        )
    figures, tables, others = _step_files(folder)
    own = folder / REPORT_FILE
    if own.is_file():
        link = f'<a href="{_href(own, out)}">{_e(e.id)}/report.html</a>'
        parts.append(f"<p>The step's own report: {link}</p>")
    for p in figures[:MAX_FIGURES]:
        rel = p.relative_to(folder).as_posix()
        parts.append(
            f'<figure><img src="{figure_data_uri(p)}" alt="{_e(rel)}">'
            f"<figcaption>{_e(rel)}</figcaption></figure>"
        )
    if len(figures) > MAX_FIGURES:
        rest = ", ".join(
            f'<a href="{_href(p, out)}">{_e(p.relative_to(folder).as_posix())}</a>'
            for p in figures[MAX_FIGURES:]
        )
        parts.append(f'<p class="muted">{len(figures) - MAX_FIGURES} more figures: {rest}</p>')
    if not figures:
        parts.append('<p class="muted">No figures.</p>')
    parts += [csv_table(p) for p in tables]
    if others:
        links = ", ".join(f'<a href="{_href(p, out)}">{_e(p.name)}</a>' for p in others)
        parts.append(f"<p>Files: {links}</p>")
    parts.append("</section>")
    return "".join(parts)


def _signed(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{float(x):+.2f}"


def published_section(comparison: pd.DataFrame) -> str:
    """The published numbers beside ours, each with its verdict.

    Parameters
    ----------
    comparison : DataFrame
        :func:`rcvlab.reproduce.published.compare`'s table: columns ``key, source, published,
        published_std, ours, ours_std, diff_in_std, verdict``.

    Returns
    -------
    str
        The section's HTML (every text escaped): a count of the verdicts, then one row per
        number with ``within`` green, ``outside`` red and ``n/a`` grey.
    """
    missing = [c for c in COMPARISON_COLUMNS if c not in comparison.columns]
    if missing:
        raise ValueError(f"comparison table lacks columns {missing}")
    head = '<section id="published"><h2>Published numbers and ours</h2>'
    if comparison.empty:
        return head + '<p class="muted">This config reports no published numbers.</p></section>'
    verdicts = comparison["verdict"].astype(str)
    counts = ", ".join(f"{n} {v}" for v, n in verdicts.value_counts(sort=False).items())
    rows = pd.DataFrame(
        {
            "key": comparison["key"].map(_e),
            "source": comparison["source"].map(_e),
            "published": comparison["published"].map(fmt_num),
            "± std": comparison["published_std"].map(fmt_num),
            "ours": comparison["ours"].map(fmt_num),
            "ours ± std": comparison["ours_std"].map(fmt_num),
            "ours − published": (
                comparison["diff"].map(_signed)
                if "diff" in comparison.columns
                else (comparison["ours"] - comparison["published"]).map(_signed)
            ),
            "(ours − published) / std": comparison["diff_in_std"].map(_signed),
            "verdict": verdicts.map(_badge),
        }
    )
    # B's compare() may add the unit and the step that gave ours; shown when present
    for extra in ("unit", "step"):
        if extra in comparison.columns:
            rows[extra] = comparison[extra].fillna("").map(_e)
    table = html_table(rows, css_class="published", raw_columns=set(rows.columns))
    return (
        f"{head}<p>{_e(counts)}. A number is <em>within</em> when ours is at most 2 published "
        "standard deviations from it; <em>n/a</em> when the paper gives no standard deviation "
        "(the plain difference is shown) or this run did not produce the number.</p>"
        f"{table}</section>"
    )


def _value_html(v: Any) -> str:
    if isinstance(v, str) and (len(v) > LONG_TEXT or "\n" in v):
        return f"<details><summary>show ({len(v)} characters)</summary><pre>{_e(v)}</pre></details>"
    if isinstance(v, list) and all(not isinstance(x, dict | list) for x in v):
        return _e(", ".join(map(str, v)))
    if isinstance(v, dict | list):
        return f"<pre>{_e(json.dumps(v, indent=2, default=str))}</pre>"
    return _e("n/a" if v is None else v)


def _mapping_table(d: Mapping[str, Any]) -> str:
    if d and all(isinstance(v, Mapping) for v in d.values()):
        # e.g. per-step timings {id: {status, seconds}}: one row per key
        cols = list(dict.fromkeys(k for v in d.values() for k in v))
        frame = pd.DataFrame(
            [{"": _e(k), **{c: _value_html(v.get(c)) for c in cols}} for k, v in d.items()]
        )
    else:
        frame = pd.DataFrame([{"": _e(k), "value": _value_html(v)} for k, v in d.items()])
    return html_table(frame, css_class="manifest", raw_columns=set(frame.columns))


def manifest_section(manifest: Mapping[str, Any] | None) -> str:
    """The run's manifest: versions, seeds, data fingerprints, timings, config text.

    Parameters
    ----------
    manifest : mapping or None
        The parsed ``manifest.json`` (None when the run wrote none).

    Returns
    -------
    str
        The section's HTML: plain values as a list, each nested mapping as a table, long
        texts (the config) folded.
    """
    head = '<section id="manifest"><h2>Manifest</h2>'
    if manifest is None:
        return head + f'<p class="muted">No {MANIFEST_FILE} in the run folder.</p></section>'
    plain = {k: v for k, v in manifest.items() if not isinstance(v, Mapping)}
    parts = [head]
    if plain:
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_value_html(v)}</dd>" for k, v in plain.items())
        parts.append(f'<dl class="meta">{items}</dl>')
    for k, v in manifest.items():
        if isinstance(v, Mapping):
            parts.append(f"<h3>{_e(k)}</h3>")
            parts.append(_mapping_table(v) if v else '<p class="muted">none</p>')
    parts.append("</section>")
    return "".join(parts)


def _read_skipped(out: Path, entries: Sequence[StepEntry]) -> list[tuple[str, str]]:
    skipped = []
    for e in entries:
        path = out / STEPS_DIR / e.id / SKIPPED_FILE
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        skipped += [(f"[{e.id}] {r[0]}", r[1]) for r in rows[1:] if len(r) >= 2]
    return skipped


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return d if isinstance(d, dict) else {"manifest": d}


# -- public API -----------------------------------------------------------------------------


def render_reproduce_report(
    out: str | os.PathLike[str],
    result: Any,
    config: Any,
    comparison: pd.DataFrame,
    *,
    environment: Mapping[str, str] | None = None,
) -> str:
    """The HTML of a reproduce run's ``report.html`` (see :func:`write_reproduce_report`).

    Parameters
    ----------
    out : path
        The run folder (its ``steps/<id>/`` folders and ``manifest.json`` are read).
    result : ReproduceResult
        The run's steps and their statuses (:func:`step_entries`).
    config : ReproConfig
        The config that ran.
    comparison : DataFrame
        The published numbers beside ours (:func:`published_section`).
    environment : mapping of str to str, optional
        Component -> version; defaults to :func:`rcvlab.report.html.environment_info`.

    Returns
    -------
    str
        The HTML document.
    """
    out = Path(out)
    entries = step_entries(result, config)
    name = str(_get(config, "name", "") or "reproduce")
    title = str(_get(config, "title", "") or "")
    paper = str(_get(config, "paper", "") or "")
    page_title = f"rcvlab reproduce {name}" + (f" — {title}" if title else "")
    notes = [f"Reproduction of paper {paper}: {title or name}."] if paper else []
    failed = [e.id for e in entries if e.status not in OK_STATUSES]
    if failed:
        notes.append(f"Steps without results: {', '.join(failed)} (see their sections).")
    options = {
        str(_get(st, "id")): dict(_get(st, "options", None) or {})
        for st in _get(config, "steps", None) or ()
    }
    sections = [
        _about_section(out, config, entries),
        _steps_table(out, entries),
        published_section(comparison),
        *(_step_section(out, e, options.get(e.id, {})) for e in entries),
        manifest_section(_read_manifest(out)),
    ]
    return render_report(
        [],
        title=page_title,
        figures={},
        skipped=_read_skipped(out, entries),
        notes=notes,
        environment=environment,
        sections=sections,
    )


def write_reproduce_report(
    out: str | os.PathLike[str],
    result: Any,
    config: Any,
    *,
    comparison: pd.DataFrame | None = None,
    environment: Mapping[str, str] | None = None,
) -> Path:
    """Write ``out/report.html``: one self-contained page of a ``rcvlab reproduce`` run.

    Parameters
    ----------
    out : path
        The run folder (existing): ``steps/<id>/`` per step, ``manifest.json``.
    result : ReproduceResult
        The run's steps: id -> kind, status (done / resumed / failed), seconds, result file.
    config : ReproConfig
        The config that ran (name, paper, title, networks, inputs, steps in order).
    comparison : DataFrame, optional
        The published numbers beside ours; by default
        ``rcvlab.reproduce.published.compare(config, runner.step_results(out, result))``.
    environment : mapping of str to str, optional
        Component -> version; defaults to :func:`rcvlab.report.html.environment_info`.

    Returns
    -------
    pathlib.Path
        ``out/report.html`` (written atomically).
    """
    out = Path(out)
    if comparison is None:
        from rcvlab.reproduce.published import compare
        from rcvlab.reproduce.runner import step_results

        comparison = compare(config, step_results(out, result))
    path = out / REPORT_FILE
    html = render_reproduce_report(out, result, config, comparison, environment=environment)
    write_text(path, html)
    return path


__all__ = [
    "MAX_FIGURES",
    "MAX_ROWS",
    "StepEntry",
    "csv_table",
    "manifest_section",
    "published_section",
    "render_reproduce_report",
    "step_entries",
    "write_reproduce_report",
]
