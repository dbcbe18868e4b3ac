"""probe_layers on planted concepts, its baselines, bookkeeping and errors; repeated splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcvlab import __version__
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe import ProfileResult, probe_layers, repeated_splits
from rcvlab.probe.fit import fit_rcv
from rcvlab.probe.profile import check_measure
from rcvlab.probe.stats import r2_score


def _planted(n: int = 120, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.02, 0.9, n)
    b = rng.standard_normal((n, 20)) * 0.02
    b[:, :3] += np.outer(y, [2.0, -1.0, 0.5])
    feats = {
        "a": rng.standard_normal((n, 30)).astype(np.float32),
        "b": (b + 5.0).astype(np.float32),
        "c": rng.standard_normal((n, 150)),  # d > n_train: min-norm regime
    }
    return feats, y


# -- splits ---------------------------------------------------------------------------------


def test_splits_deterministic_disjoint_and_sized():
    a = repeated_splits(441, 5, 0.3, seed=7)
    b = repeated_splits(441, 5, 0.3, seed=7)
    c = repeated_splits(441, 5, 0.3, seed=8)
    assert len(a) == 5
    for (tr, te), (tr2, te2) in zip(a, b, strict=True):
        np.testing.assert_array_equal(tr, tr2)
        np.testing.assert_array_equal(te, te2)
        assert te.size == 132 and tr.size == 309
        assert np.intersect1d(tr, te).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(441))
    assert not np.array_equal(a[0][1], c[0][1])
    assert not np.array_equal(a[0][1], a[1][1])  # repetitions differ


def test_splits_group_disjoint():
    groups = np.repeat(np.arange(12), 5)  # 12 source images x 5 patches
    for tr, te in repeated_splits(60, 10, 0.25, seed=0, groups=groups):
        assert set(groups[tr]).isdisjoint(groups[te])
        assert te.size == 3 * 5  # round(12 * 0.25) groups
        assert tr.size + te.size == 60


def test_splits_too_small():
    with pytest.raises(DataError, match="at least 2"):
        repeated_splits(4, 3, 0.3, seed=0)  # 1 test image
    with pytest.raises(DataError, match="2 groups"):
        repeated_splits(6, 3, 0.3, seed=0, groups=np.zeros(6))
    with pytest.raises(DataError, match="test_fraction"):
        repeated_splits(10, 3, 1.5, seed=0)


# -- planted concept ------------------------------------------------------------------------


def test_planted_concept_is_found_with_baselines():
    feats, y = _planted()
    rng = np.random.default_rng(5)
    random = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    res = probe_layers(feats, y, reps=5, seed=1, random_features=random)
    assert res.layers == ["a", "b", "c"]
    assert set(res.profiles) == {"model", "random", "shuffled"}
    assert res.best_layer == "b"
    assert res.score("b").r2_mean > 0.95
    assert res.score("a").r2_mean < 0.2
    assert res.score("c").r2_mean < 0.2
    for kind in ("random", "shuffled"):
        for s in res.profiles[kind]:
            assert s.r2_mean < 0.1, (kind, s.layer, s.r2_mean)
    b = res.score("b")
    assert len(b.r2) == 5 and b.dim == 20 and b.n_constant == 0
    assert b.r2_ci95[0] < b.r2_mean < b.r2_ci95[1]
    assert res.data["n_train"] == {"all": 84} and res.data["n_test"] == {"all": 36}


def test_matches_manual_fit_on_the_same_splits():
    """Each repetition's R² is fit_rcv on that split, scored with r2_score."""
    feats, y = _planted(60)
    res = probe_layers(feats, y, reps=3, seed=4, shuffled=False)
    (child,) = np.random.SeedSequence(4).spawn(1)
    splits = repeated_splits(60, 3, 0.3, child.spawn(2)[0])
    for layer in ("a", "b", "c"):
        X = feats[layer]
        want = [r2_score(y[te], fit_rcv(X[tr], y[tr]).predict(X[te])) for tr, te in splits]
        np.testing.assert_allclose(res.score(layer).r2, want, rtol=1e-9, atol=1e-9)


def test_shuffled_baseline_uses_model_features_and_same_splits():
    feats, y = _planted(80)
    res = probe_layers(feats, y, reps=4, seed=2, regressor="ridge", alpha=1.0)
    shuffled = res.profiles["shuffled"]
    assert [s.layer for s in shuffled] == ["a", "b", "c"]
    assert [s.dim for s in shuffled] == [30, 20, 150]
    # The shuffled R² differ from the model's (a permutation per repetition was applied).
    assert res.score("b", "shuffled").r2 != res.score("b").r2
    again = probe_layers(feats, y, reps=4, seed=2, regressor="ridge", alpha=1.0)
    assert again.to_json() == res.to_json()


