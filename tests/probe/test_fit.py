"""RCV fits against independent references: statsmodels OLS(pinv), scikit-learn Ridge/Lasso."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.linear_model import Lasso, Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

import rcvlab.probe.fit as fitmod
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe.fit import RIDGE_ALPHAS, Design, fit_predict, fit_rcv

SHAPES = [(60, 8), (30, 29), (25, 80)]  # n > d, n ~ d, d > n


def _data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Unequal scales and offsets, so that standardisation matters.
    X = rng.standard_normal((n + 15, d)) * rng.uniform(0.1, 10, d) + rng.uniform(-5, 5, d)
    y = X[:, :3] @ np.array([1.0, -0.5, 0.2]) + rng.standard_normal(n + 15)
    return X[:n], y[:n], X[n:]


def _statsmodels_ols(X, y, Xt):
    sc = StandardScaler().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient design warnings for d > n
        res = sm.OLS(y, sm.add_constant(sc.transform(X))).fit(method="pinv")
    pred = res.predict(sm.add_constant(sc.transform(Xt), has_constant="add"))
    return res.params, pred


@pytest.fixture(params=[1e-8, np.inf], ids=["qr-path", "svd-path"])
def ols_path(request, monkeypatch):
    """Run OLS tests through both the triangular-solve route and the SVD route."""
    monkeypatch.setattr(fitmod, "_FAST_RCOND", request.param)


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_ols_equals_statsmodels_pinv(n, d, ols_path):
    X, y, Xt = _data(n, d)
    params, pred = _statsmodels_ols(X, y, Xt)
    rcv = fit_rcv(X, y, "ols")
    np.testing.assert_allclose(rcv.intercept, params[0], atol=1e-6)
    np.testing.assert_allclose(rcv.coef, params[1:], atol=1e-6)
    np.testing.assert_allclose(rcv.predict(Xt), pred, atol=1e-6)
    assert rcv.alpha is None and rcv.regressor == "ols"


def test_ols_min_norm_rank_deficient(ols_path):
    """Duplicated (scaled) columns: the minimum-norm solution splits weight between them."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 6))
    X = np.hstack([base, 3 * base[:, :2] + 1])  # exact collinearity
    y = base[:, 0] + 0.1 * rng.standard_normal(40)
    params, pred = _statsmodels_ols(X, y, X[:5])
    rcv = fit_rcv(X, y)
    np.testing.assert_allclose(rcv.coef, params[1:], atol=1e-6)
    np.testing.assert_allclose(rcv.predict(X[:5]), pred, atol=1e-6)
    # Standardised duplicates get equal weights under the minimum norm.
    assert rcv.coef[0] == pytest.approx(rcv.coef[6], abs=1e-9)


