"""Alignment of RCVs with feature maps (paper 001 Fig. 3): the cumulative-norm curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rcvlab.features.extract as fx
from rcvlab.analyses.alignment import (
    AlignmentCurve,
    AlignmentResult,
    alignment,
    alignment_from_arrays,
    alignment_of,
    cumulative_norm,
)
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe.fit import fit_rcv
from rcvlab.probe.splits import repeated_splits


def test_cumulative_norm_by_hand():
    np.testing.assert_allclose(cumulative_norm([3.0, 0.0, -4.0]), [0.8, 1.0, 1.0])
    np.testing.assert_allclose(cumulative_norm([1.0, 1.0, 1.0, 1.0]), [0.5, 0.5**0.5, 0.75**0.5, 1])
    assert np.isnan(cumulative_norm([0.0, 0.0])).all()


def one(X, y, regressor, alpha=None, max_dims=200, **kw) -> AlignmentCurve:
    """The curve of one regressor."""
    res = alignment_from_arrays(X, y, regressors=(regressor,), alpha=alpha, max_dims=max_dims, **kw)
    assert len(res) == 1
    return res[0]


def test_planted_sparse_rcv_reaches_one_at_k(planted):
    X, y = planted()
    lasso = one(X, y, "lasso", alpha=0.4, max_dims=20)
    assert lasso.n_nonzero == 5 and lasso.dim == 100
    assert lasso.curve.shape == (20,)
    assert lasso.curve[4] == pytest.approx(1.0, abs=1e-12)
    assert lasso.curve[3] < 0.99
    assert lasso.dims_for(1.0) == 5 and lasso.dims_for(0.5) <= 3
    assert {i for i, _ in lasso.top_features(10)} == set(range(5))
    assert np.all(np.diff(lasso.curve) >= -1e-15) and not lasso.padded
    # the plain fit spreads a little weight on the 95 noise dimensions
    ols = one(X, y, "ols", max_dims=200)
    assert ols.alpha is None and ols.n_nonzero == 100
    assert 0.98 < ols.curve[4] < 1.0
    assert ols.dims_for(0.999) > 5
    assert ols.padded and (ols.curve[100:] == ols.curve[99]).all()
    assert ols.curve[99] == pytest.approx(1.0)
    # the curve is that of fit_rcv's direction, in the standardised feature space
    ref = fit_rcv(X, y, "lasso", 0.4)
    np.testing.assert_allclose(lasso.direction, ref.direction)
    assert lasso.r2_train > 0.9 and math.isnan(lasso.r2_test)


def test_held_out_r2_ridge_and_round_trip(planted):
    X, y = planted(n=150, d=30, seed=2)
    both = alignment_from_arrays(
        X[:100],
        y[:100],
        regressors=("ridge", "ols"),
        alpha=None,
        max_dims=10,
        test=(X[100:], y[100:]),
    )
    res = both["ridge"]
    assert res.alpha is not None and res.alpha > 0  # chosen by leave-one-out
    assert res.r2_test > 0.8 and res.n_test == 50 and res.n_train == 100
    # test R² pinned against scikit-learn's Ridge refitted with the chosen alpha
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score as sk_r2
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(X[:100])
    ref = Ridge(alpha=res.alpha).fit(sc.transform(X[:100]), y[:100])
    assert res.r2_test == pytest.approx(sk_r2(y[100:], ref.predict(sc.transform(X[100:]))))
    back = AlignmentResult.from_json(both.to_json())
    np.testing.assert_array_equal(back["ridge"].curve, res.curve)
    assert back["ridge"].label == res.label and back["ridge"].r2_test == res.r2_test
    assert back.regressors == ("ridge", "ols") and back.meta == both.meta
    f = both.to_frame()
    assert list(f.columns) == ["regressor", "alpha", "label", "d", "cumulative_norm"]
    assert len(f) == 20 and f.d.tolist()[:3] == [1, 2, 3]
    assert f.regressor.tolist() == ["ridge"] * 10 + ["ols"] * 10
    np.testing.assert_array_equal(f.cumulative_norm[10:], both["ols"].curve)
    assert alignment_of(fit_rcv(X, y, "ols"), 10).to_frame().shape == (10, 5)
    assert both.dims_for(0.9) == {"ridge": res.dims_for(0.9), "ols": both[1].dims_for(0.9)}


def test_zero_vector_is_nan_not_a_crash(planted):
    X, y = planted(n=40, d=10, seed=3)
    res = one(X, y, "lasso", alpha=100.0, max_dims=5)
    assert res.n_nonzero == 0 and not res.defined
    assert np.isnan(res.curve).all()
    with pytest.raises(RcvlabError, match="zero vector"):
        res.dims_for(0.9)
    assert res.summary()["dims_for_0.9"] is None
    full = alignment_from_arrays(X, y, regressors=["ols", "lasso"], alpha=100.0, max_dims=5)
    assert full.dims_for(0.9)["lasso"] is None
    assert "null" in full.to_json()  # NaN written as JSON null
    back = AlignmentResult.from_json(full.to_json())
    assert np.isnan(back["lasso"].curve).all() and np.isnan(back["lasso"].r2_test)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"regressors": ("laso",)}, UnknownNameError, "lasso"),
        ({"regressors": ()}, RcvlabError, "regressors is empty"),
        ({"regressors": ("ols", "OLS")}, RcvlabError, "repeated"),
        ({"alpha": -1.0}, RcvlabError, "alpha"),
        ({"alpha": None}, RcvlabError, "lasso.*needs alpha"),
        ({"max_dims": 0}, RcvlabError, "max_dims must be an integer >= 1"),
        ({"max_dims": 2.5}, RcvlabError, "max_dims"),
        ({"y": np.ones(40)}, DataError, "constant"),
        ({"test": "bad features"}, DataError, "features"),
        # options before data: a constant measure with a bad max_dims reports max_dims
        ({"y": np.ones(40), "max_dims": 0}, RcvlabError, "max_dims"),
    ],
)
def test_bad_input_is_one_line(kw, error, match, planted):
    X, y = planted(n=40, d=10)
    if kw.get("test") == "bad features":
        kw["test"] = (X[:, :5], y)
    args = {"X": X, "y": y, **kw}
    with pytest.raises(error, match=match) as e:
        alignment_from_arrays(args.pop("X"), args.pop("y"), **args)
    assert "\n" not in str(e.value)
    with pytest.raises(RcvlabError, match=r"level"):
        one(X, y, "ols").dims_for(1.5)
    with pytest.raises(UnknownNameError, match="it has ols, lasso"):
        alignment_from_arrays(X, y)["ridge"]


def test_alignment_from_a_model_is_one_result(blobs_model, bird_data):
    data = bird_data
    m = blobs_model
    out = alignment(
        m, data, layer="conv", measure="scale_ratio", train_class="bird", max_dims=8, command="c"
    )
    assert isinstance(out, AlignmentResult) and out.regressors == ("ols", "lasso")
    assert all(r.n_train == 15 and r.n_test == 15 and r.curve.shape == (8,) for r in out)
    assert out.meta["train_class"] == "bird" and out.meta["layer"] == "conv"
    assert out.meta["command"] == "c" and out.meta["data_fingerprint"] == data.fingerprint()
    assert set(out.to_frame().regressor) == {"ols", "lasso"}
    # the same as the array form on the seeded split of the class's features
    X = fx.extract_features(m, data, ["conv"])["conv"]
    y = data.measure("scale_ratio")
    ((tr, te),) = repeated_splits(30, 1, 0.5, 0)
    ref = alignment_from_arrays(X[tr], y[tr], max_dims=8, test=(X[te], y[te]))
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_allclose(a.direction, b.direction, atol=1e-12)
        assert a.r2_test == pytest.approx(b.r2_test)
    with pytest.raises(UnknownNameError, match="available: bird"):
        alignment(m, data, layer="conv", measure="scale_ratio", train_class="kite")


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"max_dims": 0}, RcvlabError, "max_dims"),
        ({"test_fraction": 0}, RcvlabError, "test_fraction"),
        ({"regressors": ["ols", "ridg"]}, UnknownNameError, "ridg"),
        ({"train_class": "kite"}, UnknownNameError, "kite"),
        ({"seed": -1}, RcvlabError, "seed"),
    ],
)
def test_options_fail_before_the_features_are_extracted(
    kw, error, match, blobs_model, bird_data, no_extraction
):
    m = blobs_model
    with pytest.raises(error, match=match):
        alignment(m, bird_data, **{"layer": "conv", "measure": "scale_ratio", **kw})
