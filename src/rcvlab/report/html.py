"""A self-contained one-page HTML report of layer-wise concept profiles.

Figures are embedded as base64 data URIs and the style sheet is inline, so the single file
can be mailed or archived without any other asset; the page has no JavaScript. Every piece
of text that comes from a run (commands, paths, layer names, notes) is HTML-escaped. The
tables are rendered by pandas (:func:`html_table`).
"""

from __future__ import annotations

import base64
import io
import math
import os
import platform
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.runio import write_text

FigureLike = Figure | str | os.PathLike[str]
SkipLike = Any  # a ``(path, reason)`` pair or an object with ``.path`` and ``.reason``

#: Distributions whose versions every report lists (the python version comes first).
ENV_PACKAGES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "rcvlab",
)
NOT_INSTALLED = "not installed"
#: Skip lists longer than this are folded into a ``<details>`` element.
SKIPPED_OPEN_MAX = 10
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #eee; text-align: left; }
td.num, table.overview td:nth-child(n+5), table.layers td:nth-child(1),
table.layers td:nth-child(n+3), table.env td:nth-child(2) {
  text-align: right; font-family: "SFMono-Regular", Consolas, monospace; white-space: nowrap; }
tr.best td { background: #fff3bf; font-weight: bold; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.meta dt { font-weight: bold; }
dl.meta dd { margin: 0; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: .6em; overflow-x: auto;
      white-space: pre-wrap; word-break: break-all; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
.note { background: #f3f7ff; border-left: 4px solid #4a7bd0; padding: .4em .8em; }
.muted { color: #777; }
"""


# -- environment ----------------------------------------------------------------------------


def environment_info(packages: Iterable[str] = ENV_PACKAGES) -> dict[str, str]:
    """Versions of Python and of the packages a run depends on.

    Versions are read from the installed distributions' metadata, so nothing is imported.

    Parameters
    ----------
    packages : iterable of str
        Distribution names to look up.

    Returns
    -------
    dict of str to str
        ``{"python": ..., "platform": ..., <package>: <version or "not installed">}``.
    """
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in packages:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = NOT_INSTALLED
    return info


# -- formatting -----------------------------------------------------------------------------


def fmt_num(x: float | None, digits: int = 3) -> str:
    """Format a number for the tables: 3 decimals, coarser for huge magnitudes.

    Parameters
    ----------
    x : float or None
        The value; ``None`` and NaN give ``"n/a"``.
    digits : int
        Decimals for ordinary values.

    Returns
    -------
    str
        E.g. ``"0.842"``, ``"-3861"`` (integers from 1000 on), ``"-2.5e+07"`` (from 1e6 on),
        ``"n/a"``.
    """
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if abs(x) >= 1e6:
        return f"{x:.4g}"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def fmt_score(s: LayerScore | None, *, ci: bool = True) -> str:
    """``"mean ± std [low, high]"`` of one layer's test R² (``"n/a"`` when missing)."""
    if s is None:
        return "n/a"
    text = f"{fmt_num(s.r2_mean)} ± {fmt_num(s.r2_std)}"
    if ci:
        text += f" [{fmt_num(s.r2_ci95[0])}, {fmt_num(s.r2_ci95[1])}]"
    return text


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def html_table(
    frame: pd.DataFrame,
    *,
    css_class: str = "",
    raw_columns: Collection[str] = (),
    row_classes: Mapping[int, str] | None = None,
) -> str:
    """An HTML table of ``frame`` (pandas ``DataFrame.to_html``), every text escaped.

    Parameters
    ----------
    frame : DataFrame
        The cells as display values (formatted numbers, names); the columns are the headers.
    css_class : str
        Extra class of the ``<table>`` (the page's style sheet aligns numbers by it).
    raw_columns : collection of str
        Columns whose cells are HTML made by rcvlab (e.g. links) and are not escaped again.
    row_classes : mapping of int to str, optional
        Row position -> class of its ``<tr>`` (e.g. ``"best"``).

    Returns
    -------
    str
    """
    cells = pd.DataFrame(
        {_e(c): [str(v) if c in raw_columns else _e(v) for v in frame[c]] for c in frame.columns},
        index=range(len(frame)),
    )
    html = cells.to_html(
        index=False, escape=False, border=0, classes=css_class or None, justify="left"
    )
    if row_classes:
        head, body = html.split("<tbody>", 1)
        # Every cell is escaped, so each "<tr>" of the body opens one row, in order.
        first, *rows = body.split("<tr>")
        body = first + "".join(
            (f'<tr class="{_e(row_classes[i])}">' if i in row_classes else "<tr>") + row
            for i, row in enumerate(rows)
        )
        html = f"{head}<tbody>{body}"
    return html


def figure_data_uri(fig: FigureLike) -> str:
    """A ``data:`` URI (base64) of a figure, to embed it in a self-contained page.

    Parameters
    ----------
    fig : Figure or path
        A matplotlib figure (saved as PNG at 110 dpi) or a PNG, JPEG or SVG file.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For a file of another type.
    """
    if isinstance(fig, Figure):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    path = Path(fig)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"Cannot embed figure '{path}': use one of {sorted(_MIME)}.")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _skip_pair(item: SkipLike) -> tuple[str, str]:
    if hasattr(item, "path") and hasattr(item, "reason"):
        return str(item.path), str(item.reason)
    path, reason = item
    return str(path), str(reason)


def _meta_list(rows: Iterable[tuple[str, str]]) -> str:
    """A definition list; keys and values are raw text and escaped here."""
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="meta">{items}</dl>'


# -- sections -------------------------------------------------------------------------------


def _anchor(i: int) -> str:
    return f"result-{i + 1}"


LOCO = "leave-one-class-out"
#: What each split means, for the pages.
SPLIT_TEXT = {
    "per-class": "per class: repeated random train/test splits within each class, R² pooled "
    "over classes and repetitions",
    "pooled": "pooled: repeated random train/test splits of all images together",
    LOCO: "leave-one-class-out: fitted on all other classes, R² on the held-out class; one "
    "split per class, 95 % CI a Student-t interval over the held-out classes",
}


def _result_name(r: ProfileResult) -> str:
    name = " — ".join(p for p in (r.model, r.measure) if p) or "profile"
    return f"{name} ({LOCO})" if r.split == LOCO else name


def _overview(results: Sequence[ProfileResult]) -> str:
    rows = []
    for i, r in enumerate(results):
        best = r.score(r.best_layer)
        rows.append(
            {
                "model": f'<a href="#{_anchor(i)}">{_e(r.model or "?")}</a>',
                "weights": r.weights,
                "measure": r.measure,
                "split": r.split,
                "best layer": r.best_layer,
                "test R² mean ± std [95 % CI]": fmt_score(best),
                "median R²": fmt_num(best.r2_median),
                "e^(R²−1)": fmt_num(best.r2_norm_mean),
            }
        )
    return html_table(pd.DataFrame(rows), css_class="overview", raw_columns={"model"})


def _data_rows(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    first = ("source", "n_images", "n_skipped")
    rows = [(f"data {k}", str(data[k])) for k in first if k in data]
    # the skipped items have their own section
    rows += [(f"data {k}", str(v)) for k, v in data.items() if k not in (*first, "skipped")]
    return rows


def _layer_table(r: ProfileResult) -> str:
    kinds = [k for k in ("random", "shuffled") if k in r.profiles]
    lookup = {k: {s.layer: s for s in r.profiles[k]} for k in kinds}
    heads = {"random": "random weights R²", "shuffled": "shuffled measures R²"}
    weights = r.weights or "model"
    best = r.best_layer
    rows = []
    for i, s in enumerate(r.profiles["model"]):
        row: dict[str, Any] = {
            "#": i,
            "layer": s.layer + (" ★" if s.layer == best else ""),
            "dim": s.dim,
            f"{weights} R² mean ± std [95 % CI]": fmt_score(s),
            f"{weights} R² median": fmt_num(s.r2_median),
        }
        if r.split == LOCO:
            for c, v in s.r2_by_class.items():
                row[f"{c} held out"] = fmt_num(v[0] if len(v) == 1 else math.nan)
        if r.min_std is not None:
            row["columns floored (max over splits)"] = s.n_floored
        for k in kinds:
            row[f"{heads[k]} mean ± std"] = fmt_score(lookup[k].get(s.layer), ci=False)
        row["e^(R²−1)"] = fmt_num(s.r2_norm_mean)
        rows.append(row)
    best_row = r.layers.index(best)
    return html_table(pd.DataFrame(rows), css_class="layers", row_classes={best_row: "best"})


def _result_section(i: int, r: ProfileResult) -> str:
    best = r.score(r.best_layer)
    regressor = r.regressor if r.alpha is None else f"{r.regressor} (alpha = {r.alpha:g})"
    rows: list[tuple[str, str]] = [
        ("model", r.model or "n/a"),
        ("weights", r.weights or "n/a"),
        ("measure", r.measure or "n/a"),
        *_data_rows(r.data),
        ("regressor", regressor),
        ("split", SPLIT_TEXT.get(r.split, r.split)),
        *(
            [("held-out classes", ", ".join(r.data.get("classes", [])) or "n/a")]
            if r.split == LOCO
            else [("repetitions", str(r.reps)), ("test fraction", f"{r.test_fraction:g}")]
        ),
        ("seed", str(r.seed)),
        (
            "standardisation guard (min_std)",
            "off (plain per-column standardisation)"
            if r.min_std is None
            else f"{r.min_std:g} × the median training std (a column's std is floored there)",
        ),
        ("baselines", ", ".join(k for k in r.profiles if k != "model") or "none"),
        ("best layer", r.best_layer),
        ("best layer test R²", f"{fmt_score(best)} (e^(R²−1) = {fmt_num(best.r2_norm_mean)})"),
        ("rcvlab version", r.rcvlab_version or "n/a"),
    ]
    # per-fit details (e.g. every chosen ridge alpha) stay in profile.json, not on the page
    rows += [(f"extra {k}", str(v)) for k, v in r.extra.items() if len(str(v)) <= 200]
    command = (
        f"<pre><code>{_e(r.command)}</code></pre>"
        if r.command
        else '<p class="muted">(no command recorded)</p>'
    )
    held_out = (
        " Each value is the R² on one class the RCV was not fitted on (one column per "
        "held-out class); mean, median and interval are over the held-out classes."
        if r.split == LOCO
        else ""
    )
    return (
        f'<section id="{_anchor(i)}"><h2>{_e(_result_name(r))}</h2>'
        f"{_meta_list(rows)}<h3>Command</h3>{command}"
        "<h3>Test R² per layer</h3>"
        '<p class="muted">Layers in network order; ★ marks the best layer (highest mean '
        "test R² of the model). Below 0 (e^(R²−1) &lt; 1/e ≈ 0.368) the regression is worse "
        "than predicting the mean. A median far above the mean means that a few splits "
        f"pull the mean down.{held_out}</p>"
        f"{_layer_table(r)}</section>"
    )


def _mean_of(s: LayerScore | None) -> str:
    return "n/a" if s is None else fmt_num(s.r2_mean)


def split_comparison_section(
    per_class: Sequence[ProfileResult],
    held_out: Sequence[ProfileResult],
    *,
    notes: Sequence[str] = (),
) -> str:
    """An HTML section comparing per-class and leave-one-class-out profiles per network.

    One table per network, a row per layer: the per-class mean test R² of the model and of
    its random-weights twin, then the leave-one-class-out mean R² of the model, the twin
    and the shuffled measures, and the model's R² on every held-out class.

    Parameters
    ----------
    per_class, held_out : sequence of ProfileResult
        One per network, in the same order.
    notes : sequence of str
        Paragraphs shown above the tables (escaped here).

    Returns
    -------
    str
        The section's HTML (every text escaped), for ``render_report(sections=...)``.
    """
    if len(per_class) != len(held_out):
        raise ValueError(f"{len(per_class)} per-class profiles, {len(held_out)} held-out ones")
    parts = ['<section id="splits"><h2>Per class versus leave-one-class-out</h2>']
    parts += [f'<p class="note">{_e(n)}</p>' for n in notes]
    for a, b in zip(per_class, held_out, strict=True):
        look = {
            (split, kind): {s.layer: s for s in res.profiles.get(kind, ())}
            for split, res in (("pc", a), ("lo", b))
            for kind in ("model", "random", "shuffled")
        }
        rows = []
        for i, layer in enumerate(a.layers):
            row: dict[str, Any] = {
                "#": i,
                "layer": layer
                + (" ★" if layer == a.best_layer else "")
                + (" ◆" if layer == b.best_layer else ""),
                "per class R²": _mean_of(look[("pc", "model")].get(layer)),
                "per class random R²": _mean_of(look[("pc", "random")].get(layer)),
                "held-out R²": _mean_of(look[("lo", "model")].get(layer)),
                "held-out random R²": _mean_of(look[("lo", "random")].get(layer)),
                "held-out shuffled R²": _mean_of(look[("lo", "shuffled")].get(layer)),
            }
            s = look[("lo", "model")].get(layer)
            for c in b.data.get("classes", []):
                v = () if s is None else s.r2_by_class.get(c, ())
                row[f"{c} held out"] = fmt_num(v[0] if len(v) == 1 else None)
            rows.append(row)
        rows_best = {a.layers.index(a.best_layer): "best"} if a.best_layer in a.layers else {}
        parts.append(f"<h3>{_e(a.model or 'model')}</h3>")
        parts.append(html_table(pd.DataFrame(rows), css_class="layers", row_classes=rows_best))
    parts.append(
        '<p class="muted">Mean test R² per layer. ★ the best layer per class, ◆ the best '
        "layer held out. Per class: fitted and tested on images of the same class "
        "(repeated random splits). Held out: fitted on all other classes, tested on the "
        "held-out class, one value per class.</p></section>"
    )
    return "".join(parts)


def _figures_section(figures: Mapping[str, FigureLike]) -> str:
    parts = [
        f'<figure><img src="{figure_data_uri(fig)}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        for caption, fig in figures.items()
    ]
    return "<h2>Figures</h2>" + "".join(parts) if parts else ""


def _skipped_section(skipped: Sequence[SkipLike]) -> str:
    pairs = [_skip_pair(s) for s in skipped]
    if not pairs:
        return '<h2>Skipped items</h2><p class="muted">None.</p>'
    table = html_table(pd.DataFrame(pairs, columns=["path", "reason"]), css_class="skipped")
    if len(pairs) > SKIPPED_OPEN_MAX:
        table = f"<details><summary>{len(pairs)} items skipped (show)</summary>{table}</details>"
    return f"<h2>Skipped items ({len(pairs)})</h2>{table}"


def _environment_section(environment: Mapping[str, str]) -> str:
    frame = pd.DataFrame(list(environment.items()), columns=["component", "version"])
    return "<h2>Environment</h2>" + html_table(frame, css_class="env")


# -- public API -----------------------------------------------------------------------------


def render_report(
    results: Sequence[ProfileResult],
    *,
    title: str,
    figures: Mapping[str, FigureLike] | None = None,
    skipped: Sequence[SkipLike] = (),
    notes: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    sections: Sequence[str] = (),
) -> str:
    """Render a self-contained one-page HTML report.

    Parameters
    ----------
    results : sequence of ProfileResult
        The profiles to report, in display order.
    title : str
        Page title.
    figures : mapping of str to Figure or path, optional
        Caption -> figure (a :class:`~matplotlib.figure.Figure`, or a PNG/JPEG/SVG file),
        embedded as base64 data URIs. When omitted, one side-by-side profile figure of all
        results is drawn (:func:`rcvlab.viz.plot_profiles`); pass ``{}`` for none.
    skipped : sequence
        Items left out of the data, each a ``(path, reason)`` pair or an object with ``path``
        and ``reason`` attributes (e.g. :class:`rcvlab.data.base.Skip`).
    notes : sequence of str
        Paragraphs shown under the title (what the run shows and what it does not).
    environment : mapping of str to str, optional
        Component -> version; defaults to :func:`environment_info`.
    sections : sequence of str
        Further HTML sections made by rcvlab (e.g. a transfer table), placed after the
        profiles; their text must already be escaped.

    Returns
    -------
    str
        The HTML document.
    """
    if figures is None:
        from rcvlab.viz.profile import plot_profiles

        figures = (
            {"Normalised test R² e^(R²−1) per layer (95 % CI error bars)": plot_profiles(results)}
            if results
            else {}
        )
    env = environment_info() if environment is None else environment
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Generated {stamp}.</p>',
        *(f'<p class="note">{_e(n)}</p>' for n in notes),
    ]
    if results:
        body += ["<h2>Overview</h2>", _overview(results)]
    body.append(_figures_section(figures))
    body += [_result_section(i, r) for i, r in enumerate(results)]
    body += list(sections)
    body += [_skipped_section(skipped), _environment_section(env)]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_report(
    path: str | os.PathLike[str],
    results: Sequence[ProfileResult],
    **kwargs: Any,
) -> Path:
    """Render the report and write it atomically (:func:`rcvlab.runio.write_text`).

    Parameters
    ----------
    path : str or path-like
        Destination ``.html`` file; its directory must exist.
    results : sequence of ProfileResult
        The profiles to report.
    **kwargs
        Passed to :func:`render_report` (``title`` is required there).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    write_text(path, render_report(results, **kwargs))
    return path


__all__ = [
    "ENV_PACKAGES",
    "SPLIT_TEXT",
    "environment_info",
    "figure_data_uri",
    "fmt_num",
    "fmt_score",
    "html_table",
    "render_report",
    "split_comparison_section",
    "write_report",
]
