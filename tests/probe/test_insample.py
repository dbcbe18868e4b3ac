"""Paper 004's in-sample R² against statsmodels, the code the paper ran."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rcvlab.errors import DataError
from rcvlab.probe.insample import insample_fit, insample_r2

sm = pytest.importorskip("statsmodels.api")


def _statsmodels_r2(X: np.ndarray, y: np.ndarray) -> float:
    # exactly the notebook's linear_regression(inputs, y); rank-deficient designs warn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sm.OLS(y, sm.add_constant(X)).fit().rsquared)


@pytest.mark.parametrize("n, d, noise", [(60, 5, 0.5), (200, 40, 2.0), (50, 30, 0.1)])
def test_equals_statsmodels_when_d_below_n(n, d, noise):
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d) + rng.uniform(-50, 50, d)
    y = X[:, :3] @ [1.0, -2.0, 0.5] + noise * rng.standard_normal(n)
    fit = insample_fit(X, y)
    assert not fit.saturated and fit.rank == d and (fit.n_images, fit.dim) == (n, d)
    assert fit.r2 == pytest.approx(_statsmodels_r2(X, y), abs=1e-8)
    assert insample_r2(X, y) == fit.r2
    assert 0 < fit.r2 < 1


def test_collinear_columns_are_the_pinv_solution():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((80, 6))
    X = np.column_stack([base, base[:, :3] @ [1.0, 2.0, -1.0], 3.0 * base[:, 0]])
    y = rng.standard_normal(80)
    fit = insample_fit(X, y)
    assert fit.rank == 6 and not fit.saturated
    assert fit.r2 == pytest.approx(_statsmodels_r2(X, y), abs=1e-8)


@pytest.mark.parametrize("n, d", [(30, 29), (30, 30), (20, 100)])
def test_saturates_at_one_when_features_span_the_images(n, d):
    rng = np.random.default_rng(d)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)  # pure noise: a held-out R² would be ~0 or below
    fit = insample_fit(X, y)
    assert fit.saturated and fit.r2 == 1.0
    assert _statsmodels_r2(X, y) == pytest.approx(1.0, abs=1e-8)


def test_just_below_saturation_is_not_marked():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 27))  # rank 27, intercept 28 < 30
    y = rng.standard_normal(30)
    fit = insample_fit(X, y)
    assert not fit.saturated and fit.r2 < 1
    assert fit.r2 == pytest.approx(_statsmodels_r2(X, y), abs=1e-8)


def test_bad_input_is_one_line():
    X = np.ones((10, 2))
    with pytest.raises(DataError, match="constant"):
        insample_fit(np.random.default_rng(0).standard_normal((10, 2)), np.ones(10))
    with pytest.raises(DataError, match=r"shape \(10,\)"):
        insample_fit(X, np.arange(9.0))
    with pytest.raises(DataError, match="NaN"):
        insample_fit(X, np.r_[np.arange(9.0), np.nan])
