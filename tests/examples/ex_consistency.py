"""A small real ConsistencyResult: two planted classes; the Lasso keeps nothing (NaN angles)."""

from __future__ import annotations

import numpy as np

from rcvlab.analyses.consistency import ConsistencyResult, consistency_from_arrays


def example() -> ConsistencyResult:
    rng = np.random.default_rng(0)
    by_class = {}
    for c in ("bird", "car"):
        Z = rng.standard_normal((24, 6))
        by_class[c] = (Z * 2.0 + 1.0, Z[:, 0] + 0.2 * rng.standard_normal(24))
    return consistency_from_arrays(
        by_class, reps=2, seed=0, alpha=100.0, meta={"layer": "toy"}, command="example"
    )
