"""The offline demo: the embedded scale set through ImageNet-pretrained networks."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from rcvlab.analyses.alignment import AlignmentResult
from rcvlab.analyses.consistency import ConsistencyResult
from rcvlab.analyses.profile import layer_profile
from rcvlab.analyses.sparsity import SparsityResult
from rcvlab.models.registry import load_model
from rcvlab.probe.result import ProfileResult
from rcvlab.report.run import profiles_frame, write_profile_run
from rcvlab.result import Result, provenance
from rcvlab.runio import finish_run, prepare_out

DEMO_NOTES = (
    "Data: the embedded scale set — real photographs shipped with scikit-image and "
    "scikit-learn (object crops pasted at exact, random area ratios onto crops of other real "
    "photographs, colour statistics matched and jittered). It is not ImageNet or PASCAL VOC: "
    "the placements are synthetic, so absolute R² values are not the papers'. Cues that may "
    "remain are the paste outline (feathered) and the resampling of the object crop.",
    "Baselines: 'random weights' is the same architecture with its own seeded initialisation "
    "(BatchNorm running statistics left at their defaults), 'shuffled measures' the pretrained "
    "features regressed on permuted scale ratios. e^(R²-1) below 1/e means worse than "
    "predicting the mean.",
    "Two profiles per network, from the same features: per class (the papers' protocol: "
    "fitted and tested on random splits of one class's images) and leave-one-class-out "
    "(fitted on the other classes, tested on the held-out one). Every class here is one "
    "object photo pasted at many sizes, so within a class even a random network reads the "
    "size of that photo from how its pixels change; only a layer that encodes scale rather "
    "than the look of the training objects keeps its R² on an object it was never fitted on.",
)


@dataclass(frozen=True)
class DemoResult(Result):
    """What ``rcvlab demo`` computed: two profiles per network and the encoding analyses.

    Attributes
    ----------
    profiles : tuple of ProfileResult
        The per-class profile of every network, in the order given (the first is
        ``profile.json``).
    loco_profiles : tuple of ProfileResult
        The leave-one-class-out profile of every network from the same features, in the
        same order (the first is ``profile_loco.json``); empty in ``demo.json`` files
        written before it existed.
    sparsity, alignment, consistency : result or None
        The encoding analyses at the first network's best layer (None without ``encoding``).
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`).

    ``to_frame()`` is ``profile.csv``: the columns ``model``, ``weights`` and those of
    :meth:`ProfileResult.to_frame` (``split``, ``profile``, ``layer_index``, ``layer``,
    ``dim``, ``r2_mean``, ``r2_median``, ``r2_std``, ``r2_ci95_low``, ``r2_ci95_high``,
    ``r2_norm_mean``, ``n_reps``, ``n_constant``, ``n_floored``), one row per network,
    split, profile and layer (per-class profiles first).
    """

    kind: ClassVar[str] = "demo"
    frame_columns: ClassVar[tuple[str, ...]] = ("model", "weights", *ProfileResult.frame_columns)

    profiles: tuple[ProfileResult, ...]
    loco_profiles: tuple[ProfileResult, ...] = ()
    sparsity: SparsityResult | None = None
    alignment: AlignmentResult | None = None
    consistency: ConsistencyResult | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Every network's profile tables with ``model`` and ``weights`` columns in front."""
        return profiles_frame([*self.profiles, *self.loco_profiles])

    def to_dict(self) -> dict[str, Any]:
        """The profiles and the encoding results, each in its own JSON layout."""
        parts = {
            "sparsity": self.sparsity,
            "alignment": self.alignment,
            "consistency": self.consistency,
        }
        return {
            "profiles": [p.to_dict() for p in self.profiles],
            "loco_profiles": [p.to_dict() for p in self.loco_profiles],
            **{k: None if v is None else v.to_dict() for k, v in parts.items()},
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DemoResult:
        """Rebuild from :meth:`to_dict` (``loco_profiles`` empty when the file has none)."""
        kinds = {
            "sparsity": SparsityResult,
            "alignment": AlignmentResult,
            "consistency": ConsistencyResult,
        }
        return cls(
            profiles=tuple(ProfileResult.from_dict(p) for p in d["profiles"]),
            loco_profiles=tuple(ProfileResult.from_dict(p) for p in d.get("loco_profiles", [])),
            **{k: None if d.get(k) is None else c.from_dict(d[k]) for k, c in kinds.items()},
            meta=dict(d.get("meta", {})),
        )


def run_demo(
    out: str | os.PathLike[str] = "runs/demo",
    *,
    models: Sequence[str] = ("efficientnet_lite0", "mobilenet_v2"),
    n_per_class: int = 300,
    reps: int = 10,
    seed: int = 0,
    regressor: str = "ridge",
    min_std: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    command: str = "",
    echo: Callable[[str], None] = print,
    progress: bool = True,
    encoding: bool = True,
) -> DemoResult:
    """Profile each of ``models`` (ImageNet weights) on the embedded scale set and write the run.

    Every network gets two profiles from the same features (extracted once, into
    ``cache_dir`` or a temporary cache): per class (the papers' protocol, ``profile.json``)
    and leave-one-class-out (``profile_loco.json``; fitted on the other classes, R² on the
    held-out one), each with both baselines; the report shows them side by side.

    With ``encoding`` the report gains a section on how scale is encoded at the first
    model's best layer (paper 001): the Lasso path within and across classes, the alignment
    of the plain and the Lasso RCV, and the angles between RCVs (:func:`encoding_demo`; its
    files go to ``out/encoding/``). The run folder gets ``demo.json`` (the
    :class:`DemoResult`) and is marked complete in ``run.json`` at its end.

    Returns
    -------
    DemoResult
    """
    from rcvlab.data.scaleset import scaleset

    if not models:
        raise ValueError("models is empty")
    if cache_dir is None:
        # the leave-one-class-out profile and the encoding section read the profile's
        # features back: without a cache they would be extracted again
        with tempfile.TemporaryDirectory(prefix="rcvlab-demo-") as tmp:
            return run_demo(
                out,
                models=models,
                n_per_class=n_per_class,
                reps=reps,
                seed=seed,
                regressor=regressor,
                min_std=min_std,
                cache_dir=tmp,
                force=force,
                command=command,
                echo=echo,
                progress=progress,
                encoding=encoding,
            )
    # every network loaded (names and weights checked) before the run folder is made
    nets = {name: load_model(name, "imagenet", seed=seed) for name in models}
    out_dir = prepare_out(out, force=force, command=command)
    data = scaleset(n_per_class=n_per_class, seed=seed)
    echo(f"embedded scale set: {len(data)} images, classes {sorted(set(data.classes.tolist()))}")
    results, held_out, seconds = [], [], {}
    for name, net in nets.items():
        t0 = time.perf_counter()
        kw: dict[str, Any] = dict(
            regressor=regressor,
            reps=reps,
            seed=seed,
            min_std=min_std,
            cache_dir=cache_dir,
            progress=progress,
            command=command,
        )
        res = layer_profile(net, data, split="per-class", **kw)
        t1 = time.perf_counter()
        # the same features, read back from the cache: only the regressions are new
        loco = layer_profile(net, data, split="leave-one-class-out", **kw)
        t2 = time.perf_counter()
        seconds[name] = {"per_class": round(t1 - t0, 2), "leave_one_class_out": round(t2 - t1, 2)}
        echo(f"{name} per class: {_peaks(res)} ({t1 - t0:.0f} s)")
        echo(f"{name} leave-one-class-out: {_peaks(loco)} (+{t2 - t1:.0f} s)")
        results.append(res)
        held_out.append(loco)
    sections, enc = [], {}
    if encoding:
        t0 = time.perf_counter()
        section, enc = encoding_demo(
            results[0],
            data,
            out_dir / "encoding",
            reps=reps,
            seed=seed,
            cache_dir=cache_dir,
            command=command,
            model=nets[models[0]],
        )
        sections.append(section)
        echo(f"encoding at {results[0].best_layer}: ({time.perf_counter() - t0:.0f} s)")
    write_profile_run(
        out_dir,
        results,
        title="rcvlab demo: where is object scale encoded?",
        notes=DEMO_NOTES,
        sections=sections,
        held_out=held_out,
    )
    demo = DemoResult(
        profiles=tuple(results),
        loco_profiles=tuple(held_out),
        **enc,
        meta=provenance(
            command=command,
            seed=seed,
            data=data,
            models=list(models),
            n_per_class=n_per_class,
            reps=reps,
            regressor=regressor,
            min_std=min_std,
            seconds=seconds,
        ),
    )
    demo.to_json(out_dir / "demo.json")
    finish_run(out_dir)
    return demo


def _peaks(res: ProfileResult) -> str:
    """One line: the best layer's mean (median) R² and the random-weights peak."""
    best = res.score(res.best_layer)
    text = f"best layer {res.best_layer} R² {best.r2_mean:.3f} (median {best.r2_median:.3f})"
    if "random" in res.profiles:
        rnd = max(
            res.profiles["random"],
            key=lambda s: s.r2_mean if math.isfinite(s.r2_mean) else -math.inf,
        )
        text += f"; random-weights peak {rnd.r2_mean:.3f} at {rnd.layer}"
    return text


def encoding_demo(
    profile: ProfileResult,
    data,
    out: str | os.PathLike[str],
    *,
    reps: int = 10,
    seed: int = 0,
    alpha: float = 0.001,
    cache_dir: str | os.PathLike[str] | None = None,
    command: str = "",
    model: Any = None,
) -> tuple[str, dict[str, Result]]:
    """Sparsity, alignment and consistency at the profile's best layer.

    ``model`` is the profiled network if it is at hand (else it is loaded from the
    profile's model and weights).

    Returns the HTML section and ``{"sparsity": ..., "alignment": ..., "consistency": ...}``.

    Features are those of the profile (read from the cache when ``cache_dir`` is the one the
    profile used). The Lasso path (alpha 0 … 0.01, 21 values) is fitted on the first class
    in sorted order and tested on its held-out half and on every other class; consistency
    compares RCVs of every class (plain OLS and Lasso with ``alpha``). Writes the files of
    ``rcvlab sparsity`` and ``rcvlab consistency`` to ``out``.
    """
    from pathlib import Path

    from rcvlab.analyses.alignment import alignment_from_arrays
    from rcvlab.analyses.common import features_by_class
    from rcvlab.analyses.consistency import consistency_from_arrays
    from rcvlab.analyses.sparsity import DEFAULT_ALPHAS, sparsity_from_arrays
    from rcvlab.report.encoding import (
        encoding_section,
        write_consistency_run,
        write_sparsity_run,
    )

    layer = profile.best_layer
    if model is None:
        model = load_model(profile.model, profile.weights, seed=seed)
    # one extraction (read from the profile's cache entry) serves the three analyses
    by, info = features_by_class(model, data, layer, profile.measure, cache_dir=cache_dir)
    train = next(iter(by))
    others = [c for c in by if c != train]
    sp = sparsity_from_arrays(
        *by[train],
        alphas=DEFAULT_ALPHAS,
        reps=reps,
        seed=seed,
        test_sets={c: by[c] for c in others},
        meta={**info, "train_class": train, "test_classes": others},
        command=command,
    )
    al = alignment_from_arrays(
        *by[train],
        regressors=("ols", "lasso"),
        alpha=alpha,
        meta={**info, "train_class": train},
        command=command,
    )
    co = consistency_from_arrays(by, reps=reps, seed=seed, alpha=alpha, meta=info, command=command)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("sparsity", "consistency"):
        (out / name).mkdir(exist_ok=True)
    write_sparsity_run(out / "sparsity", sp)
    write_consistency_run(out / "consistency", co)
    html = encoding_section(
        sp,
        co,
        al,
        notes=(
            f"Scale ratio at {layer} of {profile.model}, the layer with the highest profile "
            f"R²; alignment fitted on all {len(by[train][1])} images of {train}. Files: "
            "encoding/sparsity/ and encoding/consistency/.",
        ),
    )
    return html, {"sparsity": sp, "alignment": al, "consistency": co}


__all__ = ["DemoResult", "encoding_demo", "run_demo"]
