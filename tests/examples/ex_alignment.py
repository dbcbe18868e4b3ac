"""A small real AlignmentResult: plain and Lasso RCVs of 40 planted rows (the Lasso is zero)."""

from __future__ import annotations

import numpy as np

from rcvlab.analyses.alignment import AlignmentResult, alignment_from_arrays


def example() -> AlignmentResult:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((40, 8))
    X = Z * 3.0 + 1.0
    y = Z[:, :2] @ np.array([1.0, 0.5]) + 0.1 * rng.standard_normal(40)
    # alpha 10 keeps no coefficient: the Lasso curve is NaN; no test rows: test R² is NaN
    return alignment_from_arrays(
        X,
        y,
        regressors=("ols", "lasso"),
        alpha=10.0,
        max_dims=12,
        seed=0,
        meta={"layer": "toy"},
        command="example",
    )
