"""Leave-one-class-out profiles and the measure as array, tensor or Series.

Every number is recomputed with scikit-learn (StandardScaler fitted on the training rows,
LinearRegression / Ridge, r2_score) or scipy, never with rcvlab's own fitting code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe import ProfileResult, probe_layers
from rcvlab.probe.profile import check_measure, measure_array

CLASSES = ("bird", "car", "kite")


def _planted(n_per: int = 40, seed: int = 0, signs=(1.0, 1.0, 1.0)):
    """Three classes; layer 'same' encodes r identically, 'flip' with a per-class sign."""
    rng = np.random.default_rng(seed)
    k = len(signs)
    n = n_per * k
    classes = np.repeat(np.array(CLASSES[:k]), n_per)
    y = rng.uniform(0.02, 0.9, n)
    sign = np.repeat(np.asarray(signs), n_per)
    noise = 0.01 * rng.standard_normal((n, 2))
    feats = {
        "noise": rng.standard_normal((n, 6)),
        "same": np.column_stack([2.0 * y + 0.01 * rng.standard_normal(n), noise]),
        "flip": np.column_stack([sign * y + 0.01 * rng.standard_normal(n), noise]),
    }
    return feats, y, classes


def _sklearn_loco(X, y, classes, model):
    """Held-out R² per class (sorted), fitted on the other classes' standardised rows."""
    out = {}
    for c in sorted(set(classes.tolist())):
        te = classes == c
        sc = StandardScaler().fit(X[~te])
        fit = model().fit(sc.transform(X[~te]), y[~te])
        out[c] = r2_score(y[te], fit.predict(sc.transform(X[te])))
    return out


# -- the planted findings -------------------------------------------------------------------


def test_identical_encoding_reads_held_out_classes():
    feats, y, classes = _planted()
    res = probe_layers(feats, y, classes=classes, split="leave-one-class-out", shuffled=False)
    same = res.score("same")
    assert res.split == "leave-one-class-out"
    assert list(same.r2_by_class) == list(CLASSES)
    assert all(len(v) == 1 for v in same.r2_by_class.values())
    assert min(same.r2) > 0.99 and same.r2_mean > 0.99
    assert res.best_layer == "same"
    assert res.score("noise").r2_mean < 0.2


def test_class_specific_sign_fails_held_out_but_not_per_class():
    feats, y, classes = _planted(signs=(1.0, -1.0))
    loco = probe_layers(feats, y, classes=classes, split="leave-one-class-out", shuffled=False)
    per = probe_layers(feats, y, classes=classes, reps=5, shuffled=False)  # the default split
    assert per.split == "per-class"
    assert per.score("flip").r2_mean > 0.99 and min(per.score("flip").r2) > 0.99
    flip = loco.score("flip")
    assert max(flip.r2) < 0 and flip.r2_mean < -1  # anti-correlated predictions
    assert loco.score("same").r2_mean > 0.99
    # three classes, one flipped: the flipped class is never read held out
    feats3, y3, classes3 = _planted(signs=(1.0, 1.0, -1.0))
    loco3 = probe_layers(feats3, y3, classes=classes3, split="leave-one-class-out")
    assert loco3.score("flip").r2_by_class["kite"][0] < 0
    assert loco3.score("flip").r2_mean < 0
    per3 = probe_layers(feats3, y3, classes=classes3, reps=3)
    assert per3.score("flip").r2_mean > 0.99


# -- independent recomputation --------------------------------------------------------------


