"""A finetuning run's history: loss, accuracy and AUC per epoch, training and validation."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.finetune import PAPER_VAL_ACCURACY, PAPER_VAL_AUC, FinetuneResult


def plot_finetune(result: FinetuneResult) -> Figure:
    """Three panels (binary cross-entropy, accuracy, AUC) per epoch, training and
    validation, with the kept (best validation AUC) epoch marked and the paper's validation
    accuracy and AUC as dotted lines."""
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    frame = result.to_frame()
    epochs = frame["epoch"].to_numpy()
    panels = (
        ("loss", "binary cross-entropy", None),
        ("accuracy", "accuracy", PAPER_VAL_ACCURACY),
        ("auc", "AUC", PAPER_VAL_AUC),
    )
    for ax, (key, label, paper) in zip(axes, panels, strict=True):
        ax.plot(epochs, frame[f"train_{key}"], "o-", color="C0", ms=3, label="training")
        ax.plot(epochs, frame[f"val_{key}"], "s-", color="C1", ms=3, label="validation")
        ax.axvline(result.best_epoch, color="0.5", ls="--", lw=1, label="kept epoch")
        if paper is not None:
            ax.axhline(paper, color="C1", ls=":", lw=1, label=f"paper's validation ({paper})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        if key != "loss":
            lo = np.nanmin(frame[[f"train_{key}", f"val_{key}"]].to_numpy(), initial=1.0)
            ax.set_ylim(min(0.45, lo - 0.05), 1.02)
    axes[0].legend(fontsize="small")
    axes[2].legend(fontsize="small", loc="lower right")
    fig.suptitle(
        f"{result.model_name} finetuned ({result.positive} vs {result.negative}): validation "
        f"accuracy {result.val_accuracy:.3f}, AUC {result.val_auc:.3f} at epoch "
        f"{result.best_epoch}",
        fontsize="medium",
    )
    return fig


__all__ = ["plot_finetune"]
