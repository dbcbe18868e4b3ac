"""A small real WeightsComparison: two networks, two measures, three layers, from arrays.

One split: the standard deviation and the standard error are NaN, which the JSON round trip
must keep; the ``wide`` layer has more features than images, so its in-sample R² saturates.
"""

from __future__ import annotations

import numpy as np

from rcvlab.analyses.weights import WeightsComparison, weights_comparison_from_features


def example() -> WeightsComparison:
    rng = np.random.default_rng(0)
    n = 30
    contrast = rng.uniform(0, 1, n)
    asm = rng.uniform(0, 1, n)
    features = {}
    for label, noise in (("random (Xavier)", 1.0), ("pretrained", 0.1)):
        features[label] = {
            "early": np.column_stack([contrast, asm]) + noise * rng.standard_normal((n, 2)),
            "mid": np.outer(contrast, [1.0, -2.0, 0.5]) + noise * rng.standard_normal((n, 3)),
            "wide": rng.standard_normal((n, 40)),
        }
    return weights_comparison_from_features(
        features,
        {"glcm_contrast": contrast, "glcm_asm": asm},
        weights=["random-xavier", "imagenet"],
        model="toy",
        reps=1,
        seed=0,
        command="python tests/examples/ex_weights_comparison.py",
    )