def test_loco_r2_equals_sklearn_ols_and_ridge():
    rng = np.random.default_rng(3)
    feats, y, classes = _planted(n_per=30, seed=3)
    X = feats["noise"] + np.outer(y, rng.standard_normal(6))  # a noisy, partial encoding
    feats = {"x": X, "same": feats["same"]}
    for regressor, alpha, model in [
        ("ols", None, LinearRegression),
        ("ridge", 3.0, lambda: Ridge(alpha=3.0)),
    ]:
        res = probe_layers(
            feats,
            y,
            classes=classes,
            split="leave-one-class-out",
            regressor=regressor,
            alpha=alpha,
            shuffled=False,
        )
        want = _sklearn_loco(X, y, classes, model)
        got = res.score("x")
        for c in CLASSES:
            assert got.r2_by_class[c][0] == pytest.approx(want[c], rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(got.r2, [want[c] for c in CLASSES], rtol=1e-9, atol=1e-9)
        assert got.r2_mean == pytest.approx(np.mean(list(want.values())), rel=1e-12)
    # the Student-t interval over classes, no Nadeau–Bengio term (disjoint held-out sets)
    v = np.array(got.r2)
    lo, hi = st.t.interval(0.95, v.size - 1, loc=v.mean(), scale=st.sem(v))
    assert got.r2_ci95 == pytest.approx((lo, hi), rel=1e-10)
    assert got.r2_std == pytest.approx(v.std(ddof=1))
    assert res.data["n_train"] == {"bird": 60, "car": 60, "kite": 60}
    assert res.data["n_test"] == {"bird": 30, "car": 30, "kite": 30}
    assert res.data["n_by_class"] == {"bird": 30, "car": 30, "kite": 30}
    assert res.data["classes"] == list(CLASSES)
    assert res.reps == 1 and np.isnan(res.test_fraction)


def test_baselines_use_the_same_held_out_splits():
    feats, y, classes = _planted(n_per=25, seed=5)
    rnd = {k: np.random.default_rng(9).standard_normal(v.shape) + 0.3 * v for k, v in feats.items()}
    res = probe_layers(
        feats,
        y,
        classes=classes,
        split="leave-one-class-out",
        random_features=rnd,
        seed=4,
    )
    want = _sklearn_loco(rnd["flip"], y, classes, LinearRegression)
    np.testing.assert_allclose(
        res.score("flip", "random").r2, [want[c] for c in CLASSES], rtol=1e-9, atol=1e-9
    )
    # shuffled: the measure permuted within each class (the documented seed children), once
    y_shuf = y.copy()
    children = np.random.SeedSequence(4).spawn(len(CLASSES))
    for c, child in zip(CLASSES, children, strict=True):
        rows = np.flatnonzero(classes == c)
        y_shuf[rows] = y[rows][np.random.default_rng(child.spawn(2)[1]).permutation(rows.size)]
    assert not np.array_equal(y_shuf, y)
    for c in CLASSES:  # every class keeps its own values
        assert sorted(y_shuf[classes == c]) == sorted(y[classes == c])
    want = _sklearn_loco(feats["same"], y_shuf, classes, LinearRegression)
    got = res.score("same", "shuffled")
    np.testing.assert_allclose(got.r2, [want[c] for c in CLASSES], rtol=1e-9, atol=1e-9)
    assert got.r2_mean < 0


def test_nan_rows_and_unequal_classes():
    feats, y, classes = _planted(n_per=30, seed=2)
    y = y.copy()
    y[[0, 1, 40]] = np.nan
    keep = ~np.isnan(y)
    res = probe_layers(feats, y, classes=classes, split="leave-one-class-out", shuffled=False)
    want = _sklearn_loco(feats["noise"][keep], y[keep], classes[keep], LinearRegression)
    np.testing.assert_allclose(
        res.score("noise").r2, [want[c] for c in CLASSES], rtol=1e-9, atol=1e-9
    )
    assert res.data["n_by_class"] == {"bird": 28, "car": 29, "kite": 30}
    assert res.data["n_test"] == {"bird": 28, "car": 29, "kite": 30}
    assert res.data["n_train"] == {"bird": 59, "car": 58, "kite": 57}
    assert res.data["n_excluded_nan"] == 3


# -- the split option, defaults and the result ----------------------------------------------


def test_split_defaults_and_pooled_with_classes():
    feats, y, classes = _planted(n_per=20)
    assert probe_layers(feats, y, reps=2).split == "pooled"
    per = probe_layers(feats, y, reps=2, classes=classes)
    assert per == probe_layers(feats, y, reps=2, classes=classes, split="per-class")
    pooled = probe_layers(feats, y, reps=2, classes=classes, split="pooled")
    plain = probe_layers(feats, y, reps=2)
    assert pooled.profiles == plain.profiles and pooled.data["classes"] == []


def test_loco_json_round_trip_frame_and_old_files(tmp_path):
    feats, y, classes = _planted(n_per=20)
    res = probe_layers(feats, y, classes=classes, split="leave-one-class-out")
    res = res.with_meta(model="toy", measure="scale_ratio")
    back = ProfileResult.from_json(res.to_json(tmp_path / "profile_loco.json"))
    assert back.split == "leave-one-class-out" and back.reps == 1
    assert np.isnan(back.test_fraction)
    assert back.profiles == res.profiles and back.data == res.data
    frame = back.to_frame()
    assert set(frame["split"]) == {"leave-one-class-out"}
    assert set(frame["n_reps"]) == {3}
    # a profile.json without the field: per-class when it lists classes, else pooled
    d = res.to_dict()
    del d["split"]
    assert ProfileResult.from_dict(d).split == "per-class"
    d["data"] = {**d["data"], "classes": []}
    assert ProfileResult.from_dict(d).split == "pooled"


def test_split_errors_are_one_line():
    feats, y, classes = _planted(n_per=20)
    cases = [
        (dict(split="leave-one-out", classes=classes), UnknownNameError, "unknown split"),
        (dict(split="loco", classes=classes), UnknownNameError, "leave-one-class-out"),
        (dict(split="leave-one-class-out"), RcvlabError, "needs class labels"),
        (dict(split="per-class"), RcvlabError, "split='pooled'"),
        (
            dict(split="leave-one-class-out", classes=np.repeat("bird", 60)),
            DataError,
            r"at least 2 classes, got 1 \('bird'\)",
        ),
    ]
    for kw, err, msg in cases:
        with pytest.raises(err, match=msg) as info:
            probe_layers(feats, y, **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="at least 2 classes"):
        check_measure(y, np.repeat("bird", 60), split="leave-one-class-out")
    with pytest.raises(DataError, match=r"only 5 usable images for class 'kite'"):
        short = y.copy()
        short[45:] = np.nan
        check_measure(short, classes, split="leave-one-class-out")
    check_measure(short, classes, split="pooled")  # 45 values in all


# -- the measure as array, tensor or Series --------------------------------------------------


def test_measure_as_tensor_or_series_equals_array():
    feats, y, classes = _planted(n_per=20)
    y32 = y.astype(np.float32)
    want = probe_layers(feats, y32, reps=2, classes=classes, split="leave-one-class-out")
    t = torch.tensor(y32, requires_grad=True)
    inputs = [
        t,  # with a gradient: detached
        pd.Series(y32, index=np.arange(100, 160)),  # index ignored: by position
        pd.Series(y32).astype("Float64"),
    ]
    for given in inputs:
        got = probe_layers(feats, given, reps=2, classes=classes, split="leave-one-class-out")
        assert got.profiles == want.profiles
    np.testing.assert_array_equal(measure_array(t.to(torch.float64)), y32.astype(np.float64))
    bf = t.detach().to(torch.bfloat16)
    np.testing.assert_array_equal(measure_array(bf), bf.float().numpy().astype(np.float64))
    # missing values of a nullable Series are NaN: excluded like NaN in an array
    s = pd.Series(y, dtype="Float64")
    s[[3, 7]] = pd.NA
    arr = y.copy()
    arr[[3, 7]] = np.nan
    a = probe_layers(feats, s, reps=2)
    b = probe_layers(feats, arr, reps=2)
    assert a.profiles == b.profiles and a.data["n_excluded_nan"] == 2


@pytest.mark.parametrize(
    ("bad", "msg"),
    [
        (torch.ones(60, 2), r"1-D array \(one value per image\), got \(60, 2\)"),
        (np.ones((60, 1)), r"got \(60, 1\)"),
        (pd.Series(["a"] * 60), "must be numeric .*dtype object"),
        (np.array(["0.1"] * 60), "must be numeric .*dtype <U3"),
        (np.full(60, 1 + 2j), "must be numeric .*complex128"),
        (torch.full((60,), 1 + 2j), "must be numeric .*complex"),
        (pd.Series(pd.date_range("2020", periods=60)), "must be numeric"),
    ],
)
def test_bad_measures_are_one_line_errors(bad, msg):
    feats, _, _ = _planted(n_per=20)
    with pytest.raises(DataError, match=msg) as info:
        probe_layers(feats, bad)
    assert "\n" not in str(info.value)


# -- layer_profile: the split option, and features read back from the cache -----------------


class _RedLevel(torch.nn.Module):
    """``level`` reads the red channel (which carries the measure), ``blue`` only noise."""

    def __init__(self) -> None:
        super().__init__()
        self.level = torch.nn.Conv2d(3, 1, 1)
        self.blue = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            for conv, ch in ((self.level, 0), (self.blue, 2)):
                conv.weight.zero_()
                conv.weight[:, ch] = 1.0

    def forward(self, x):
        return torch.cat([self.level(x), self.blue(x)], 1).mean((2, 3))


def _red_data(n: int = 60, n_classes: int = 3):
    from rcvlab.data.base import ArrayImageSet

    rng = np.random.default_rng(0)
    level = rng.uniform(0, 1, n)
    imgs = np.empty((n, 16, 16, 3), np.uint8)
    imgs[..., 0] = np.round(40 + 180 * level)[:, None, None]
    imgs[..., 1] = 128
    imgs[..., 2] = rng.integers(0, 256, (n, 16, 16))
    level = (imgs[:, 0, 0, 0].astype(float) - 40) / 180
    classes = np.array(CLASSES[:n_classes])[np.arange(n) % n_classes]
    return ArrayImageSet(imgs, {"level": level}, classes=classes)


def _counting(net):
    from rcvlab import load_model

    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    m = load_model(net, input_size=16, layers=["level", "blue"], mean=(0,) * 3, std=(1,) * 3)
    return m, calls


def test_layer_profile_loco_reads_the_cached_features(tmp_path):
    from rcvlab import extract_features
    from rcvlab.analyses import layer_profile

    data = _red_data()
    m, calls = _counting(_RedLevel().eval())
    per = layer_profile(m, data, measure="level", reps=2, cache_dir=tmp_path, baselines=())
    assert per.split == "per-class" and calls
    n_calls = len(calls)
    loco = layer_profile(
        m,
        data,
        measure="level",
        split="leave-one-class-out",
        cache_dir=tmp_path,
        baselines=("shuffled",),
    )
    assert len(calls) == n_calls  # read back from the cache: no forward pass
    assert loco.split == "leave-one-class-out" and loco.best_layer == "level"
    assert loco.score("level").r2_mean > 0.99
    assert loco.extra["feature_cache_key"] == per.extra["feature_cache_key"]
    feats = extract_features(m, data, layers=["level", "blue"], cache_dir=tmp_path)
    want = _sklearn_loco(
        np.asarray(feats["blue"], dtype=np.float64),
        data.measure("level"),
        data.classes,
        LinearRegression,
    )
    np.testing.assert_allclose(
        loco.score("blue").r2, [want[c] for c in CLASSES], rtol=1e-9, atol=1e-9
    )
    pooled = layer_profile(m, data, measure="level", reps=2, cache_dir=tmp_path, per_class=False)
    assert pooled.split == "pooled" and pooled.data["classes"] == []


def test_layer_profile_split_errors_before_any_forward_pass():
    from rcvlab.analyses import layer_profile
    from rcvlab.data.base import ArrayImageSet

    data = _red_data()
    one_class = _red_data(n_classes=1)
    no_class = ArrayImageSet(data.images, {"level": data.measure("level")})
    m, calls = _counting(_RedLevel().eval())
    cases = [
        (data, dict(split="held-out"), UnknownNameError, "unknown split 'held-out'"),
        (no_class, dict(split="leave-one-class-out"), RcvlabError, "needs class labels"),
        (one_class, dict(split="leave-one-class-out"), DataError, "at least 2 classes"),
        (data, dict(split="per-class", per_class=False), RcvlabError, "contradicts"),
    ]
    for d, kw, err, msg in cases:
        with pytest.raises(err, match=msg):
            layer_profile(m, d, measure="level", reps=2, **kw)
    assert calls == []