@pytest.mark.parametrize(("n", "d"), [(40, 6), (20, 40)])
def test_ols_keeps_small_but_real_singular_values(n, d, ols_path):
    """A nearly collinear pair (singular value ~1e-5 relative) is kept, as pinv keeps it."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n + 10, d))
    X[:, 1] = X[:, 0] + 1e-5 * rng.standard_normal(n + 10)
    y = X[:, 0] - X[:, 1] * 0.5 + 0.1 * rng.standard_normal(n + 10)
    _, pred = _statsmodels_ols(X[:n], y[:n], X[n:])
    rcv = fit_rcv(X[:n], y[:n])
    np.testing.assert_allclose(rcv.predict(X[n:]), pred, atol=1e-6)


def test_ols_float32_input_is_fitted_in_float64():
    X, y, _ = _data(60, 8)
    a = fit_rcv(X.astype(np.float32), y)
    b = fit_rcv(X.astype(np.float32).astype(np.float64), y)
    assert a.coef.dtype == np.float64
    np.testing.assert_array_equal(a.coef, b.coef)


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_ridge_equals_sklearn(n, d):
    X, y, Xt = _data(n, d)
    sc = StandardScaler().fit(X)
    ref = Ridge(alpha=2.5).fit(sc.transform(X), y)
    rcv = fit_rcv(X, y, "ridge", alpha=2.5)
    np.testing.assert_allclose(rcv.coef, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(rcv.intercept, ref.intercept_, atol=1e-6)
    np.testing.assert_allclose(rcv.predict(Xt), ref.predict(sc.transform(Xt)), atol=1e-6)


@pytest.mark.parametrize(("n", "d"), [*SHAPES, (40, 300)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ridge_loo_alpha_equals_sklearn_ridgecv(n, d, seed):
    X, y, Xt = _data(n, d, seed)
    sc = StandardScaler().fit(X)
    ref = RidgeCV(alphas=RIDGE_ALPHAS, fit_intercept=True).fit(sc.transform(X), y)
    rcv = fit_rcv(X, y, "ridge")
    assert rcv.alpha == ref.alpha_
    np.testing.assert_allclose(rcv.predict(Xt), ref.predict(sc.transform(Xt)), atol=1e-6)


def test_ridge_loo_picks_different_alphas_for_different_targets():
    """Guard against a LOO that ignores y: signal wants a small alpha, noise a large one."""
    X, y, _ = _data(60, 8)
    noise = np.random.default_rng(9).standard_normal(60)
    chosen = Design(X).ridge_loo_alpha(np.column_stack([y, noise]))
    assert chosen[0] < chosen[1]


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_lasso_equals_sklearn(n, d):
    X, y, Xt = _data(n, d)
    sc = StandardScaler().fit(X)
    ref = Lasso(alpha=0.05, max_iter=10_000, tol=1e-4).fit(sc.transform(X), y)
    rcv = fit_rcv(X, y, "lasso", alpha=0.05)
    np.testing.assert_allclose(rcv.coef, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(rcv.predict(Xt), ref.predict(sc.transform(Xt)), atol=1e-6)
    assert 0 < np.count_nonzero(rcv.coef) < d  # sparse, and not empty


def test_fit_predict_shares_design_across_targets():
    X, y, Xt = _data(30, 50)
    y2 = y[::-1].copy()
    for reg, alpha in [("ols", None), ("ridge", 1.0), ("ridge", None), ("lasso", 0.05)]:
        pred, n_const, chosen = fit_predict(X, np.column_stack([y, y2]), Xt, reg, alpha)
        for j, target in enumerate([y, y2]):
            np.testing.assert_allclose(pred[:, j], fit_rcv(X, target, reg, alpha).predict(Xt))
        assert n_const == 0
        assert (chosen is not None) == (reg == "ridge" and alpha is None)


def test_direction_is_unit_and_predict_standardises():
    X, y, Xt = _data(60, 8)
    rcv = fit_rcv(X, y)
    assert np.linalg.norm(rcv.direction) == pytest.approx(1.0)
    np.testing.assert_allclose(rcv.direction, rcv.coef / np.linalg.norm(rcv.coef))
    Z = (Xt - X.mean(0)) / X.std(0)
    np.testing.assert_allclose(rcv.predict(Xt), Z @ rcv.coef + rcv.intercept, atol=1e-10)
    assert rcv.mean_.shape == rcv.scale_.shape == rcv.keep.shape == (8,)
    with pytest.raises(ValueError):
        rcv.coef[0] = 1.0  # read-only: an RCV is a value


def test_tiny_scale_column_is_kept():
    """A column varying by ~1e-9 that carries y is signal, not a constant (METHOD.md §8)."""
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, 50)
    X = np.column_stack([1e-9 * y + 1e-12 * rng.standard_normal(50), rng.standard_normal(50)])
    rcv = fit_rcv(X, y)
    assert rcv.n_constant == 0
    assert rcv.keep.all()
    r = np.corrcoef(rcv.predict(X), y)[0, 1]
    assert r > 0.999


def test_constant_columns_are_dropped():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, 40)
    X = np.column_stack(
        [
            y + 0.01 * rng.standard_normal(40),
            np.full(40, 3.7),  # exactly constant
            np.full(40, 1e4) + 1e-9 * rng.standard_normal(40),  # constant up to rounding
            np.zeros(40),
        ]
    )
    rcv = fit_rcv(X, y)
    assert rcv.keep.tolist() == [True, False, False, False]
    assert rcv.n_constant == 3
    assert rcv.coef[1:].tolist() == [0.0, 0.0, 0.0]
    assert np.isfinite(rcv.predict(X)).all()
    # All columns constant: the fit predicts the training mean.
    flat = fit_rcv(np.ones((10, 3)), np.arange(10.0))
    assert flat.n_constant == 3
    np.testing.assert_allclose(flat.predict(np.zeros((2, 3))), 4.5)


def test_large_offsets(ols_path):
    """Mean 1e4 x spread (still above the relative threshold): same fit as statsmodels."""
    X, y, Xt = _data(25, 80)
    _, pred = _statsmodels_ols(X + 1e4, y, Xt + 1e4)
    rcv = fit_rcv(X + 1e4, y)
    assert rcv.n_constant == 0
    np.testing.assert_allclose(rcv.predict(Xt + 1e4), pred, atol=1e-6)


def test_relative_threshold_drops_float32_level_variation():
    """std <= 1e-6 * max|x|: variation at float32 rounding level is treated as constant."""
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 1, 30)
    X = np.column_stack([y, 1e7 + rng.standard_normal(30), 1e7 + 1e3 * rng.standard_normal(30)])
    assert fit_rcv(X, y).keep.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"regressor": "olss"}, UnknownNameError, "Did you mean 'ols'"),
        ({"regressor": "lasso"}, RcvlabError, "needs alpha"),
        ({"regressor": "lasso", "alpha": 0.0}, RcvlabError, "use regressor='ols'"),
        ({"regressor": "ridge", "alpha": 0.0}, RcvlabError, "use regressor='ols'"),
        ({"regressor": "ridge", "alpha": -1.0}, RcvlabError, ">= 0"),
        ({"regressor": "ols", "alpha": 0.5}, RcvlabError, "takes no alpha"),
    ],
)
def test_bad_options(kwargs, error, text):
    X, y, _ = _data(30, 4)
    with pytest.raises(error, match=text):
        fit_rcv(X, y, **kwargs)


def test_unknown_regressor_is_a_keyerror_with_clean_message():
    with pytest.raises(KeyError) as e:
        fit_rcv(np.ones((4, 2)), np.arange(4.0), "ridg")
    assert str(e.value).startswith("unknown regressor 'ridg'")


@pytest.mark.parametrize("where", ["X", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_a_data_error(where, bad):
    X, y, _ = _data(30, 4)
    if where == "X":
        X[3, 1] = bad
    else:
        y[3] = bad
    with pytest.raises(DataError, match="NaN or infinite"):
        fit_rcv(X, y)


def test_shape_errors():
    with pytest.raises(DataError, match="2-D"):
        fit_rcv(np.ones(5), np.ones(5))
    with pytest.raises(DataError, match="shape"):
        fit_rcv(np.ones((5, 2)), np.ones(4))
    rcv = fit_rcv(*_data(30, 4)[:2])
    with pytest.raises(DataError, match="columns"):
        rcv.predict(np.ones((2, 3)))
