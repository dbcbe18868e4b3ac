"""Writing the run folders of paper 001's analyses: sparsity, alignment, consistency.

Every file is written atomically (:func:`rcvlab.runio.write_text`; figures through a
temporary name), into a folder the caller prepared (:func:`rcvlab.runio.prepare_out`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rcvlab.analyses.alignment import AlignmentResult
from rcvlab.analyses.consistency import ConsistencyResult
from rcvlab.analyses.sparsity import SparsityResult, default_table_alphas
from rcvlab.runio import write_figure, write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_analysis_run(
    out: str | os.PathLike[str],
    stem: str,
    result: SparsityResult | AlignmentResult | ConsistencyResult,
    figure: Callable[[], Figure],
    markdown: str,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """``<stem>.csv`` (:meth:`~rcvlab.result.Result.to_frame`), ``<stem>.json``,
    ``<stem>.png`` (``figure()``), ``summary.md`` (``markdown``) and one CSV per ``tables``
    entry (file name: table), each written atomically into the existing folder ``out``.

    Returns
    -------
    dict of str to Path
        Every file by its name.
    """
    out = Path(out)
    extra = dict(tables or {})
    names = (f"{stem}.csv", f"{stem}.json", f"{stem}.png", *extra, "summary.md")
    files = {name: out / name for name in names}
    write_text(files[f"{stem}.csv"], result.to_frame().to_csv(index=False))
    for name, table in extra.items():
        write_text(files[name], table.to_csv(index=False))
    result.to_json(files[f"{stem}.json"])
    write_text(files["summary.md"], markdown)
    write_figure(files[f"{stem}.png"], figure())
    return files


def write_sparsity_run(
    out: str | os.PathLike[str],
    result: SparsityResult,
    table_alphas: Sequence[float] | None = None,
) -> dict[str, Path]:
    """``sparsity.csv``, ``sparsity.json``, ``sparsity.png``, ``cross_class.csv``, ``summary.md``.

    Parameters
    ----------
    out : path
        An existing folder.
    result : SparsityResult
    table_alphas : sequence of float, optional
        Alphas of Table 1 (``cross_class.csv``); default 0 and 0.001 when they are in the
        grid (:func:`default_table_alphas`: else the non-zero alpha closest to 0.001).

    Returns
    -------
    dict of str to Path
    """
    from rcvlab.viz.encoding import plot_sparsity

    if table_alphas is None:
        table_alphas = default_table_alphas(result.alphas)
    return write_analysis_run(
        out,
        "sparsity",
        result,
        lambda: plot_sparsity(result),
        result.to_markdown(table_alphas),
        {"cross_class.csv": result.cross_class_table(table_alphas)},
    )


def write_alignment_run(out: str | os.PathLike[str], result: AlignmentResult) -> dict[str, Path]:
    """``alignment.csv`` (the stacked curves), ``alignment.json``, ``alignment.png``,
    ``summary.md``.

    Parameters
    ----------
    out : path
        An existing folder.
    result : AlignmentResult

    Returns
    -------
    dict of str to Path
    """
    from rcvlab.viz.encoding import plot_alignment

    return write_analysis_run(
        out, "alignment", result, lambda: plot_alignment(result), result.to_markdown()
    )


def write_consistency_run(
    out: str | os.PathLike[str], result: ConsistencyResult
) -> dict[str, Path]:
    """``consistency.csv``, ``consistency_runs.csv``, ``consistency.json``, ``consistency.png``
    and ``summary.md`` (Table 2 style)."""
    from rcvlab.viz.encoding import plot_consistency

    return write_analysis_run(
        out,
        "consistency",
        result,
        lambda: plot_consistency(result),
        result.to_markdown(),
        {"consistency_runs.csv": result.runs_frame()},
    )


def encoding_section(
    sparsity_result: SparsityResult,
    consistency_result: ConsistencyResult | None = None,
    alignment_result: AlignmentResult | None = None,
    *,
    title: str = "How scale is encoded: sparsity and consistency",
    notes: Sequence[str] = (),
) -> str:
    """An HTML section for the one-page report: Table 1 (cross-class R² of the plain and the
    Lasso RCV), the sparsity figure, the alignment summary and the consistency angles (all
    text escaped, figures embedded; tables by :meth:`pandas.DataFrame.to_html`)."""
    from html import escape

    from rcvlab.report.html import figure_data_uri
    from rcvlab.viz.encoding import plot_alignment, plot_consistency, plot_sparsity

    def num(v: float) -> str:
        return "–" if not np.isfinite(v) else f"{v:.3f}"

    def table(frame: pd.DataFrame, cols: Sequence[str]) -> str:
        return frame[list(cols)].to_html(
            index=False, escape=True, border=0, na_rep="–", float_format=num
        )

    parts = [f"<h2>{escape(title)}</h2>", *(f'<p class="note">{escape(n)}</p>' for n in notes)]
    m = sparsity_result.meta
    parts.append(
        f"<p>Layer {escape(str(m.get('layer', '?')))}, training class "
        f"{escape(str(m.get('train_class', '?')))}: test R² of the plain RCV (alpha 0) and "
        "the Lasso RCV on held-out images of the same class and on whole other classes "
        "(paper 001, Table 1), mean [95 % CI] over repetitions.</p>"
    )
    t = sparsity_result.cross_class_table(default_table_alphas(sparsity_result.alphas))
    cols = ["test_set", "alpha", "regressor", "n_nonzero_mean", "r2_mean"]
    parts.append(table(t, [*cols, "r2_ci95_low", "r2_ci95_high"]))
    figs = [("R² versus the number of non-zero coefficients", plot_sparsity(sparsity_result))]
    if alignment_result is not None:
        bits = ", ".join(
            f"{escape(c.regressor)}: {c.n_nonzero} non-zero, "
            + (f"{c.dims_for(0.9)} maps hold 90 % of the norm" if c.defined else "a zero RCV")
            for c in alignment_result
        )
        parts.append(f"<p>Alignment (Figure 3): {bits}.</p>")
        figs.append(("Cumulative norm of the sorted RCV", plot_alignment(alignment_result)))
    if consistency_result is not None:
        parts.append(
            "<p>Consistency (paper 001, Table 2): angle between RCVs of disjoint halves of a "
            "class, of two classes, and of the measure shuffled (≈ 90° for unrelated "
            "directions), mean ± std over repetitions.</p>"
        )
        cols = ["a", "b", "regressor", "angle_mean", "angle_std", "cos_mean", "cos_std"]
        parts.append(table(consistency_result.to_frame(), cols))
        figs.append(("RCV angles", plot_consistency(consistency_result)))
    for caption, fig in figs:
        parts.append(
            f'<figure><img alt="{escape(caption)}" src="{figure_data_uri(fig)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


__all__ = [
    "default_table_alphas",
    "encoding_section",
    "write_alignment_run",
    "write_analysis_run",
    "write_consistency_run",
    "write_sparsity_run",
]
