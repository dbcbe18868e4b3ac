"""Consistency of RCV directions (paper 001 Table 2): angles, cosines, baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rcvlab.features.extract as fx
from rcvlab.analyses.consistency import (
    ConsistencyResult,
    angle_between,
    consistency,
    consistency_from_arrays,
)
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe.fit import fit_rcv


def planted_class(n, d, support, seed, noise=0.3):
    """Features (offset and scaled) whose columns ``support`` carry the measure."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    return Z * 2.0 + 1.0, Z[:, support] @ np.ones(len(support)) + noise * rng.standard_normal(n)


def test_angle_between_by_hand():
    assert angle_between([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx((0.0, 1.0), abs=1e-6)
    assert angle_between([1.0, 0.0], [0.0, 3.0]) == pytest.approx((90.0, 0.0))
    assert angle_between([1.0, 0.0], [-2.0, 0.0]) == pytest.approx((180.0, -1.0))
    assert angle_between([1.0, 0.0], [1.0, 1.0]) == pytest.approx((45.0, math.sqrt(0.5)))
    ang, cos = angle_between([0.0, 0.0], [1.0, 0.0])
    assert math.isnan(ang) and math.isnan(cos)
    with pytest.raises(DataError, match="lengths"):
        angle_between([1.0], [1.0, 2.0])
    X, y = planted_class(40, 5, [0], 1)
    rcv = fit_rcv(X, y, "ols")
    assert angle_between(rcv, rcv.coef * 7)[0] == pytest.approx(0.0, abs=1e-6)


def test_shuffled_measures_in_512_dims_are_near_orthogonal():
    X, y = planted_class(100, 512, [0, 1, 2, 3, 4], 1)
    res = consistency_from_arrays({"a": (X, y)}, reps=5, seed=0, alpha=0.01)
    f = res.to_frame().set_index(["kind", "regressor"])
    for reg in ("ols", "lasso"):
        assert 80 < f.loc[("shuffled", reg), "angle_mean"] < 100
        assert abs(f.loc[("shuffled", reg), "cos_mean"]) < 0.15
    # the sparse Lasso finds the same direction on two disjoint halves; the min-norm plain fit
    # in d >> n mostly does not (the paper's 46° versus 68°)
    assert f.loc[("same", "lasso"), "angle_mean"] < 30
    assert f.loc[("same", "lasso"), "angle_mean"] < f.loc[("same", "ols"), "angle_mean"]
    assert res.n_fit == {"a": 50} and res.dim == 512


def test_classes_sharing_an_encoding_align_and_others_do_not():
    data = {
        "albatross": planted_class(120, 50, [0, 1, 2], 2),
        "kite": planted_class(120, 50, [0, 1, 2], 3),
        "car": planted_class(120, 50, [10, 11, 12], 4),
    }
    res = consistency_from_arrays(data, reps=4, seed=0, alpha=0.1)
    f = res.to_frame().set_index(["a", "b", "regressor"])
    assert list(f.columns[:2]) == ["kind", "alpha"]
    for col in ("angle_mean", "angle_std", "cos_mean", "cos_std", "n"):
        assert col in f.columns
    assert f.loc[("albatross", "kite", "lasso"), "angle_mean"] < 20
    assert f.loc[("albatross", "car", "lasso"), "angle_mean"] > 80
    assert f.loc[("albatross", "kite", "ols"), "cos_mean"] > 0.7
    assert f.loc[("albatross", "albatross", "ols"), "n"] == 4
    kinds = res.to_frame().kind.tolist()
    assert kinds.count("same") == 6 and kinds.count("shuffled") == 6 and kinds.count("cross") == 6
    assert len(res.runs_frame()) == 18 * 4


def test_same_seed_same_output_and_round_trip():
    data = {"a": planted_class(40, 12, [0, 1], 5), "b": planted_class(30, 12, [0, 1], 6)}
    r1 = consistency_from_arrays(data, reps=3, seed=9, alpha=0.05)
    r2 = consistency_from_arrays(data, reps=3, seed=9, alpha=0.05)
    r3 = consistency_from_arrays(data, reps=3, seed=10, alpha=0.05)
    assert r1.to_frame().equals(r2.to_frame())
    assert not r1.to_frame().equals(r3.to_frame())
    back = ConsistencyResult.from_json(r1.to_json())
    assert back == r1
    # a class's splits do not depend on the classes after it
    only_a = consistency_from_arrays({"a": data["a"]}, reps=3, seed=9, alpha=0.05)
    assert only_a.pairs[0] == r1.pairs[0]
    # plain only
    plain = consistency_from_arrays(data, reps=2, alpha=None, shuffled=False)
    assert set(plain.to_frame().regressor) == {"ols"} and set(plain.to_frame().kind) == {
        "same",
        "cross",
    }


def test_zero_lasso_vector_gives_nan_with_a_reason():
    data = {"a": planted_class(30, 8, [0], 7)}
    res = consistency_from_arrays(data, reps=2, alpha=1e3)
    f = res.to_frame().set_index(["kind", "regressor"])
    row = f.loc[("same", "lasso")]
    assert math.isnan(row.angle_mean) and row.n == 0 and row.n_undefined == 2
    assert "zero vector" in row.note
    assert f.loc[("same", "ols"), "n"] == 2 and f.loc[("same", "ols"), "note"] == ""
    assert "zero vector" in res.to_markdown()
    assert "null" in res.to_json()


def test_bad_input():
    a = planted_class(30, 8, [0], 1)
    with pytest.raises(DataError, match="feature dimensions"):
        consistency_from_arrays({"a": a, "b": planted_class(30, 9, [0], 2)}, reps=1)
    with pytest.raises(DataError, match="no classes"):
        consistency_from_arrays({}, reps=1)
    with pytest.raises(DataError, match=r"class 'b'.*at least 10"):
        consistency_from_arrays({"a": a, "b": (a[0][:5], a[1][:5])}, reps=1)
    with pytest.raises(RcvlabError, match="alpha"):
        consistency_from_arrays({"a": a}, reps=1, alpha=-0.1)
    with pytest.raises(UnknownNameError):
        consistency_from_arrays({"a": a}, reps=1, plain="lasso")
    with pytest.raises(RcvlabError, match="reps must be an integer >= 1, got 0"):
        consistency_from_arrays({"a": a}, reps=0)
    with pytest.raises(RcvlabError, match="test_fraction"):
        consistency_from_arrays({"a": a}, test_fraction=1.0)
    with pytest.raises(RcvlabError, match="seed"):
        consistency_from_arrays({"a": a}, seed=-3)
    # options are checked before the data: no classes and a bad reps report reps
    with pytest.raises(RcvlabError, match="reps"):
        consistency_from_arrays({}, reps=0)


def test_consistency_from_a_model(blobs_model, two_classes):
    data = two_classes
    m = blobs_model
    res = consistency(m, data, layer="conv", measure="scale_ratio", reps=2, alpha=0.01)
    assert res.classes == ("bird", "car") and res.meta["layer"] == "conv"
    assert res.meta["data_fingerprint"] == data.fingerprint() and res.meta["seed"] == 0
    assert ("bird", "car") in set(zip(res.to_frame().a, res.to_frame().b, strict=True))
    # the same as the array form on each class's features
    X = fx.extract_features(m, data, ["conv"])["conv"]
    y = data.measure("scale_ratio")
    by = {c: (X[data.classes == c], y[data.classes == c]) for c in ("bird", "car")}
    ref = consistency_from_arrays(by, reps=2, alpha=0.01)
    assert res.pairs == ref.pairs
    with pytest.raises(UnknownNameError, match="available: bird, car"):
        consistency(m, data, layer="conv", measure="scale_ratio", classes=["bird", "kite"])


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"reps": 0}, RcvlabError, "reps must be"),
        ({"test_fraction": -0.5}, RcvlabError, "test_fraction"),
        ({"alpha": 0.0}, RcvlabError, "alpha"),
        ({"plain": "lasso"}, UnknownNameError, "plain regressor"),
        ({"classes": []}, RcvlabError, "classes is empty"),
        ({"classes": ["bird", "bird"]}, RcvlabError, "repeated"),
        ({"classes": ["brid"]}, UnknownNameError, "brid"),
        ({"layer": "nope"}, RcvlabError, "nope"),
    ],
)
def test_options_fail_before_the_features_are_extracted(
    kw, error, match, blobs_model, two_classes, no_extraction
):
    m = blobs_model
    with pytest.raises(error, match=match) as e:
        consistency(m, two_classes, **{"layer": "conv", "measure": "scale_ratio", **kw})
    assert "\n" not in str(e.value)


