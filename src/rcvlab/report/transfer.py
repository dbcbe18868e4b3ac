"""Writing a transfer run's folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rcvlab.analyses.transfer import TransferResult
from rcvlab.runio import write_text


def write_transfer_run(out: str | os.PathLike[str], result: TransferResult) -> dict[str, Path]:
    """``transfer.json``, ``transfer.csv``, ``summary.md``, ``transfer.png`` and ``heads.pt``."""
    from rcvlab.viz.transfer import plot_transfer

    out = Path(out)
    files = {
        "transfer.json": out / "transfer.json",
        "transfer.csv": out / "transfer.csv",
        "summary.md": out / "summary.md",
        "transfer.png": out / "transfer.png",
        "heads.pt": out / "heads.pt",
    }
    result.to_json(files["transfer.json"])
    write_text(files["transfer.csv"], result.to_frame().to_csv(index=False))
    write_text(files["summary.md"], result.to_markdown())
    plot_transfer(result).savefig(files["transfer.png"], dpi=110, bbox_inches="tight")
    tmp = out / ".heads.pt.tmp"
    torch.save(result.heads, tmp)
    os.replace(tmp, files["heads.pt"])
    return files


def transfer_section(result: TransferResult, notes: tuple[str, ...] = ()) -> str:
    """An HTML section with the transfer summary (means and std over seeds), per-class MAE and
    the Wilcoxon tests (all text escaped)."""
    from html import escape

    s = result.summary_frame()
    metrics = ("mae", "accuracy", "kappa", "kappa_quadratic")
    head = "".join(f"<th>{escape(m)} mean (std)</th>" for m in metrics)
    rows = []
    for v, row in s.iterrows():
        cells = "".join(
            f'<td class="num">{row[f"{m}_mean"]:.3f} ({row[f"{m}_std"]:.3f})</td>' for m in metrics
        )
        rows.append(f"<tr><td>{escape(str(v))}</td>{cells}</tr>")
    classes = list(result.class_mean_area)
    per = [
        "<tr><td>{}</td>{}</tr>".format(
            escape(str(v)),
            "".join(
                f'<td class="num">{row.get(f"mae_{c}_mean", float("nan")):.2f}</td>'
                for c in classes
            ),
        )
        for v, row in s.iterrows()
    ]
    wil = "".join(
        f"<li>{escape(k)}: statistic {w['statistic']:.3g}, p = {w['p']:.3g} (n = {w['n']})</li>"
        for k, w in result.wilcoxon.items()
    )
    means = ", ".join(f"{escape(k)} {v:.1f}" for k, v in result.class_mean_area.items())
    d = result.data
    return "\n".join(
        [
            f"<h2>Transfer: {escape(result.model)} ({escape(result.mode)} mode), "
            f"{escape(result.measure)}</h2>",
            *(f'<p class="note">{escape(n)}</p>' for n in notes),
            f"<p>Patches: {d.get('n_train')} train / {d.get('n_val')} validation / "
            f"{d.get('n_test')} test, split by source slide; {d.get('n_excluded_nan')} without "
            f"a nucleus left out. Heads: {escape(str(len(set(r.seed for r in result.runs))))} "
            f"seeds, {result.epochs} epochs, Adam lr {result.lr:g}, batch {result.batch_size}.</p>",
            f"<table><tr><th>variant</th>{head}</tr>{''.join(rows)}</table>",
            f"<p>Test MAE per class (training-set mean area: {means}):</p>",
            "<table><tr><th>variant</th>"
            + "".join(f"<th>{escape(c)}</th>" for c in classes)
            + f"</tr>{''.join(per)}</table>",
            f"<p>Wilcoxon signed-rank tests of MAE, paired by seed:</p><ul>{wil}</ul>",
            f"<pre><code>{escape(result.command)}</code></pre>" if result.command else "",
        ]
    )


__all__ = ["transfer_section", "write_transfer_run"]
