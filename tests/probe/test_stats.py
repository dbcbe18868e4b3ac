"""R², normalised score and intervals, against scikit-learn and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics
from scipy import stats

from rcvlab.errors import DataError
from rcvlab.probe.result import LayerScore
from rcvlab.probe.stats import mean_ci95, normalised_r2, pooled_ci95, r2_score, summarise


def test_r2_equals_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.standard_normal(30)
        p = t + rng.standard_normal(30) * rng.uniform(0.1, 3)
        assert r2_score(t, p) == pytest.approx(sklearn.metrics.r2_score(t, p), abs=1e-12)


def test_r2_by_hand():
    # SS_res = 1 + 0 + 1 = 2, SS_tot = 1 + 0 + 1 = 2 -> R² = 0; a perfect fit -> 1.
    assert r2_score([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0
    assert r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert r2_score([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-3.0)


def test_r2_degenerate_truth():
    assert math.isnan(r2_score([2.0, 2.0], [2.0, 2.0]))
    assert r2_score([2.0, 2.0], [1.0, 2.0]) == -math.inf
    with pytest.raises(DataError):
        r2_score([1.0, 2.0], [1.0])


def test_normalised_r2():
    assert normalised_r2(1.0) == 1.0
    assert normalised_r2(0.0) == pytest.approx(1 / math.e)
    np.testing.assert_allclose(normalised_r2([-1.0, 0.5]), np.exp([-2.0, -0.5]))


def test_mean_ci95_plain_by_hand():
    v = np.array([0.5, 0.7, 0.6, 0.8])
    m, s = v.mean(), v.std(ddof=1)
    half = stats.t.ppf(0.975, 3) * s / math.sqrt(4)
    assert mean_ci95(v) == pytest.approx((m - half, m + half))


def test_mean_ci95_nadeau_bengio_by_hand():
    v = np.array([0.81, 0.84, 0.79, 0.86, 0.83, 0.80])
    J, n_train, n_test = 6, 309, 132
    m, s2 = v.mean(), v.var(ddof=1)
    half = stats.t.ppf(0.975, J - 1) * math.sqrt((1 / J + n_test / n_train) * s2)
    lo, hi = mean_ci95(v, n_train=n_train, n_test=n_test)
    assert (lo, hi) == pytest.approx((m - half, m + half))
    # The correction widens the interval, here by sqrt(1 + J n_test / n_train).
    plain = mean_ci95(v)
    ratio = (hi - lo) / (plain[1] - plain[0])
    assert ratio == pytest.approx(math.sqrt(1 + J * n_test / n_train))


def test_mean_ci95_edge_cases():
    assert all(math.isnan(x) for x in mean_ci95([0.5]))
    assert all(math.isnan(x) for x in mean_ci95([]))
    assert all(math.isnan(x) for x in mean_ci95([0.5, np.nan, 0.6]))
    assert all(math.isnan(x) for x in mean_ci95([0.5, -np.inf, 0.6]))
    assert mean_ci95([0.3, 0.3, 0.3]) == (0.3, 0.3)
    with pytest.raises(DataError):
        mean_ci95([0.1, 0.2], n_train=10)


def test_pooled_ci95_by_hand():
    a = np.array([0.8, 0.82, 0.79, 0.85])
    b = np.array([0.5, 0.6, 0.55, 0.52])
    ntr, nte = [70, 50], [30, 20]
    va = (1 / 4 + 30 / 70) * a.var(ddof=1) / 4
    vb = (1 / 4 + 20 / 50) * b.var(ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    m = (a.mean() + b.mean()) / 2
    assert pooled_ci95([a, b], ntr, nte) == pytest.approx((m - half, m + half))
    # One group: the single-sample interval.
    assert pooled_ci95([a], [70], [30]) == pytest.approx(mean_ci95(a, 70, 30))


def test_summarise_single_group():
    r2 = [0.5, 0.7, 0.6]
    s = summarise("mixed8", 1280, r2, n_train=70, n_test=30, n_constant=2)
    assert s.layer == "mixed8" and s.dim == 1280 and s.n_constant == 2
    assert s.r2 == (0.5, 0.7, 0.6)
    assert s.r2_mean == pytest.approx(0.6)
    assert s.r2_std == pytest.approx(0.1)
    assert s.r2_ci95 == pytest.approx(mean_ci95(r2, 70, 30))
    assert s.r2_norm_mean == pytest.approx(np.mean(np.exp(np.array(r2) - 1)))
    assert s.r2_by_class == {}


def test_summarise_per_class_uses_pooled_interval():
    by = {"albatross": [0.8, 0.82, 0.79], "kite": [0.5, 0.6, 0.55]}
    r2 = by["albatross"] + by["kite"]
    s = summarise(
        "l",
        4,
        r2,
        n_train={"albatross": 70, "kite": 50},
        n_test={"albatross": 30, "kite": 20},
        r2_by_class=by,
    )
    assert s.r2_by_class == {k: tuple(v) for k, v in by.items()}
    assert s.r2_ci95 == pytest.approx(pooled_ci95(list(by.values()), [70, 50], [30, 20]))
    assert s.r2_mean == pytest.approx(np.mean(r2))


def test_summarise_one_value():
    s = summarise("l", 3, [0.4])
    assert s.r2_mean == 0.4
    assert math.isnan(s.r2_std)
    assert all(math.isnan(x) for x in s.r2_ci95)


def test_summarise_median_and_floor_count():
    """One split at -40 drags the mean; the median (numpy's, of the stored values) does not."""
    by = {"a": [0.91, 0.93, -40.0, 0.92], "b": [0.99, 0.98, 0.97]}
    r2 = by["a"] + by["b"]
    s = summarise("head", 1280, r2, r2_by_class=by, n_constant=1, n_floored=5)
    assert s.n_floored == 5 and s.n_constant == 1
    assert s.r2_median == float(np.median(np.array(s.r2))) == 0.93
    assert s.r2_mean == pytest.approx(np.mean(r2)) and s.r2_mean < -4
    assert math.isnan(summarise("l", 3, [0.4, math.nan]).r2_median)
    assert LayerScore.from_dict(s.to_dict()) == s
    assert s.to_dict()["r2_median"] == 0.93
