"""Writing the run folders of paper 001's analyses: sparsity, alignment, consistency.

Every file is written atomically (:func:`rcvlab.runio.write_text`; figures through a
temporary name), into a folder the caller prepared (:func:`rcvlab.runio.prepare_out`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rcvlab.analyses.alignment import AlignmentResult, alignment_frame
from rcvlab.analyses.consistency import ConsistencyResult
from rcvlab.analyses.sparsity import SparsityResult, dump_json
from rcvlab.runio import write_figure, write_text


def default_table_alphas(alphas: Sequence[float]) -> list[float]:
    """Alphas of Table 1: the plain fit (0) when in the grid, and the non-zero alpha of the
    grid closest to the paper's 0.001."""
    grid = np.asarray(alphas, dtype=float)
    out = [0.0] if np.isclose(grid, 0.0).any() else []
    nonzero = grid[~np.isclose(grid, 0.0)]
    if nonzero.size:
        out.append(float(nonzero[np.argmin(np.abs(np.log(nonzero / 0.001)))]))
    return out


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

    out = Path(out)
    files = {
        name: out / name
        for name in (
            "sparsity.csv",
            "sparsity.json",
            "sparsity.png",
            "cross_class.csv",
            "summary.md",
        )
    }
    if table_alphas is None:
        table_alphas = default_table_alphas(result.alphas)
    write_text(files["sparsity.csv"], result.to_frame().to_csv(index=False))
    result.to_json(files["sparsity.json"])
    write_text(files["cross_class.csv"], result.cross_class_table(table_alphas).to_csv(index=False))
    write_text(files["summary.md"], result.to_markdown(table_alphas))
    write_figure(files["sparsity.png"], plot_sparsity(result))
    return files


def write_alignment_run(
    out: str | os.PathLike[str], results: Sequence[AlignmentResult]
) -> dict[str, Path]:
    """``alignment.csv`` (the stacked curves), ``alignment.json``, ``alignment.png``,
    ``summary.md``.

    ``alignment.json`` holds ``{"analysis": "alignment", "results": [...]}``, each entry
    :meth:`AlignmentResult.to_dict`.
    """
    from rcvlab.viz.encoding import plot_alignment

    results = list(results)
    if not results:
        raise ValueError("write_alignment_run needs at least one result.")
    out = Path(out)
    files = {
        name: out / name
        for name in ("alignment.csv", "alignment.json", "alignment.png", "summary.md")
    }
    write_text(files["alignment.csv"], alignment_frame(results).to_csv(index=False))
    dump_json(
        {"analysis": "alignment", "results": [r.to_dict() for r in results]},
        files["alignment.json"],
    )
    write_text(files["summary.md"], alignment_markdown(results))
    write_figure(files["alignment.png"], plot_alignment(results))
    return files


