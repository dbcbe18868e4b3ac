"""Alignment of RCVs with feature maps (paper 001 Fig. 3): the cumulative-norm curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab import load_model
from rcvlab.analyses.alignment import (
    AlignmentResult,
    alignment,
    alignment_frame,
    alignment_of,
    alignment_on_data,
    cumulative_norm,
)
from rcvlab.data.base import ArrayImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe.fit import fit_rcv


def planted(n=200, d=100, k=5, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    X = Z * rng.uniform(0.5, 5, d) + rng.uniform(-10, 10, d)
    y = Z[:, :k] @ np.linspace(1, 2, k) + noise * rng.standard_normal(n)
    return X, y


def test_cumulative_norm_by_hand():
    np.testing.assert_allclose(cumulative_norm([3.0, 0.0, -4.0]), [0.8, 1.0, 1.0])
    np.testing.assert_allclose(cumulative_norm([1.0, 1.0, 1.0, 1.0]), [0.5, 0.5**0.5, 0.75**0.5, 1])
    assert np.isnan(cumulative_norm([0.0, 0.0])).all()


def test_planted_sparse_rcv_reaches_one_at_k():
    X, y = planted()
    lasso = alignment(X, y, "lasso", alpha=0.4, max_dims=20)
    assert lasso.n_nonzero == 5 and lasso.dim == 100
    assert lasso.curve.shape == (20,)
    assert lasso.curve[4] == pytest.approx(1.0, abs=1e-12)
    assert lasso.curve[3] < 0.99
    assert lasso.dims_for(1.0) == 5 and lasso.dims_for(0.5) <= 3
    assert {i for i, _ in lasso.top_features(10)} == set(range(5))
    assert np.all(np.diff(lasso.curve) >= -1e-15) and not lasso.padded
    # the plain fit spreads a little weight on the 95 noise dimensions
    ols = alignment(X, y, "ols", max_dims=200)
    assert ols.alpha is None and ols.n_nonzero == 100
    assert 0.98 < ols.curve[4] < 1.0
    assert ols.dims_for(0.999) > 5
    assert ols.padded and (ols.curve[100:] == ols.curve[99]).all()
    assert ols.curve[99] == pytest.approx(1.0)
    # the curve is that of fit_rcv's direction, in the standardised feature space
    ref = fit_rcv(X, y, "lasso", 0.4)
    np.testing.assert_allclose(lasso.direction, ref.direction)
    assert lasso.r2_train > 0.9 and math.isnan(lasso.r2_test)


def test_held_out_r2_ridge_and_round_trip():
    X, y = planted(n=150, d=30, seed=2)
    res = alignment(X[:100], y[:100], "ridge", None, 10, test=(X[100:], y[100:]))
    assert res.alpha is not None and res.alpha > 0  # chosen by leave-one-out
    assert res.r2_test > 0.8 and res.n_test == 50 and res.n_train == 100
    back = AlignmentResult.from_json(res.to_json())
    np.testing.assert_array_equal(back.curve, res.curve)
    assert back.label == res.label and back.r2_test == res.r2_test
    f = alignment_frame([res, alignment_of(fit_rcv(X, y, "ols"), 10)])
    assert list(f.columns) == ["regressor", "alpha", "label", "d", "cumulative_norm"]
    assert len(f) == 20 and f.d.tolist()[:3] == [1, 2, 3]


def test_zero_vector_is_nan_not_a_crash():
    X, y = planted(n=40, d=10, seed=3)
    res = alignment(X, y, "lasso", alpha=100.0, max_dims=5)
    assert res.n_nonzero == 0 and not res.defined
    assert np.isnan(res.curve).all()
    with pytest.raises(RcvlabError, match="zero vector"):
        res.dims_for(0.9)
    assert res.summary()["dims_for_0.9"] is None
    assert "null" in res.to_json()  # NaN written as JSON null


def test_bad_input():
    X, y = planted(n=40, d=10)
    with pytest.raises(UnknownNameError, match="lasso"):
        alignment(X, y, "laso")
    with pytest.raises(RcvlabError, match="alpha"):
        alignment(X, y, "lasso", alpha=-1.0)
    with pytest.raises(RcvlabError, match="max_dims"):
        alignment(X, y, "lasso", max_dims=0)
    with pytest.raises(DataError, match="constant"):
        alignment(X, np.ones(40))
    with pytest.raises(DataError, match="features"):
        alignment(X, y, "ols", test=(X[:, :5], y))
    with pytest.raises(RcvlabError, match=r"level"):
        alignment(X, y, "ols").dims_for(1.5)


class Blobs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 12, 1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def test_alignment_on_data():
    rng = np.random.default_rng(0)
    imgs, area = [], []
    for _ in range(30):
        s = int(rng.integers(3, 22))
        img = rng.integers(0, 40, (24, 24, 3)).astype(np.uint8)
        img[:s, :s] = (200, 80, 120)
        imgs.append(img)
        area.append(s * s / 576)
    data = ArrayImageSet(imgs, {"scale_ratio": area}, classes=["bird"] * 30)
    m = load_model(Blobs().eval(), input_size=24, layers=["conv"])
    out = alignment_on_data(m, data, "conv", "scale_ratio", "bird", ("ols", "lasso"), 0.001, 8)
    assert [r.regressor for r in out] == ["ols", "lasso"]
    assert all(r.n_train == 15 and r.n_test == 15 and r.curve.shape == (8,) for r in out)
    assert out[1].meta["train_class"] == "bird" and out[1].meta["layer"] == "conv"
    with pytest.raises(UnknownNameError, match="available: bird"):
        alignment_on_data(m, data, "conv", "scale_ratio", "kite")
