"""Writing a finetune run's folder, reading it back, and its section of an HTML report."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import pandas as pd

from rcvlab.analyses.finetune import PAPER_VAL_ACCURACY, PAPER_VAL_AUC, FinetuneResult
from rcvlab.errors import RcvlabError
from rcvlab.runio import write_figure, write_text

FINETUNE_FILES = (
    "model.pt",
    "history.csv",
    "predictions.csv",
    "finetune.json",
    "finetune.png",
    "summary.md",
)
"""The files :func:`write_finetune_run` writes, in that order."""


def write_finetune_run(out: str | os.PathLike[str], result: FinetuneResult) -> dict[str, Path]:
    """Write a finetune run's files into the folder ``out``; each is written atomically.

    ``model.pt`` (the finetuned network, :func:`rcvlab.models.save_weights`: loadable with
    ``load_model(result.model_name, "OUT/model.pt")`` / CLI ``--weights OUT/model.pt``),
    ``history.csv`` (:meth:`FinetuneResult.to_frame`: loss, accuracy, AUC per epoch,
    training and validation, and the learning rate), ``predictions.csv`` (the kept epoch's
    validation predictions), ``finetune.json`` (the result), ``finetune.png``
    (:func:`rcvlab.viz.finetune.plot_finetune`) and ``summary.md``.

    Returns
    -------
    dict of str to Path
        Every file written, by name.

    Raises
    ------
    RcvlabError
        A result without its model (read from JSON): there is no network to save.
    """
    from rcvlab.models.registry import save_weights
    from rcvlab.viz.finetune import plot_finetune

    if result.model is None:
        raise RcvlabError(
            "This finetune result has no model (read from JSON?); write_finetune_run needs "
            "the result finetune() returned."
        )
    out = Path(out)
    files = {name: out / name for name in FINETUNE_FILES}
    save_weights(result.model, files["model.pt"])
    write_text(files["history.csv"], result.to_frame().to_csv(index=False))
    write_text(files["predictions.csv"], result.predictions_frame().to_csv(index=False))
    result.to_json(files["finetune.json"])
    write_figure(files["finetune.png"], plot_finetune(result))
    write_text(files["summary.md"], result.to_markdown())
    return files


def read_finetune_run(out: str | os.PathLike[str]) -> FinetuneResult:
    """A run folder's ``finetune.json``, with :attr:`~FinetuneResult.model` loaded from its
    ``model.pt`` when that file is there and the architecture is a registry name (a custom
    module's file is loaded with ``rcvlab.load_model(module, path, input_size=...)``)."""
    from dataclasses import replace

    from rcvlab.models.registry import load_model

    out = Path(out)
    result = FinetuneResult.from_json(out / "finetune.json")
    path = out / "model.pt"
    if not path.is_file() or result.model_name == "custom":
        return result
    return replace(result, model=load_model(result.model_name, path))


def finetune_section(result: FinetuneResult) -> str:
    """An HTML section: validation accuracy and AUC beside the paper's, the history
    figure and the per-epoch table (all text escaped)."""
    from rcvlab.report.html import figure_data_uri, html_table
    from rcvlab.viz.finetune import plot_finetune

    frame = result.to_frame()
    table = pd.DataFrame(
        {
            "epoch": [
                f"{e}{' (kept)' if b else ''}" for e, b in zip(frame.epoch, frame.best, strict=True)
            ],
            **{
                c.replace("_", " "): [f"{v:.4f}" if "loss" in c else f"{v:.3f}" for v in frame[c]]
                for c in frame.columns
                if c not in ("epoch", "best", "lr")
            },
            "lr": [f"{v:.4g}" for v in frame.lr],
        }
    )
    o = result.meta.get("options", {})
    command = result.meta.get("command", "")
    best = {i: "best" for i, b in enumerate(frame.best) if b}
    return "\n".join(
        [
            f"<h2>Finetune: {escape(result.model_name)} ({escape(result.weights)}), "
            f"{escape(result.positive)} vs {escape(result.negative)}</h2>",
            f"<p>Validation accuracy <b>{result.val_accuracy:.3f}</b>, AUC "
            f"<b>{result.val_auc:.3f}</b> at epoch {result.best_epoch} of {result.epochs} "
            f"(the epoch with the best validation AUC, kept). The paper's, on 2,274 "
            f"Camelyon17 patches with InceptionV3: accuracy {PAPER_VAL_ACCURACY}, AUC "
            f"{PAPER_VAL_AUC}.</p>",
            f"<p>{result.n_train} training / {result.n_val} validation images "
            f"({escape(str(result.meta.get('split', '')))} split, seed "
            f"{escape(str(result.meta.get('seed')))}); SGD lr {escape(str(o.get('lr')))} with "
            f"Keras decay {escape(str(o.get('decay')))} (lr / (1 + decay &middot; t)), Nesterov "
            f"momentum {escape(str(o.get('momentum')))}, batch {escape(str(o.get('batch_size')))}"
            f", augmentation {escape(str(o.get('augment')))}.</p>",
            f'<img alt="finetune history" src="{figure_data_uri(plot_finetune(result))}">',
            html_table(table, css_class="layers", row_classes=best),
            f"<pre><code>{escape(command)}</code></pre>" if command else "",
        ]
    )


__all__ = ["FINETUNE_FILES", "finetune_section", "read_finetune_run", "write_finetune_run"]