def test_ridge_cv_records_chosen_alphas():
    feats, y = _planted(60)
    res = probe_layers(feats, y, reps=2, regressor="ridge", layers=["b"])
    chosen = res.extra["ridge_alpha_chosen"]
    assert set(chosen) == {"model", "shuffled"}
    assert len(chosen["model"]["b"]) == 2
    assert res.alpha is None and res.regressor == "ridge"


def test_lasso_profile_runs():
    feats, y = _planted(60)
    res = probe_layers(feats, y, reps=2, regressor="lasso", alpha=0.01, layers=["b", "a"])
    assert res.layers == ["b", "a"]
    assert res.score("b").r2_mean > 0.9


def test_tiny_scale_features_are_not_dropped():
    """Random-weights trap (METHOD.md §8): 1e-9-scale features carry y and must be used."""
    feats, y = _planted()
    tiny = {"deep": feats["b"].astype(np.float64) * 1e-9, "flat": np.ones((y.size, 4))}
    flat_and_signal = np.column_stack([tiny["deep"], np.full(y.size, 2.0)])
    res = probe_layers({**tiny, "mixed": flat_and_signal}, y, reps=3, shuffled=False)
    assert res.score("deep").r2_mean > 0.95
    assert res.score("deep").n_constant == 0
    assert res.score("flat").n_constant == 4
    assert res.score("flat").r2_mean < 0.05  # predicts the training mean
    assert res.score("mixed").n_constant == 1
    assert res.score("mixed").r2_mean > 0.95


# -- classes, exclusions, errors -----------------------------------------------------------


def test_per_class_pooling_order():
    feats, y = _planted(90)
    classes = np.array(["zebra"] * 30 + ["albatross"] * 30 + ["kite"] * 30)
    res = probe_layers(feats, y, reps=3, classes=classes, shuffled=False)
    b = res.score("b")
    assert list(b.r2_by_class) == ["albatross", "kite", "zebra"]
    assert b.r2 == b.r2_by_class["albatross"] + b.r2_by_class["kite"] + b.r2_by_class["zebra"]
    assert len(b.r2) == 9
    assert res.data["classes"] == ["albatross", "kite", "zebra"]
    assert res.data["n_by_class"] == {"albatross": 30, "kite": 30, "zebra": 30}
    assert res.data["n_test"] == {"albatross": 9, "kite": 9, "zebra": 9}
    # The kite block: splits drawn within the kite rows, from the second class's seed.
    rows = np.flatnonzero(classes == "kite")
    child = np.random.SeedSequence(0).spawn(3)[1]
    X, yk = feats["b"][rows], y[rows]
    want = [
        r2_score(yk[te], fit_rcv(X[tr], yk[tr]).predict(X[te]))
        for tr, te in repeated_splits(30, 3, 0.3, child.spawn(2)[0])
    ]
    np.testing.assert_allclose(b.r2_by_class["kite"], want, rtol=1e-9, atol=1e-9)


def test_nan_rows_are_excluded_and_counted():
    feats, y = _planted(100)
    y = y.copy()
    y[[3, 7]] = np.nan
    feats["a"] = feats["a"].copy()
    feats["a"][10, 4] = np.nan
    feats["c"] = feats["c"].copy()
    feats["c"][11, 0] = np.inf
    res = probe_layers(feats, y, reps=2, shuffled=False)
    assert res.data["n_excluded_nan"] == 4
    assert res.data["n_used"] == 96 and res.data["n_images"] == 100
    assert res.score("b").r2_mean > 0.95
    assert res.data["n_test"]["all"] == round(96 * 0.3)


def test_too_few_images_message():
    feats, y = _planted(40)
    classes = np.array(["a"] * 32 + ["b"] * 8)
    with pytest.raises(DataError, match=r"only 8 usable images for class 'b' \(need at least 10\)"):
        probe_layers(feats, y, classes=classes)
    y = y.copy()
    y[:35] = np.nan
    with pytest.raises(DataError, match=r"only 5 usable images \(need at least 10\); 35 exc"):
        probe_layers(feats, y)
    feats["c"] = feats["c"].copy()
    feats["c"][35:38] = np.nan
    with pytest.raises(DataError, match=r"38 excluded \(35 with NaN measure, 3 with non-finite"):
        probe_layers(feats, y)


def test_constant_measure_message():
    feats, _ = _planted(40)
    with pytest.raises(DataError, match=r"measure is constant \(value 0.5\).*nothing to regress"):
        probe_layers(feats, np.full(40, 0.5))
    y = np.r_[np.full(20, 0.25), np.linspace(0, 1, 20)]
    classes = np.repeat(["x", "y"], 20)
    with pytest.raises(DataError, match=r"constant \(value 0.25\) for class 'x'"):
        probe_layers(feats, y, classes=classes)


