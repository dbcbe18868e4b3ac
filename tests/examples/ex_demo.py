"""A DemoResult assembled from the other examples: per-class and leave-one-class-out profiles
of two networks, and the encoding results."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np

from rcvlab.pipelines import DemoResult
from rcvlab.probe import probe_layers
from rcvlab.result import provenance

sibling = runpy.run_path(str(Path(__file__).with_name("_load.py")))["sibling"]


def _loco():
    rng = np.random.default_rng(1)
    n = 36
    y = rng.uniform(0, 1, n)
    feats = {"noise": rng.standard_normal((n, 4)), "concept": np.outer(y, [1.0, -2.0])}
    feats["concept"] += 0.05 * rng.standard_normal((n, 2))
    res = probe_layers(
        feats,
        y,
        classes=np.repeat(["bird", "car", "kite"], n // 3),
        split="leave-one-class-out",
        random_features={k: rng.standard_normal(v.shape) for k, v in feats.items()},
    )
    return res.with_meta(model="toy", weights="imagenet", measure="level")


def example() -> DemoResult:
    prof = sibling("profile")
    loco = _loco()
    return DemoResult(
        profiles=(prof, prof.with_meta(model="toy2")),
        loco_profiles=(loco, loco.with_meta(model="toy2")),
        sparsity=sibling("sparsity"),
        alignment=sibling("alignment"),
        consistency=None,
        meta=provenance(command="rcvlab demo", seed=0, models=["toy", "toy2"]),
    )
