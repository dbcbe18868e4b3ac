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


# -- the min_std standardisation guard ------------------------------------------------------


def _near_constant(n: int = 40, d: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features that all carry y, except column 0 (barely varies, one outlier at row 7) and
    column 1 (exactly constant: dropped, so it must not enter the median)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 1, n)
    X = np.outer(y, rng.standard_normal(d)) + 0.05 * rng.standard_normal((n, d))
    X[:, 0] = 1e-3 * rng.standard_normal(n)
    X[7, 0] = 1.0
    X[:, 1] = 2.0
    return X, y


def _clipped_scaler(X: np.ndarray, min_std: float) -> StandardScaler:
    """scikit-learn's StandardScaler with each scale clipped below at min_std x the median
    std of the non-constant columns (computed here by hand, not by rcvlab)."""
    sc = StandardScaler().fit(X)
    std = np.sqrt(sc.var_)
    varying = std > 0
    floor = min_std * np.median(std[varying])
    sc.scale_ = np.where(varying, np.maximum(std, floor), 1.0)
    return sc


@pytest.mark.parametrize("min_std", [0.01, 0.1, 0.5])
def test_guard_standardisation_equals_clipped_standard_scaler(min_std, ols_path):
    X, y = _near_constant()
    train = np.setdiff1d(np.arange(40), [7, 8, 9])  # the outlier row is a test row
    sc = _clipped_scaler(X[train], min_std)
    mean, scale, keep, n_floored = fitmod.standardisation(X[train], min_std)
    assert keep.tolist() == [True, False] + [True] * 58
    np.testing.assert_allclose(scale[keep], sc.scale_[keep], rtol=1e-12)
    np.testing.assert_allclose(mean, sc.mean_, rtol=1e-12, atol=1e-15)
    assert n_floored == int(np.sum(np.sqrt(sc.var_)[keep] < sc.scale_[keep]))
    assert n_floored >= 1  # column 0 at least
    # The OLS fit on the clipped standardisation: statsmodels' pinv on the same design.
    Z = sc.transform(X[train])[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.OLS(y[train], sm.add_constant(Z)).fit(method="pinv")
    Zt = sc.transform(X[[7, 8, 9]])[:, keep]
    rcv = fit_rcv(X[train], y[train], min_std=min_std)
    np.testing.assert_allclose(rcv.scale_, np.where(keep, sc.scale_, 1.0), rtol=1e-12)
    np.testing.assert_allclose(
        rcv.predict(X[[7, 8, 9]]), ref.predict(sm.add_constant(Zt, has_constant="add")), atol=1e-6
    )
    assert rcv.n_floored == n_floored


def test_guard_with_ridge_and_lasso_equals_sklearn_on_clipped_scale():
    X, y = _near_constant(60, 30, seed=1)
    tr, te = slice(10, 60), slice(0, 10)  # the outlier row 7 is a test row
    sc = _clipped_scaler(X[tr], 0.2)
    keep = np.sqrt(sc.var_) > 0
    Z, Zt = sc.transform(X[tr])[:, keep], sc.transform(X[te])[:, keep]
    ridge = Ridge(alpha=2.0).fit(Z, y[tr])
    lasso = Lasso(alpha=0.01, max_iter=10_000, tol=1e-4).fit(Z, y[tr])
    for reg, alpha, ref in [("ridge", 2.0, ridge), ("lasso", 0.01, lasso)]:
        rcv = fit_rcv(X[tr], y[tr], reg, alpha, min_std=0.2)
        np.testing.assert_allclose(rcv.coef[keep], ref.coef_, atol=1e-6)
        np.testing.assert_allclose(rcv.predict(X[te]), ref.predict(Zt), atol=1e-6)
        pred, n_const, n_floor, _ = fitmod.fit_predictions(
            X[tr], y[tr, None], X[te], reg, alpha, 0.2
        )
        np.testing.assert_allclose(pred[:, 0], ref.predict(Zt), atol=1e-6)
        assert n_const == 1 and n_floor == rcv.n_floored >= 1


def test_guard_keeps_an_outlier_split_sane():
    """Column 0 barely varies on the training rows; the test row 7 has it at 1000 training
    stds. The min-norm fit puts weight on it, and without the guard that one image costs
    the split its R²; floored at 0.1 x the median std it does not."""
    X, y = _near_constant()
    train, test = np.setdiff1d(np.arange(40), np.arange(7, 19)), np.arange(7, 19)
    plain = fit_rcv(X[train], y[train])
    guarded = fit_rcv(X[train], y[train], min_std=0.1)
    from sklearn.metrics import r2_score

    assert r2_score(y[test], plain.predict(X[test])) < -1
    assert r2_score(y[test], guarded.predict(X[test])) > 0.9
    assert plain.n_floored == 0 and guarded.n_floored >= 1
    # Without an outlier in the test rows both are equally good.
    other = np.arange(20, 32)
    rest = np.setdiff1d(np.arange(40), other)
    for m in (None, 0.1):
        assert r2_score(y[other], fit_rcv(X[rest], y[rest], min_std=m).predict(X[other])) > 0.99


@pytest.mark.parametrize("off", [None, 0, 0.0])
def test_guard_off_is_the_plain_standardisation(off):
    X, y = _near_constant()
    a, b = fit_rcv(X, y), fit_rcv(X, y, min_std=off)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    assert b.n_floored == 0


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x", True, float("nan"), float("inf")])
def test_guard_bad_values(bad):
    X, y = _near_constant()
    with pytest.raises(RcvlabError, match="min_std must be a number in"):
        fit_rcv(X, y, min_std=bad)
    with pytest.raises(RcvlabError, match="min_std"):
        Design(X, min_std=bad)


def test_guard_does_not_change_a_full_rank_ols_fit(ols_path):
    """Least squares with n > k is invariant to column scaling: the guard cannot act there."""
    X, y = _near_constant(80, 10)
    train = np.setdiff1d(np.arange(80), [7])
    a = fit_rcv(X[train], y[train])
    b = fit_rcv(X[train], y[train], min_std=0.5)
    assert b.n_floored >= 1
    np.testing.assert_allclose(b.predict(X[[7]]), a.predict(X[[7]]), rtol=1e-6)