def test_layer_and_shape_errors():
    feats, y = _planted(40)
    with pytest.raises(UnknownNameError, match="Did you mean 'b'"):
        probe_layers(feats, y, layers=["bb"])
    with pytest.raises(UnknownNameError, match="unknown layer 'bb'; available: a, b, c"):
        probe_layers(feats, y, layers="bb")
    with pytest.raises(DataError, match="layers is empty; name at least one layer"):
        probe_layers(feats, y, layers=[])
    with pytest.raises(DataError, match=r"layers are repeated: \['b', 'b'\]"):
        probe_layers(feats, y, layers=["b", "b"])
    with pytest.raises(UnknownNameError, match="missing from random_features"):
        probe_layers(feats, y, random_features={"a": feats["a"], "b": feats["b"]})
    with pytest.raises(DataError, match="shape"):
        probe_layers({"a": feats["a"][:30]}, y)
    with pytest.raises(DataError, match="infinite"):
        probe_layers(feats, np.r_[np.inf, y[1:]])


def test_json_round_trip():
    feats, y = _planted(60)
    classes = np.repeat(["k1", "k2"], 30)
    res = probe_layers(feats, y, reps=3, classes=classes, random_features=feats)
    res = res.with_meta(model="toy", measure="scale_ratio", command="pytest")
    assert res.command == res.meta["command"] == "pytest" and res.model == "toy"
    back = ProfileResult.from_json(res.to_json())
    assert back == res
    assert back.best_layer == res.best_layer == "b"
    assert json.loads(res.to_json())["kind"] == "profile"


def test_n_jobs_does_not_change_results():
    feats, y = _planted(60)
    one = probe_layers(feats, y, reps=3, n_jobs=1)
    two = probe_layers(feats, y, reps=3, n_jobs=2)
    assert one == two


# -- outlier splits: the min_std guard and the median ----------------------------------------