def test_angles_match_scikit_learn_fits_on_the_same_halves(monkeypatch):
    """Angles recomputed from sklearn LinearRegression / Lasso on standardised halves."""
    from sklearn.linear_model import Lasso, LinearRegression
    from sklearn.preprocessing import StandardScaler

    import rcvlab.probe.fit as fit_module
    from rcvlab.probe.splits import repeated_splits

    monkeypatch.setattr(fit_module, "LASSO_TOL", 1e-10)
    X, y = planted_class(80, 6, [0, 1], seed=2)
    res = consistency_from_arrays({"a": (X, y)}, reps=3, seed=5, alpha=0.01)
    split_seed, shuffle_seed = np.random.SeedSequence(5).spawn(1)[0].spawn(2)
    rng = np.random.default_rng(shuffle_seed)

    def coef(Xs, ys, a):
        Z = StandardScaler().fit_transform(Xs)
        m = LinearRegression() if a is None else Lasso(alpha=a, tol=1e-12, max_iter=100_000)
        return m.fit(Z, ys).coef_

    def deg(u, v):
        return np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))

    want = {}
    for tr, te in repeated_splits(y.size, 3, 0.5, split_seed):
        y_shuf = rng.permutation(y[te])
        for a in (None, 0.01):
            u, v, w = coef(X[tr], y[tr], a), coef(X[te], y[te], a), coef(X[te], y_shuf, a)
            want.setdefault(("same", a), []).append(deg(u, v))
            want.setdefault(("shuffled", a), []).append(deg(u, w))
    for p in res.pairs:
        np.testing.assert_allclose(p.angles, want[(p.kind, p.alpha)], atol=1e-5)
