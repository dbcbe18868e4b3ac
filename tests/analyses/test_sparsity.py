"""Sparsity along the Lasso path (paper 001 Figs 4-5, Table 1): planted support, agreement with
per-alpha fits, train-only standardisation of other classes, reproducibility, bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import rcvlab.features.extract as fx
from rcvlab.analyses.common import check_xy, features_by_class
from rcvlab.analyses.sparsity import (
    SparsityResult,
    default_table_alphas,
    rcv_path,
    sparsity,
    sparsity_from_arrays,
)
from rcvlab.data.base import ArrayImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe import fit as fit_module
from rcvlab.probe.fit import fit_rcv
from rcvlab.probe.splits import repeated_splits
from rcvlab.probe.stats import r2_score


def test_planted_support_found_at_the_right_alpha(planted):
    X, y = planted()
    alphas = [0.0, 0.05, 0.1, 0.4]
    res = sparsity_from_arrays(X, y, alphas=alphas, reps=10, seed=0)
    j = res.alphas.index(0.4)
    assert res.n_nonzero[j].tolist() == [5] * 10
    assert res.selection_counts[j, :5].tolist() == [10] * 5
    assert res.selection_counts[j, 5:].sum() == 0
    # the plain fit keeps every dimension; smaller alphas keep more than k
    assert res.n_nonzero[0].tolist() == [100] * 10
    assert (res.n_nonzero[1] > 5).all()
    f = res.to_frame()
    same = f[f.test_set == "same"].set_index("alpha")
    assert same.loc[0.4, "r2_test_mean"] > 0.85
    assert same.loc[0.4, "r2_test_ci95_low"] < same.loc[0.4, "r2_test_mean"]
    assert same.loc[0.4, "r2_test_ci95_high"] > same.loc[0.4, "r2_test_mean"]
    assert res.n_train == 100 and res.n_test == {"same": 100} and res.dim == 100


def _manual(X, y, alphas, reps, seed, X2):
    """Per-alpha fit_rcv on the same splits: test R² on the held-out split and on X2."""
    out = np.zeros((2, len(alphas), reps))
    nz = np.zeros((len(alphas), reps), dtype=int)
    for r, (tr, te) in enumerate(repeated_splits(len(y), reps, 0.5, seed)):
        for j, a in enumerate(alphas):
            rcv = fit_rcv(X[tr], y[tr], "lasso", a) if a > 0 else fit_rcv(X[tr], y[tr], "ols")
            out[0, j, r] = r2_score(y[te], rcv.predict(X[te]))
            out[1, j, r] = r2_score(X2[1], rcv.predict(X2[0]))
            nz[j, r] = np.count_nonzero(rcv.coef)
    return out, nz


def test_path_agrees_with_per_alpha_fits(monkeypatch, planted):
    X, y = planted(n=170, d=40, seed=1)  # 85 training rows for 40 features
    X, y, X2, y2 = X[:120], y[:120], X[120:], y[120:]
    alphas = [0.3, 0.0, 0.02, 0.1]  # unsorted on purpose: results follow the given order
    # With fit_rcv's default tolerance the warm-started path and cold fits differ by at most
    # the solver's tolerance ...
    res = sparsity_from_arrays(X, y, alphas=alphas, reps=3, seed=4, test_sets={"other": (X2, y2)})
    ref, nz = _manual(X, y, alphas, 3, 4, (X2, y2))
    np.testing.assert_allclose(res.r2_test, ref, atol=1e-3)
    # ... and with a tight tolerance (read by both at call time) they agree to ~1e-6.
    monkeypatch.setattr(fit_module, "LASSO_TOL", 1e-10)
    res = sparsity_from_arrays(X, y, alphas=alphas, reps=3, seed=4, test_sets={"other": (X2, y2)})
    ref, nz = _manual(X, y, alphas, 3, 4, (X2, y2))
    np.testing.assert_allclose(res.r2_test, ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(res.n_nonzero, nz)
    assert res.alphas == (0.3, 0.0, 0.02, 0.1)
    # rcv_path returns the same RCVs as fit_rcv
    rcvs = rcv_path(X[:80], y[:80], alphas)
    for a, rcv in zip(alphas, rcvs, strict=True):
        ref_rcv = fit_rcv(X[:80], y[:80], "lasso", a) if a else fit_rcv(X[:80], y[:80], "ols")
        np.testing.assert_allclose(rcv.coef, ref_rcv.coef, atol=1e-6)
        assert rcv.regressor == ("lasso" if a else "ols")


def test_other_class_is_standardised_with_the_training_split_only(monkeypatch, planted):
    X, y = planted(n=280, seed=3)
    X, y, Xo, yo = X[:200], y[:200], X[200:], y[200:]  # another "class" of the same features
    shifted = Xo * 3.0 + 1e4  # huge offset and scale: only its own statistics would undo it
    res = sparsity_from_arrays(
        X, y, alphas=[0.0, 0.1], reps=2, seed=0, test_sets={"plain": (Xo, yo), "far": (shifted, yo)}
    )
    (tr, _), _ = repeated_splits(len(y), 2, 0.5, 0)
    # The path's Lasso solutions are exact (homotopy): the reference is a tightly solved fit.
    monkeypatch.setattr(fit_module, "LASSO_TOL", 1e-14)
    monkeypatch.setattr(fit_module, "LASSO_MAX_ITER", 1_000_000)
    rcv = fit_rcv(X[tr], y[tr], "lasso", 0.1)
    expected = r2_score(yo, rcv.predict(shifted))
    s_far = res.test_sets.index("far")
    s_plain = res.test_sets.index("plain")
    assert res.r2_test[s_far, 1, 0] == pytest.approx(expected, rel=1e-9)
    assert expected < -100  # training statistics: the shift ruins the predictions
    own = (shifted - shifted.mean(0)) / shifted.std(0)  # what its own statistics would give
    own_pred = own[:, rcv.keep] @ rcv.coef[rcv.keep] + rcv.intercept
    assert r2_score(yo, own_pred) > 0.8
    assert res.r2_test[s_plain, 1, 0] > 0.8
    assert res.n_test == {"same": 100, "plain": 80, "far": 80}


def test_same_seed_same_output_and_alpha_zero_is_warning_free(planted):
    X, y = planted(n=60, d=40, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning from a zero alpha
        a = sparsity_from_arrays(
            X, y, alphas=np.linspace(0, 0.01, 21)[[0, 10, 20]], reps=3, seed=11
        )
    b = sparsity_from_arrays(X, y, alphas=np.linspace(0, 0.01, 21)[[0, 10, 20]], reps=3, seed=11)
    c = sparsity_from_arrays(X, y, alphas=np.linspace(0, 0.01, 21)[[0, 10, 20]], reps=3, seed=12)
    assert a.to_frame().equals(b.to_frame())
    np.testing.assert_array_equal(a.r2_test, b.r2_test)
    assert not np.array_equal(a.r2_test, c.r2_test)


def test_plain_ridge_option_and_json_round_trip(planted):
    X, y = planted(n=60, d=30, seed=8)
    res = sparsity_from_arrays(
        X, y, alphas=[0.0, 0.2], reps=2, plain="ridge", meta={"layer": "mixed8"}, command="t"
    )
    assert res.plain == "ridge" and res.to_frame().regressor.tolist() == ["ridge", "lasso"]
    back = SparsityResult.from_json(res.to_json())
    assert back.to_frame().equals(res.to_frame())
    assert back.meta == res.meta and back.meta["layer"] == "mixed8"
    assert back.meta["command"] == "t" and back.meta["seed"] == 0
    assert back.selection_counts.shape == (2, 30)
    assert not back.r2_test.flags.writeable


def test_cross_class_table_is_table_1(planted):
    X, y = planted(n=80, d=30, seed=9)
    Xo, yo = planted(n=40, d=30, seed=10)
    res = sparsity_from_arrays(X, y, alphas=[0.0, 0.001, 0.1], reps=3, test_sets={"kite": (Xo, yo)})
    t = res.cross_class_table()
    assert t.test_set.tolist() == ["same", "same", "kite", "kite"]
    assert t.alpha.tolist() == [0.0, 0.001, 0.0, 0.001]
    assert t.regressor.tolist() == ["ols", "lasso", "ols", "lasso"]
    f = res.to_frame()
    row = f[(f.test_set == "kite") & (f.alpha == 0.001)].iloc[0]
    assert t.r2_mean.iloc[3] == row.r2_test_mean
    assert t.r2_std.iloc[3] == pytest.approx(np.std(res.r2_test[1, 1], ddof=1))
    with pytest.raises(RcvlabError, match=r"0\.5 is not in"):
        res.cross_class_table([0.5])
    assert "Table 1" in res.to_markdown()
    # a grid without 0.001: the non-zero alpha closest to it in ratio (0.0005 vs 0.005: 2x
    # against 5x), and no plain fit when 0 is not in the grid
    assert default_table_alphas([0.0, 0.0005, 0.005, 0.01]) == [0.0, 0.0005]
    assert default_table_alphas([0.002, 0.01]) == [0.002]
    coarse = sparsity_from_arrays(X, y, alphas=np.linspace(0, 0.02, 5), reps=2)
    assert coarse.cross_class_table().alpha.tolist() == [0.0, 0.005]


def test_json_of_earlier_versions_is_read(planted):
    """``sparsity.json`` as rcvlab wrote it before the result contract: no kind, free meta."""
    X, y = planted(n=40, d=6, seed=2)
    res = sparsity_from_arrays(X, y, alphas=[0.0, 0.1], reps=2)
    old = {"analysis": "sparsity", **res.to_dict(), "meta": {"layer": "mixed8"}}
    back = SparsityResult.from_json(json.dumps(old))
    assert back.meta == {"layer": "mixed8"}
    np.testing.assert_array_equal(back.r2_test, res.r2_test)


@pytest.mark.parametrize(
    ("X", "y", "kw", "match"),
    [
        (np.ones((20, 3)), np.r_[np.nan, np.arange(19.0)], {}, "NaN"),
        (np.random.default_rng(0).normal(size=(20, 3)), np.ones(20), {}, "constant"),
        (np.ones((20, 3)), np.arange(19.0), {}, "shape"),
        (np.random.default_rng(0).normal(size=(8, 3)), np.arange(8.0), {}, "at least 10"),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            np.arange(20.0),
            {"alphas": [-0.1]},
            "-0.1",
        ),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            np.arange(20.0),
            {"alphas": [0, 0]},
            "distinct",
        ),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            np.arange(20.0),
            {"test_sets": {"same": (np.zeros((20, 3)), np.arange(20.0))}},
            "reserved",
        ),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            np.arange(20.0),
            {"test_sets": {"k": (np.zeros((20, 4)), np.arange(20.0))}},
            "4 features",
        ),
        (np.zeros((20, 3)), np.arange(20.0), {"alphas": []}, "alphas is empty"),
        (np.zeros((20, 3)), np.arange(20.0), {"alphas": [0, np.inf]}, "finite number"),
        (np.zeros((20, 3)), np.arange(20.0), {"alphas": ["x"]}, "numbers >= 0"),
        (np.zeros((20, 3)), np.arange(20.0), {"reps": 0}, "reps must be an integer >= 1"),
        (np.zeros((20, 3)), np.arange(20.0), {"reps": 2.5}, "reps must be an integer"),
        (np.zeros((20, 3)), np.arange(20.0), {"test_fraction": 0.0}, "test_fraction"),
        (np.zeros((20, 3)), np.arange(20.0), {"test_fraction": 1.0}, "test_fraction"),
        (np.zeros((20, 3)), np.arange(20.0), {"test_fraction": "half"}, "test_fraction"),
        (np.zeros((20, 3)), np.arange(20.0), {"seed": -1}, "seed must be an integer >= 0"),
        # an option is checked before the data: the constant measure is not reported
        (np.zeros((20, 3)), np.ones(20), {"reps": 0}, "reps"),
    ],
)
def test_bad_input_is_one_line(X, y, kw, match):
    with pytest.raises(RcvlabError, match=match) as e:
        sparsity_from_arrays(X, y, **{"alphas": [0.0, 0.01], "reps": 2, **kw})
    assert "\n" not in str(e.value)


def test_unknown_plain_regressor(planted):
    X, y = planted(n=20, d=5)
    with pytest.raises(UnknownNameError, match="ridge"):
        sparsity_from_arrays(X, y, alphas=[0.0], reps=1, plain="rigde")
    with pytest.raises(DataError):
        check_xy(np.ones(5), np.ones(5))


def squares(classes=("bird", "car", "kite"), per_class=20, size=24, seed=0):
    rng = np.random.default_rng(seed)
    imgs, area, labels = [], [], []
    for ci, c in enumerate(classes):
        for _ in range(per_class):
            s = int(rng.integers(3, size - 2))
            img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
            o = rng.integers(0, size - s + 1, 2)
            img[o[0] : o[0] + s, o[1] : o[1] + s] = (200, 60 + 50 * ci, 120)
            imgs.append(img)
            area.append(s * s / size**2)
            labels.append(c)
    area = np.array(area)
    area[3] = np.nan  # a row whose measure is missing is dropped
    return ArrayImageSet(imgs, {"scale_ratio": area}, classes=labels)


def test_sparsity_from_a_model_and_class_errors(blobs_model):
    data = squares()
    m = blobs_model
    res = sparsity(
        m,
        data,
        layer="conv",
        measure="scale_ratio",
        train_class="bird",
        test_classes=["kite"],
        alphas=[0.0, 0.001],
        reps=2,
        device="cpu",
        command="rcvlab sparsity ...",
    )
    assert res.test_sets == ("same", "kite")
    assert res.meta["n_per_class"] == {"bird": 19, "kite": 20}
    assert res.meta["n_dropped"] == {"bird": 1, "kite": 0}  # the NaN measure
    assert res.meta["layer"] == "conv" and res.meta["train_class"] == "bird"
    assert res.meta["data_fingerprint"] == data.fingerprint()
    assert res.meta["command"] == "rcvlab sparsity ..." and res.meta["seed"] == 0
    assert res.dim == 12
    # the same numbers as the array form on the rows of each class (NaN row dropped)
    by, _ = features_by_class(m, data, "conv", "scale_ratio", ["bird", "kite"])
    X = fx.extract_features(m, data, ["conv"])["conv"]
    bird = np.flatnonzero(data.classes == "bird")
    np.testing.assert_array_equal(by["bird"][0], X[bird[bird != 3]])
    ref = sparsity_from_arrays(
        *by["bird"], alphas=[0.0, 0.001], reps=2, test_sets={"kite": by["kite"]}
    )
    np.testing.assert_array_equal(res.r2_test, ref.r2_test)
    res_all = sparsity(
        m, data, layer="conv", measure="scale_ratio", train_class="car", alphas=[0.0], reps=1
    )
    assert res_all.test_sets == ("same", "bird", "kite")
    only_same = sparsity(
        m,
        data,
        layer="conv",
        measure="scale_ratio",
        train_class="car",
        test_classes=[],
        alphas=[0.0],
        reps=1,
    )
    assert only_same.test_sets == ("same",)
    with pytest.raises(UnknownNameError, match="available: bird, car, kite") as e:
        features_by_class(m, data, "conv", "scale_ratio", ["albatross"])
    assert "\n" not in str(e.value)
    with pytest.raises(RcvlabError, match="training class"):
        sparsity(
            m,
            data,
            layer="conv",
            measure="scale_ratio",
            train_class="bird",
            test_classes=["bird"],
            alphas=[0.0],
            reps=1,
        )
    no_classes = ArrayImageSet(list(np.zeros((12, 8, 8, 3), np.uint8)), {"s": np.arange(12.0)})
    with pytest.raises(DataError, match="no classes"):
        features_by_class(m, no_classes, "conv", "s")


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"alphas": [-1.0]}, RcvlabError, "alpha must be"),
        ({"reps": 0}, RcvlabError, "reps must be"),
        ({"test_fraction": 1.5}, RcvlabError, "test_fraction"),
        ({"plain": "lasso"}, UnknownNameError, "plain regressor"),
        ({"seed": -2}, RcvlabError, "seed must be"),
        ({"train_class": "albatross"}, UnknownNameError, "unknown class 'albatross'"),
        ({"test_classes": ["kite", "kiet"]}, UnknownNameError, "unknown class 'kiet'"),
        ({"test_classes": ["kite", "kite"]}, RcvlabError, "repeated"),
        ({"layer": "conv9"}, RcvlabError, "conv9"),
        ({"measure": "no_such_measure"}, RcvlabError, "no_such_measure"),
        (
            {"train_class": "bird", "test_classes": [], "per_class": 10},
            DataError,
            "class 'bird': 9 images .* at least 10",
        ),
    ],
)
def test_options_fail_before_the_features_are_extracted(
    kw, error, match, blobs_model, no_extraction
):
    data = squares(per_class=kw.pop("per_class", 12))  # bird has one NaN measure
    m = blobs_model
    opts = {"layer": "conv", "measure": "scale_ratio", "train_class": "car", **kw}
    with pytest.raises(error, match=match) as e:
        sparsity(m, data, **opts)
    assert "\n" not in str(e.value)


def test_constant_columns_are_dropped_and_frame_columns(planted):
    X, y = planted(n=60, d=12, seed=4)
    X[:, 7] = 3.0  # constant on every split: dropped as fit_rcv does, never selected
    res = sparsity_from_arrays(X, y, alphas=[0.0, 0.05], reps=2)
    assert res.n_constant == 1
    assert res.selection_counts[:, 7].tolist() == [0, 0]
    assert res.n_nonzero[0].tolist() == [11, 11]
    cols = {
        "test_set",
        "alpha",
        "n_nonzero_mean",
        "n_nonzero_ci95_low",
        "n_nonzero_ci95_high",
        "r2_train_mean",
        "r2_train_ci95_low",
        "r2_train_ci95_high",
        "r2_test_mean",
        "r2_test_std",
        "r2_test_ci95_low",
        "r2_test_ci95_high",
    }
    assert cols <= set(res.to_frame().columns)
    assert len(res.runs_frame()) == 2 * 2


def test_training_r2_and_counts_match_scikit_learn(monkeypatch, planted):
    from sklearn.linear_model import Lasso, LinearRegression
    from sklearn.preprocessing import StandardScaler

    monkeypatch.setattr(fit_module, "LASSO_TOL", 1e-10)
    X, y = planted(n=100, d=12, seed=3)
    alphas = [0.0, 0.01, 0.1]
    res = sparsity_from_arrays(X, y, alphas=alphas, reps=2, seed=1)
    for r, (tr, te) in enumerate(repeated_splits(len(y), 2, 0.5, 1)):
        sc = StandardScaler().fit(X[tr])
        for j, a in enumerate(alphas):
            m = LinearRegression() if a == 0 else Lasso(alpha=a, tol=1e-12, max_iter=100_000)
            m.fit(sc.transform(X[tr]), y[tr])
            assert res.r2_train[j, r] == pytest.approx(
                m.score(sc.transform(X[tr]), y[tr]), abs=1e-7
            )
            assert res.r2_test[0, j, r] == pytest.approx(
                m.score(sc.transform(X[te]), y[te]), abs=1e-7
            )
            assert res.n_nonzero[j, r] == np.count_nonzero(m.coef_)


def test_wide_path_with_constant_columns_is_exact(monkeypatch, planted):
    """More columns than training rows (the paper's regime), constant columns dropped: the
    exact homotopy path equals tightly solved scikit-learn Lasso refits, support included,
    and the default tolerance returns the same exact solutions."""
    from sklearn.linear_model import Lasso
    from sklearn.preprocessing import StandardScaler

    X, y = planted(n=80, d=150, k=6, seed=8)
    X[:, [10, 90]] = 4.0
    alphas = [0.05, 0.0, 0.3, 0.01]
    res = sparsity_from_arrays(X, y, alphas=alphas, reps=2, seed=2)
    monkeypatch.setattr(fit_module, "LASSO_TOL", 1e-10)
    tight = sparsity_from_arrays(X, y, alphas=alphas, reps=2, seed=2)
    np.testing.assert_array_equal(res.r2_test, tight.r2_test)  # exact either way
    assert res.n_constant == 2
    for r, (tr, te) in enumerate(repeated_splits(len(y), 2, 0.5, 2)):
        sc = StandardScaler().fit(X[tr])
        keep = sc.scale_ != 1.0
        Z, Zt = sc.transform(X[tr])[:, keep], sc.transform(X[te])[:, keep]
        for j, a in enumerate(alphas):
            if a == 0:
                continue
            m = Lasso(alpha=a, tol=1e-14, max_iter=1_000_000).fit(Z, y[tr])
            assert res.n_nonzero[j, r] == np.count_nonzero(m.coef_)
            assert res.r2_test[0, j, r] == pytest.approx(m.score(Zt, y[te]), abs=1e-8)
            assert res.r2_train[j, r] == pytest.approx(m.score(Z, y[tr]), abs=1e-8)
