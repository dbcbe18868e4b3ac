"""A small real ProfileResult: two planted classes, three layers, both baselines, the guard on.

One repetition per class: the standard deviation of a layer's R² is NaN (and so is the CI of
a class), which the JSON round trip must keep.
"""

from __future__ import annotations

import numpy as np

from rcvlab.probe import ProfileResult, probe_layers


def example() -> ProfileResult:
    rng = np.random.default_rng(0)
    n = 40
    y = rng.uniform(0, 1, n)
    concept = np.outer(y, [2.0, -1.0, 0.5]) + 0.05 * rng.standard_normal((n, 3))
    near_constant = np.column_stack([concept, 1e-4 * rng.standard_normal(n)])  # floored
    feats = {
        "noise": rng.standard_normal((n, 5)),
        "concept": near_constant,
        "wide": rng.standard_normal((n, 50)),  # d > n_train: the min-norm regime
    }
    random = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    res = probe_layers(
        feats,
        y,
        reps=1,
        seed=0,
        classes=np.repeat(["bird", "car"], n // 2),
        random_features=random,
        min_std=0.05,
        min_images=10,
    )
    return res.with_meta(
        model="toy",
        weights="imagenet",
        measure="level",
        command="python tests/examples/ex_profile.py",
    )
