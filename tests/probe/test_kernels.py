"""The ridge kernels (one eigendecomposition per split) against scikit-learn's Ridge/RidgeCV,
the batched torch kernel against the numpy one (on the CPU here, on a GPU when present), and
the exact Lasso homotopy against scikit-learn's lasso_path/Lasso."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Lasso, Ridge, RidgeCV, lasso_path
from sklearn.preprocessing import StandardScaler

import rcvlab.probe.kernels as kernels
import rcvlab.probe.profile as profile_module
from rcvlab.probe.fit import RIDGE_ALPHAS, fit_predictions, fit_rcv, standardisation
from rcvlab.probe.kernels import (
    RidgeEigen,
    choose_alpha,
    lasso_duality_gaps,
    lasso_homotopy,
    lasso_path_certified,
    ridge_split_predictions_torch,
    torch_device_available,
)
from rcvlab.probe.splits import repeated_splits

# wide (d > n), square-ish on both sides of n, tall (n > d)
SHAPES = [(40, 300), (60, 59), (60, 61), (150, 12)]


def _planted(n: int, d: int, seed: int = 0, constant: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A measure planted in a few latent directions shared by correlated columns; unequal
    offsets and scales; ``constant`` columns that never vary."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 4))
    X = latent @ rng.standard_normal((4, d)) + 0.7 * rng.standard_normal((n, d))
    X = X * rng.uniform(0.1, 10, d) + rng.uniform(-50, 50, d)
    if constant:
        X[:, rng.choice(d, constant, replace=False)] = 7.25
    y = latent @ np.array([1.0, -0.5, 0.3, 0.0]) + 0.5 * rng.standard_normal(n)
    return X, y


def _clipped(X: np.ndarray, min_std: float | None) -> tuple[StandardScaler, np.ndarray]:
    """StandardScaler, its scale clipped at min_std x the median std of varying columns."""
    sc = StandardScaler().fit(X)
    std = np.sqrt(sc.var_)
    keep = std > 0
    if min_std:
        sc.scale_ = np.where(keep, np.maximum(std, min_std * np.median(std[keep])), 1.0)
    return sc, keep


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize(("n", "d"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("min_std", [None, 0.3])
def test_loo_alpha_and_predictions_equal_ridgecv(n, d, seed, min_std):
    X, y = _planted(n + 20, d, seed, constant=3)
    Xtr, ytr, Xte = X[:n], y[:n], X[n:]
    sc, keep = _clipped(Xtr, min_std)
    Z, Zt = sc.transform(Xtr)[:, keep], sc.transform(Xte)[:, keep]
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(Z, ytr)
    rcv = fit_rcv(Xtr, ytr, "ridge", min_std=min_std)
    assert rcv.alpha == ref.alpha_
    assert rcv.n_constant == 3
    assert _rel(rcv.predict(Xte), ref.predict(Zt)) < 1e-8
    assert _rel(rcv.coef[keep], ref.coef_) < 1e-8
    np.testing.assert_array_equal(rcv.coef[~keep], 0.0)


@pytest.mark.parametrize(("n", "d"), SHAPES)
@pytest.mark.parametrize("alpha", [0.01, 3.0, 1e5])
def test_fixed_alpha_coefficients_equal_ridge(n, d, alpha):
    X, y = _planted(n + 10, d, seed=2, constant=2)
    sc, keep = _clipped(X[:n], None)
    ref = Ridge(alpha=alpha).fit(sc.transform(X[:n])[:, keep], y[:n])
    rcv = fit_rcv(X[:n], y[:n], "ridge", alpha=alpha)
    assert _rel(rcv.coef[keep], ref.coef_) < 1e-8
    assert rcv.intercept == pytest.approx(ref.intercept_, rel=1e-10)
    assert _rel(rcv.predict(X[n:]), ref.predict(sc.transform(X[n:])[:, keep])) < 1e-8


def test_every_target_gets_its_own_alpha():
    """The measure and a permuted copy share one decomposition, each choosing as RidgeCV."""
    X, y = _planted(80, 200, seed=3)
    Y = np.column_stack([y, np.random.default_rng(0).permutation(y)])
    out = fit_predictions(X[:60], Y[:60], X[60:], "ridge", None)
    sc = StandardScaler().fit(X[:60])
    for j in range(2):
        ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(sc.transform(X[:60]), Y[:60, j])
        assert out.alphas[j] == ref.alpha_
        assert _rel(out.predictions[:, j], ref.predict(sc.transform(X[60:]))) < 1e-8
    assert out.alphas[0] < out.alphas[1]  # signal wants less penalty than noise


def test_large_offsets_keep_full_precision():
    """Columns whose mean is 1e5 times their spread: the second centring pass and the
    deflated Gram leave no spurious constant direction."""
    rng = np.random.default_rng(5)
    Zs = rng.standard_normal((50, 120))
    X = Zs * rng.uniform(0.5, 2.0, 120) + 1e5
    y = Zs[:, :3].sum(axis=1) + 0.1 * rng.standard_normal(50)
    sc = StandardScaler().fit(X[:40])
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(sc.transform(X[:40]), y[:40])
    rcv = fit_rcv(X[:40], y[:40], "ridge")
    assert rcv.alpha == ref.alpha_
    assert _rel(rcv.predict(X[40:]), ref.predict(sc.transform(X[40:]))) < 1e-8


def test_rank_deficient_tall_design_is_harmless():
    """Duplicated columns give zero eigenvalues of Z^T Z: no division by them."""
    rng = np.random.default_rng(6)
    base = rng.standard_normal((90, 8))
    X = np.hstack([base, 2 * base[:, :4] + 1])
    y = base[:, 0] + 0.2 * rng.standard_normal(90)
    sc = StandardScaler().fit(X)
    for alpha in (None, 0.5):
        rcv = fit_rcv(X, y, "ridge", alpha=alpha)
        ref = (RidgeCV(alphas=RIDGE_ALPHAS) if alpha is None else Ridge(alpha=alpha)).fit(
            sc.transform(X), y
        )
        assert _rel(rcv.coef, ref.coef_) < 1e-8


def test_loo_errors_are_the_brute_force_leave_one_out():
    """The closed-form leave-one-out error equals refitting without each row (both forms)."""
    rng = np.random.default_rng(7)
    for n, k in [(12, 30), (30, 5)]:
        Z = rng.standard_normal((n, k))
        Z -= Z.mean(axis=0)
        Y = rng.standard_normal((n, 2))
        Yc = Y - Y.mean(axis=0)
        alphas = np.array([0.1, 2.0])
        err = RidgeEigen(Z).loo_errors(Yc, alphas)
        brute = np.zeros((2, 2))
        for i in range(n):
            rest = np.delete(np.arange(n), i)
            for p, a in enumerate(alphas):
                m = Ridge(alpha=a).fit(Z[rest], Y[rest])
                brute[p] += (Y[i] - m.predict(Z[i : i + 1])[0]) ** 2 / n
        np.testing.assert_allclose(err, brute, rtol=1e-9)


def test_choose_alpha_takes_the_first_minimum_and_never_nan():
    a = np.array([1.0, 2.0, 3.0])
    err = np.array([[np.nan, 2.0], [1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(choose_alpha(err, a), [2.0, 2.0])


def _reference(X, splits, Ys, alphas, loo, min_std):
    """The numpy kernel split by split (fit_predictions)."""
    preds, chosen, const, floored = [], [], [], []
    for (tr, te), Y in zip(splits, Ys, strict=True):
        out = fit_predictions(X[tr], Y, X[te], "ridge", None if loo else alphas[0], min_std)
        preds.append(out.predictions)
        chosen.append(out.alphas if loo else np.full(Y.shape[1], alphas[0]))
        const.append(out.n_constant)
        floored.append(out.n_floored)
    return np.stack(preds), np.stack(chosen), np.array(const), np.array(floored)


def _check_torch_kernel(device: str, rtol: float) -> None:
    for n, d, min_std, loo in [
        (70, 300, None, True),
        (70, 300, 0.3, True),
        (120, 20, None, True),
        (120, 20, 0.2, False),
        (70, 300, None, False),
    ]:
        X, y = _planted(n, d, seed=d, constant=2)
        X[:30, 5] = 1.0  # constant on some training splits only
        splits = repeated_splits(n, 6, 0.3, 1)
        rng = np.random.default_rng(2)
        Ys = [np.column_stack([y[tr], rng.permutation(y)[tr]]) for tr, _ in splits]
        alphas = RIDGE_ALPHAS if loo else np.array([4.0])
        out = ridge_split_predictions_torch(
            X,
            [tr for tr, _ in splits],
            [te for _, te in splits],
            Ys,
            alphas,
            loo=loo,
            min_std=min_std,
            device=device,
            max_bytes=200_000,  # several chunks
        )
        preds, chosen, const, floored = _reference(X, splits, Ys, alphas, loo, min_std)
        assert _rel(out.predictions, preds) < rtol
        np.testing.assert_array_equal(out.alphas, chosen)
        np.testing.assert_array_equal(out.n_constant, const)
        np.testing.assert_array_equal(out.n_floored, floored)


def test_torch_kernel_equals_numpy_kernel_on_cpu():
    _check_torch_kernel("cpu", 1e-10)


@pytest.mark.gpu
def test_torch_kernel_on_gpu_equals_cpu_kernel():
    assert torch_device_available("cuda")
    _check_torch_kernel("cuda", 1e-8)


def test_probe_one_on_a_device_equals_the_cpu_run():
    """The layer function's batched path (device=...) gives the CPU path's R² and alphas."""
    X, y = _planted(90, 150, seed=4, constant=1)
    groups = profile_module._make_groups(
        y, [("all", np.arange(90))], reps=4, test_fraction=0.3, seed=0, shuffled=True
    )
    for alpha in (None, 2.0):
        cpu = profile_module._probe_one(X, groups, "ridge", alpha, 0.1, with_shuffled=True)
        dev = profile_module._probe_one(
            X, groups, "ridge", alpha, 0.1, with_shuffled=True, device="cpu"
        )
        np.testing.assert_allclose(dev.r2s[0], cpu.r2s[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(dev.alphas[0], cpu.alphas[0])
        assert (dev.n_constant, dev.n_floored) == (cpu.n_constant, cpu.n_floored)


# -- the Lasso path --------------------------------------------------------------------------


def _lasso_problem(n, d, seed=0, min_std=None, duplicate=False):
    """Standardised training columns (constant ones dropped, min_std floor) and centred y."""
    X, y = _planted(n, d, seed, constant=2)
    if duplicate:
        X[:, 1] = 3.0 * X[:, 0] + 2.0  # the same column once standardised
    mean, scale, keep, _ = standardisation(X, min_std)
    Z = (X[:, keep] - mean[keep]) / scale[keep]
    return Z - Z.mean(axis=0), y - y.mean()


def _sklearn_path(Z, yc, alphas, tol=1e-13):
    order = np.argsort(-alphas)
    out = np.empty((Z.shape[1], alphas.size))
    _, coefs, _ = lasso_path(
        np.asfortranarray(Z), yc, alphas=alphas[order], tol=tol, max_iter=1_000_000
    )
    out[:, order] = coefs
    return out


@pytest.mark.parametrize(
    ("n", "d", "min_std"), [(50, 200, None), (50, 200, 0.3), (200, 30, None), (60, 61, 0.2)]
)
def test_homotopy_is_the_exact_lasso_solution(n, d, min_std):
    Z, yc = _lasso_problem(n, d, seed=n + d, min_std=min_std)
    alpha_max = np.abs(Z.T @ yc).max() / n
    # unsorted, one above alpha_max (all zero), down to where most columns are active
    alphas = alpha_max * np.array([0.3, 1.5, 0.05, 0.8, 0.01, 0.15])
    C = lasso_homotopy(Z, yc, alphas)
    ref = _sklearn_path(Z, yc, alphas)
    assert _rel(C, ref) < 1e-7  # coordinate descent at tol 1e-13 vs exact
    np.testing.assert_array_equal(C[:, 1], 0.0)
    np.testing.assert_array_equal(C != 0, np.abs(ref) > 1e-9)  # the same support
    nnz = np.count_nonzero(C, axis=0)[[4, 2, 5, 0, 3]]  # alphas increasing
    assert nnz[0] > 10 and nnz[-1] >= 1 and nnz[0] > nnz[-1]
    # and scikit-learn's own Lasso on the same centred problem
    m = Lasso(alpha=alphas[0], fit_intercept=False, tol=1e-13, max_iter=1_000_000).fit(Z, yc)
    assert _rel(C[:, 0], m.coef_) < 1e-7


def test_duality_gaps_are_scikit_learns():
    Z, yc = _lasso_problem(60, 150, seed=3)
    alphas = np.array([0.2, 0.05, 0.01])
    _, coefs, gaps = lasso_path(np.asfortranarray(Z), yc, alphas=alphas, tol=1e-3)
    # lasso_path reports the gap divided by n_samples
    np.testing.assert_allclose(lasso_duality_gaps(Z, yc, coefs, alphas), gaps * 60, rtol=1e-6)


def test_certified_path_meets_the_tolerance_and_falls_back_when_degenerate():
    Z, yc = _lasso_problem(60, 150, seed=4, duplicate=True)
    alphas = np.array([0.3, 0.05, 0.01])
    with pytest.raises(ArithmeticError):
        lasso_homotopy(Z, yc, alphas)  # two identical columns: the path is not unique
    C = lasso_path_certified(Z, yc, alphas, tol=1e-8, max_iter=100_000)
    assert (lasso_duality_gaps(Z, yc, C, alphas) <= 1e-8 * yc @ yc).all()
    ref = _sklearn_path(Z, yc, alphas, tol=1e-8)

    # the objective is what is unique: the same value as scikit-learn's solution
    def objective(W):
        R = yc[:, None] - Z @ W
        return (R * R).sum(axis=0) / (2 * 60) + alphas * np.abs(W).sum(axis=0)

    np.testing.assert_allclose(objective(C), objective(ref), rtol=1e-7)


def test_a_solution_failing_its_certificate_is_refined(monkeypatch):
    """If the homotopy's answer does not meet the duality-gap criterion, coordinate descent
    finishes it (warm-started): the result meets the criterion all the same."""
    Z, yc = _lasso_problem(60, 150, seed=5)
    alphas = np.array([0.2, 0.02])
    exact = lasso_homotopy(Z, yc, alphas)
    monkeypatch.setattr(kernels, "lasso_homotopy", lambda *a, **k: exact * 0.9)
    C = lasso_path_certified(Z, yc, alphas, tol=1e-10, max_iter=100_000)
    assert (lasso_duality_gaps(Z, yc, C, alphas) <= 1e-10 * yc @ yc).all()
    assert _rel(C, exact) < 1e-4
    assert not np.array_equal(C, exact * 0.9)


def _profile_r2(res):
    return {k: np.concatenate([s.r2 for s in v]) for k, v in res.profiles.items()}


def test_probe_layers_device_runs_the_batched_kernel_and_agrees():
    """probe_layers(device="cpu") takes the torch path (batched over repetitions) and gives the
    NumPy path's profile; a device that is not here is one line before any fit."""
    from rcvlab.errors import RcvlabError
    from rcvlab.probe import probe_layers

    X1, y = _planted(80, 120, seed=5)
    X2 = X1[:, :30] ** 2
    feats = {"a": X1, "b": X2}
    cls = np.repeat(["p", "q"], 40)
    kw = dict(classes=cls, regressor="ridge", reps=3, seed=1, random_features=feats)
    ref = probe_layers(feats, y, **kw)
    dev = probe_layers(feats, y, device="cpu", **kw)
    a, b = _profile_r2(ref), _profile_r2(dev)
    assert a.keys() == b.keys() == {"model", "random", "shuffled"}
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-12)
    with pytest.raises(RcvlabError, match="cuda:7"):
        probe_layers(feats, y, device="cuda:7", **kw)
    with pytest.raises(RcvlabError, match="bogus"):
        probe_layers(feats, y, device="bogus", **kw)


@pytest.mark.gpu
def test_probe_layers_on_gpu_agrees_with_cpu():
    from rcvlab.probe import probe_layers

    X1, y = _planted(300, 900, seed=6)
    feats = {"a": X1, "b": np.abs(X1[:, :200])}
    kw = dict(regressor="ridge", reps=5, seed=2)
    a = _profile_r2(probe_layers(feats, y, **kw))
    b = _profile_r2(probe_layers(feats, y, device="cuda", **kw))
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-8, atol=1e-10)