def _near_constant_layer(n: int = 40, d: int = 60, seed: int = 0):
    """A min-norm layer (d > n) that carries y, with column 0 barely varying except on one
    image: a split with that image in its test side is ruined by the standardisation."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 1, n)
    X = np.outer(y, rng.standard_normal(d)) + 0.05 * rng.standard_normal((n, d))
    X[:, 0] = 1e-3 * rng.standard_normal(n)
    X[7, 0] = 1.0
    return X, y


def test_near_constant_column_ruins_a_split_without_the_guard_and_not_with_it():
    """Class p has the near-constant column with one outlier image, class q does not: as in
    the demo, one class's mean falls while the other's stays near 1."""
    Xp, yp = _near_constant_layer(seed=0)
    Xq, yq = _near_constant_layer(seed=1)
    Xq[7, 0] = 0.0  # no outlier in class q
    X, y = np.vstack([Xp, Xq]), np.r_[yp, yq]
    classes = np.repeat(["p", "q"], 40)
    kw = dict(reps=10, seed=0, classes=classes, shuffled=False)
    plain = probe_layers({"L": X}, y, **kw)
    guard = probe_layers({"L": X}, y, **kw, min_std=0.1)
    p, g = plain.score("L"), guard.score("L")
    # The splits that fail are exactly those with the outlier image (row 7) on the test side.
    child = np.random.SeedSequence(0).spawn(2)[0]
    splits = repeated_splits(40, 10, 0.3, child.spawn(2)[0])
    ruined = np.array([7 in te for _, te in splits])
    assert 0 < ruined.sum() < 10
    r2_p = np.array(p.r2_by_class["p"])
    assert np.all(r2_p[ruined] < -1) and np.all(r2_p[~ruined] > 0.99)
    assert min(p.r2_by_class["q"]) > 0.99
    assert p.r2_mean < 0.5 and p.r2_median > 0.99  # the mean shows it, the median is robust
    # With the guard no split fails, and the clean splits are as good as before.
    assert min(g.r2) > 0.9 and g.r2_mean > 0.95
    np.testing.assert_allclose(np.array(g.r2_by_class["p"])[~ruined], r2_p[~ruined], atol=0.01)
    assert p.n_floored == 0 and g.n_floored >= 1
    assert plain.min_std is None and guard.min_std == 0.1


def test_median_and_floor_count_in_frame_and_json():
    X, y = _near_constant_layer()
    feats, _ = _planted(40)
    res = probe_layers({"L": X, **feats}, y, reps=6, seed=1, min_std=0.1)
    frame = res.to_frame()
    assert list(frame.columns) == list(ProfileResult.frame_columns)
    for row in frame.itertuples():
        s = res.score(row.layer, row.profile)
        assert row.r2_median == pytest.approx(float(np.median(np.array(s.r2))), abs=0)
        assert row.r2_mean == pytest.approx(float(np.mean(np.array(s.r2))), rel=1e-12)
        assert row.n_floored == s.n_floored
    assert frame.loc[(frame.profile == "model") & (frame.layer == "L"), "n_floored"].item() >= 1
    d = json.loads(res.to_json())
    assert d["min_std"] == 0.1
    for kind, scores in d["profiles"].items():
        for sd in scores:
            assert sd["r2_median"] == float(np.median(sd["r2"]))
            assert sd["n_floored"] == res.score(sd["layer"], kind).n_floored
    assert ProfileResult.from_json(res.to_json()) == res


def test_guard_option_is_validated_before_any_fit():
    feats, y = _planted(40)
    with pytest.raises(RcvlabError, match="min_std must be a number in"):
        probe_layers(feats, y, min_std=3)
    with pytest.raises(RcvlabError, match="min_images must be an integer >= 2"):
        probe_layers(feats, y, min_images=0)


def test_meta_is_provenance():
    feats, y = _planted(40)
    res = probe_layers(feats, y, reps=2, seed=3, shuffled=False, layers=["b"])
    assert res.meta["seed"] == 3 and res.meta["rcvlab_version"] == __version__
    assert {"numpy", "scikit-learn", "torch"} <= set(res.meta["versions"])


OLD_PROFILE_JSON = """{"rcvlab_version": "0.1.0", "command": "rcvlab probe --model mobilenet_v2",
"model": "mobilenet_v2", "weights": "imagenet", "data": {"source": "scaleset", "n_images": 6},
"measure": "scale_ratio", "regressor": "ridge", "alpha": 1.0, "reps": 2, "test_fraction": 0.3,
"seed": 3, "profiles": {"model": [{"layer": "features.0", "dim": 32, "r2": [0.5, -1.0, null],
"r2_mean": 0.1, "r2_std": 0.2, "r2_ci95": [0.0, 0.3], "r2_norm_mean": 0.4, "r2_by_class": {},
"n_constant": 2}, {"layer": "features.1", "dim": 16, "r2": [0.7, 0.8], "r2_mean": 0.75,
"r2_std": 0.07, "r2_ci95": [0.1, 0.9], "r2_norm_mean": 0.8, "r2_by_class": {},
"n_constant": 0}]}, "best_layer": "features.1", "extra": {"pooling": "gap"}}"""


def test_reads_profile_json_of_the_previous_version(tmp_path):
    """The layout before the result contract (written by rcvlab 0.1.0's ProfileResult)."""
    path = tmp_path / "profile.json"
    path.write_text(OLD_PROFILE_JSON)
    for src in (path, OLD_PROFILE_JSON):
        res = ProfileResult.from_json(src)
        assert res.command == "rcvlab probe --model mobilenet_v2"
        assert res.rcvlab_version == "0.1.0" and res.meta["seed"] == 3
        assert res.model == "mobilenet_v2" and res.regressor == "ridge" and res.alpha == 1.0
        assert res.extra == {"pooling": "gap"} and res.min_std is None
        s = res.score("features.0")
        assert s.r2[:2] == (0.5, -1.0) and np.isnan(s.r2[2]) and s.n_constant == 2
        assert s.n_floored == 0 and np.isnan(s.r2_median)
        assert res.score("features.1").r2_median == pytest.approx(0.75)
        assert res.best_layer == "features.1"
    again = ProfileResult.from_json(res.to_json())
    assert again == res


def test_not_a_profile_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"not a complete 'profile' result.*no model profile"):
        ProfileResult.from_json('{"profiles": {"random": []}}')
    with pytest.raises(DataError, match="Cannot read"):
        ProfileResult.from_json(tmp_path / "missing.json")


# -- the measure, checked on its own --------------------------------------------------------


def test_check_measure_finds_what_probe_layers_would():
    y = np.linspace(0, 1, 30)
    classes = np.repeat(["a", "b", "c"], 10)
    assert check_measure(y, classes).shape == (30,)
    with pytest.raises(DataError, match=r"constant \(value 0.5\) over all images"):
        check_measure(np.full(30, 0.5))
    with pytest.raises(DataError, match=r"constant \(value 2\) for class 'b'"):
        check_measure(np.r_[y[:10], np.full(10, 2.0), y[20:]], classes)
    with pytest.raises(DataError, match=r"no value \(all NaN\) for the 30 images"):
        check_measure(np.full(30, np.nan))
    with pytest.raises(DataError, match="infinite for 1 image"):
        check_measure(np.r_[np.inf, y[1:]])
    short = y.copy()
    short[20:25] = np.nan
    with pytest.raises(
        DataError, match=r"only 5 usable images for class 'c' \(need at least 10\); 5 excl"
    ):
        check_measure(short, classes)
    check_measure(short)  # 25 values in all: enough when pooled
    with pytest.raises(DataError, match="only 25 usable images"):
        check_measure(short, min_images=26)
    with pytest.raises(DataError, match="1-D"):
        check_measure(np.ones((5, 2)))
