"""Writing a transfer run's folder, and its section of an HTML report."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import pandas as pd

from rcvlab.analyses.transfer import TransferResult
from rcvlab.runio import write_figure, write_text, write_torch

TRANSFER_FILES = (
    "transfer.json",
    "transfer.csv",
    "transfer_by_class.csv",
    "predictions.csv",
    "summary.md",
    "transfer.png",
    "heads.pt",
)
"""The files :func:`write_transfer_run` writes, in that order."""


def write_transfer_run(out: str | os.PathLike[str], result: TransferResult) -> dict[str, Path]:
    """Write a transfer run's files into the folder ``out``; each is written atomically.

    ``transfer.json`` (the result, :meth:`TransferResult.to_json`), ``transfer.csv`` (one row
    per variant and seed), ``transfer_by_class.csv`` (MAE per class), ``predictions.csv``
    (every test prediction: ``variant, seed, path, group, true_class, true_area,
    predicted_area, predicted_class``), ``summary.md``, ``transfer.png`` and ``heads.pt``
    (the heads' state dicts, which the JSON does not hold).

    Returns
    -------
    dict of str to Path
        Every file written, by name.
    """
    from rcvlab.viz.transfer import plot_transfer

    out = Path(out)
    files = {name: out / name for name in TRANSFER_FILES}
    result.to_json(files["transfer.json"])
    write_text(files["transfer.csv"], result.to_frame().to_csv(index=False))
    write_text(files["transfer_by_class.csv"], result.class_frame().to_csv(index=False))
    write_text(files["predictions.csv"], result.predictions_frame().to_csv(index=False))
    write_text(files["summary.md"], result.to_markdown())
    write_figure(files["transfer.png"], plot_transfer(result))
    write_torch(files["heads.pt"], result.heads)
    return files


def transfer_section(result: TransferResult, notes: tuple[str, ...] = ()) -> str:
    """An HTML section: the summary (mean and std over seeds), the MAE per class and the
    Wilcoxon tests (tables by :meth:`pandas.DataFrame.to_html`, all text escaped)."""
    s = result.summary_frame()
    metrics = ("mae", "accuracy", "kappa", "kappa_quadratic")
    summary = pd.DataFrame(
        {
            "variant": s.index,
            **{
                f"{m} mean (std)": [
                    f"{row[f'{m}_mean']:.3f} ({row[f'{m}_std']:.3f})" for _, row in s.iterrows()
                ]
                for m in metrics
            },
        }
    )
    classes = list(result.class_mean_area)
    per_class = pd.DataFrame(
        {
            "variant": s.index,
            **{
                c: [f"{row.get(f'mae_{c}_mean', float('nan')):.2f}" for _, row in s.iterrows()]
                for c in classes
            },
        }
    )
    wil = "".join(
        f"<li>{escape(k)}: statistic {w['statistic']:.3g}, p = {w['p']:.3g} (n = {w['n']})</li>"
        for k, w in result.wilcoxon.items()
    )
    means = ", ".join(f"{escape(k)} {v:.1f}" for k, v in result.class_mean_area.items())
    d = result.data
    command = result.meta.get("command", "")
    n_seeds = len({r.seed for r in result.runs})

    def table(f: pd.DataFrame) -> str:
        return f.to_html(index=False, escape=True, border=0)

    return "\n".join(
        [
            f"<h2>Transfer: {escape(result.model)} ({escape(result.mode)} mode), "
            f"{escape(result.measure)}</h2>",
            *(f'<p class="note">{escape(n)}</p>' for n in notes),
            f"<p>Patches: {d.get('n_train')} train / {d.get('n_val')} validation / "
            f"{d.get('n_test')} test, split by source slide (seed {escape(str(result.seed))}); "
            f"{d.get('n_excluded_nan')} without a nucleus left out. Heads: {n_seeds} seeds, "
            f"{result.epochs} epochs, Adam lr {result.lr:g}, batch {result.batch_size}.</p>",
            table(summary),
            f"<p>Test MAE per class (training-set mean area: {means}):</p>",
            table(per_class),
            f"<p>Wilcoxon signed-rank tests of MAE, paired by seed:</p><ul>{wil}</ul>",
            f"<pre><code>{escape(command)}</code></pre>" if command else "",
        ]
    )


__all__ = ["TRANSFER_FILES", "transfer_section", "write_transfer_run"]