def alignment_markdown(results: Sequence[AlignmentResult]) -> str:
    """A short table: non-zero coefficients, R², components for 50/90/99/100 % of the norm."""
    m = results[0].meta
    bits = ", ".join(f"{k} {m[k]}" for k in ("model", "layer", "measure") if m.get(k))
    lines = [
        "# Alignment of the RCV with individual feature maps",
        "",
        (f"{bits}; " if bits else "")
        + (f"class {m['train_class']}; " if m.get("train_class") else "")
        + f"{results[0].n_train} training / {results[0].n_test} test images. The curve is the "
        "norm of the d' largest components of the unit RCV (standardised feature space); "
        "d' for x % is the fewest components whose norm reaches x %.",
        "",
        "| RCV | non-zero | train R² | test R² | largest component | d' for 50 % | 90 % | 99 % "
        "| 100 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.summary()

        def cell(v: object) -> str:
            return "–" if v is None else str(v)

        lines.append(
            f"| {r.label} | {r.n_nonzero} of {r.dim} | {r.r2_train:.3f} | {r.r2_test:.3f} | "
            f"{s['max_component']:.3f} | {cell(s['dims_for_0.5'])} | {cell(s['dims_for_0.9'])} "
            f"| {cell(s['dims_for_0.99'])} | {cell(s['dims_for_1'])} |"
        )
    lines += [
        "",
        "Published (paper 001, InceptionV3 mixed8, albatross): Lasso alpha = 0.001 keeps 40 "
        "of 1280 coefficients (R² 0.839); the plain fit R² 0.874.",
        "",
    ]
    if m.get("command"):
        lines += [f"Command: `{m['command']}`", ""]
    return "\n".join(lines)


def write_consistency_run(
    out: str | os.PathLike[str], result: ConsistencyResult
) -> dict[str, Path]:
    """``consistency.csv``, ``consistency_runs.csv``, ``consistency.json``, ``consistency.png``
    and ``summary.md`` (Table 2 style)."""
    from rcvlab.viz.encoding import plot_consistency

    out = Path(out)
    files = {
        name: out / name
        for name in (
            "consistency.csv",
            "consistency_runs.csv",
            "consistency.json",
            "consistency.png",
            "summary.md",
        )
    }
    write_text(files["consistency.csv"], result.to_frame().to_csv(index=False))
    write_text(files["consistency_runs.csv"], result.runs_frame().to_csv(index=False))
    result.to_json(files["consistency.json"])
    write_text(files["summary.md"], result.to_markdown())
    write_figure(files["consistency.png"], plot_consistency(result))
    return files


def encoding_section(
    sparsity_result: SparsityResult,
    consistency_result: ConsistencyResult | None = None,
    alignment_results: Sequence[AlignmentResult] = (),
    *,
    title: str = "How scale is encoded: sparsity and consistency",
    notes: Sequence[str] = (),
) -> str:
    """An HTML section for the one-page report: Table 1 (cross-class R² of the plain and the
    Lasso RCV), the sparsity figure, the alignment summary and the consistency angles (all
    text escaped, figures embedded)."""
    from html import escape

    from rcvlab.report.html import _figure_data_uri
    from rcvlab.viz.encoding import plot_alignment, plot_consistency, plot_sparsity

    def table(frame, cols, fmt) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{fmt(v)}</td>'
                if isinstance(v, float | np.floating)
                else f"<td>{escape(str(v))}</td>"
                for v in (row[c] for c in cols)
            )
            + "</tr>"
            for _, row in frame.iterrows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def num(v: float) -> str:
        return "–" if not np.isfinite(v) else f"{v:.3f}"

    parts = [f"<h2>{escape(title)}</h2>", *(f'<p class="note">{escape(n)}</p>' for n in notes)]
    m = sparsity_result.meta
    parts.append(
        f"<p>Layer {escape(str(m.get('layer', '?')))}, training class "
        f"{escape(str(m.get('train_class', '?')))}: test R² of the plain RCV (alpha 0) and "
        "the Lasso RCV on held-out images of the same class and on whole other classes "
        "(paper 001, Table 1), mean [95 % CI] over repetitions.</p>"
    )
    t = sparsity_result.cross_class_table(default_table_alphas(sparsity_result.alphas))
    parts.append(
        table(
            t,
            [
                "test_set",
                "alpha",
                "regressor",
                "n_nonzero_mean",
                "r2_mean",
                "r2_ci95_low",
                "r2_ci95_high",
            ],
            num,
        )
    )
    figs = [("R² versus the number of non-zero coefficients", plot_sparsity(sparsity_result))]
    if alignment_results:
        bits = ", ".join(
            f"{escape(r.regressor)}: {r.n_nonzero} non-zero, "
            + (f"{r.dims_for(0.9)} maps hold 90 % of the norm" if r.defined else "a zero RCV")
            for r in alignment_results
        )
        parts.append(f"<p>Alignment (Figure 3): {bits}.</p>")
        figs.append(("Cumulative norm of the sorted RCV", plot_alignment(alignment_results)))
    if consistency_result is not None:
        parts.append(
            "<p>Consistency (paper 001, Table 2): angle between RCVs of disjoint halves of a "
            "class, of two classes, and of the measure shuffled (≈ 90° for unrelated "
            "directions), mean ± std over repetitions.</p>"
        )
        cols = ["a", "b", "regressor", "angle_mean", "angle_std", "cos_mean", "cos_std"]
        parts.append(table(consistency_result.to_frame(), cols, num))
        figs.append(("RCV angles", plot_consistency(consistency_result)))
    for caption, fig in figs:
        parts.append(
            f'<figure><img alt="{escape(caption)}" src="{_figure_data_uri(fig)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


__all__ = [
    "alignment_markdown",
    "default_table_alphas",
    "encoding_section",
    "write_alignment_run",
    "write_consistency_run",
    "write_sparsity_run",
]
