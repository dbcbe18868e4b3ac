"""Transfer with single-unit heads: every printed number recomputed from predictions.csv with
scikit-learn / scipy, the nearest-class mapping by hand, bad options, the result contract."""

import importlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy import stats
from skimage.draw import disk
from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error

from rcvlab import DataError, RcvlabError, UnknownNameError, load_model
from rcvlab.analyses.transfer import (
    PREDICTION_COLUMNS,
    TransferResult,
    TransferRun,
    nearest_class,
    paired_wilcoxon,
    transfer,
)
from rcvlab.data.base import ArrayImageSet, FileImageSet
from rcvlab.prune import PruneError, prune
from rcvlab.report.transfer import TRANSFER_FILES, write_transfer_run

# the module (``rcvlab.analyses.transfer`` the attribute is the function)
transfer_module = importlib.import_module("rcvlab.analyses.transfer")
MAGS = {"5X": 5, "10X": 10, "20X": 20, "40X": 40}
ORDER = list(MAGS)  # magnification order: the label order of the quadratic kappa


def disc_patches(n_slides=12, per_class=6, size=32, seed=0, areas=None):
    """One dark disc per patch; radius grows with magnification (area ~ m²), slides = groups.

    ``areas`` (class -> value) replaces the measured disc area by a given measure.
    """
    rng = np.random.default_rng(seed)
    imgs, measure, classes, groups, ids = [], [], [], [], []
    for s in range(n_slides):
        for mag, m in MAGS.items():
            for k in range(per_class):
                r = 0.33 * m * rng.uniform(0.85, 1.15)
                img = rng.integers(200, 240, (size, size, 3)).astype(np.uint8)
                c = size / 2 + rng.uniform(-1, 1, 2) * max(0.0, size / 2 - r - 1)
                rr, cc = disk(tuple(c), r, shape=(size, size))
                img[rr, cc] = (60, 30, 90)
                imgs.append(img)
                measure.append(float(len(rr)) if areas is None else areas[mag])
                classes.append(mag)
                groups.append(f"slide{s}")
                ids.append(f"slide{s}/{mag}_{k}.png")
    return ArrayImageSet(imgs, {"nuclei_area": measure}, classes=classes, groups=groups, ids=ids)


class Chain(nn.Module):
    """``dark`` is linear in the disc's area after GAP; ``squash`` (a global max) is not."""

    def __init__(self):
        super().__init__()
        self.dark = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.dark.weight.copy_(
                torch.tensor([[-1.0, -1.0, -1.0], [-2.0, 0.0, -1.0]]).view(2, 3, 1, 1)
            )
            self.dark.bias.copy_(torch.tensor([1.5, 1.4]))
        self.relu = nn.ReLU()
        self.squash = nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        return self.squash(self.relu(self.dark(x))).flatten(1)


def chain_model():
    return load_model(Chain().eval(), input_size=32, layers=["dark", "squash"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A planted-chain transfer run written to a folder (5 seeds, three variants)."""
    data = disc_patches()
    res = transfer(
        chain_model(), data, ["pretrained", "scratch", "pruned:dark"], seeds=5, epochs=30, lr=1e-2
    )
    out = tmp_path_factory.mktemp("transfer")
    files = write_transfer_run(out, res)
    return data, res, files


# -- the nearest-class mapping -------------------------------------------------------------


def test_nearest_class_by_hand():
    means = {"5X": 21.37, "10X": 67.3, "40X": 913.82}
    got = nearest_class(np.array([0.0, 44.0, 45.0, 400.0, 500.0, 5000.0]), means)
    # midpoints 44.335 and 490.56
    assert got.tolist() == ["5X", "5X", "10X", "10X", "40X", "40X"]


def test_class_means_come_from_the_training_split_and_map_by_hand(tmp_path):
    # every patch of a class has the same measure: the class means are these numbers,
    # whatever the split, and the mapping's boundaries are the midpoints 25, 100 and 400
    areas = {"5X": 10.0, "10X": 40.0, "20X": 160.0, "40X": 640.0}
    data = disc_patches(n_slides=6, per_class=2, areas=areas)
    res = transfer(chain_model(), data, ["pruned:dark"], seeds=2, epochs=30, lr=1e-2)
    assert res.class_mean_area == areas and list(res.class_mean_area) == ORDER
    write_transfer_run(tmp_path, res)
    p = pd.read_csv(tmp_path / "predictions.csv")
    x = p.predicted_area.to_numpy()
    by_hand = np.where(x < 25, "5X", np.where(x < 100, "10X", np.where(x < 400, "20X", "40X")))
    assert p.predicted_class.tolist() == by_hand.tolist()
    assert set(p.predicted_class) != {p.predicted_class[0]}  # the boundaries are exercised


def test_class_means_are_the_training_groups_means(run):
    data, res, _ = run
    train = set(res.data["groups"]["train"])
    frame = pd.DataFrame(
        {
            "g": data.groups,
            "c": data.classes,
            "y": data.measures["nuclei_area"],
        }
    )
    expected = frame[frame.g.isin(train)].groupby("c").y.mean()
    assert res.class_mean_area == pytest.approx(expected.to_dict(), rel=1e-12)
    assert list(res.class_mean_area) == ORDER


# -- every printed number, from the written files -------------------------------------------


def test_predictions_csv_is_every_test_prediction(run):
    data, res, files = run
    p = pd.read_csv(files["predictions.csv"])
    assert list(p.columns) == list(PREDICTION_COLUMNS)
    assert len(p) == 3 * 5 * res.data["n_test"]  # every variant, seed and test patch
    groups = res.data["groups"]
    assert set(p.group) == set(groups["test"])
    assert not set(groups["test"]) & (set(groups["train"]) | set(groups["val"]))
    # the path, group, class and measure of each row are the data's
    row = {i: k for k, i in enumerate(data.ids)}
    k = p.path.map(row).to_numpy()
    assert (data.groups[k] == p.group).all() and (data.classes[k] == p.true_class).all()
    np.testing.assert_array_equal(data.measures["nuclei_area"][k], p.true_area)


def test_every_metric_matches_sklearn_from_predictions_csv(run):
    _, res, files = run
    p = pd.read_csv(files["predictions.csv"], dtype={"true_class": str, "predicted_class": str})
    table = pd.read_csv(files["transfer.csv"]).set_index(["variant", "seed"])
    by_class = pd.read_csv(files["transfer_by_class.csv"]).set_index(["variant", "seed", "class"])
    saved = json.loads(files["transfer.json"].read_text())
    saved_runs = {(r["variant"], r["seed"]): r for r in saved["runs"]}
    ref = []
    for (v, s), g in p.groupby(["variant", "seed"], sort=False):
        m = {
            "variant": v,
            "seed": s,
            "mae": mean_absolute_error(g.true_area, g.predicted_area),
            "accuracy": accuracy_score(g.true_class, g.predicted_class),
            "kappa": cohen_kappa_score(g.true_class, g.predicted_class, labels=ORDER),
            "kappa_quadratic": cohen_kappa_score(
                g.true_class, g.predicted_class, labels=ORDER, weights="quadratic"
            ),
        }
        for c, gc in g.groupby("true_class"):
            m[f"mae_{c}"] = mean_absolute_error(gc.true_area, gc.predicted_area)
            assert by_class.loc[(v, s, c), "mae"] == pytest.approx(m[f"mae_{c}"], rel=1e-12)
            assert by_class.loc[(v, s, c), "n_test"] == len(gc)
            assert saved_runs[(v, s)]["mae_by_class"][c] == pytest.approx(m[f"mae_{c}"])
        for k in ("mae", "accuracy", "kappa", "kappa_quadratic"):
            assert table.loc[(v, s), k] == pytest.approx(m[k], rel=1e-12), (v, s, k)
            assert saved_runs[(v, s)][k] == pytest.approx(m[k], rel=1e-12)
        assert table.loc[(v, s), "n_test"] == len(g)
        ref.append(m)
    ref = pd.DataFrame(ref)
    assert len(ref) == 15
    # the per-variant summary (Table 2): mean and std (ddof=1) over seeds
    summary = res.summary_frame()
    md = files["summary.md"].read_text()
    for v, g in ref.groupby("variant"):
        for k in ("mae", "accuracy", "kappa", "kappa_quadratic", *(f"mae_{c}" for c in ORDER)):
            mean, std = np.mean(g[k]), np.std(g[k], ddof=1)
            assert summary.loc[v, f"{k}_mean"] == pytest.approx(mean, rel=1e-12)
            assert summary.loc[v, f"{k}_std"] == pytest.approx(std, rel=1e-9)
            if k in ("mae", "accuracy", "kappa", "kappa_quadratic"):
                assert f"{mean:.3f} ({std:.3f})" in md


def test_wilcoxon_matches_scipy_from_the_stored_maes(run):
    files = run[2]
    saved = json.loads(files["transfer.json"].read_text())
    mae = {}
    for r in saved["runs"]:
        mae.setdefault(r["variant"], {})[r["seed"]] = r["mae"]
    assert set(saved["wilcoxon"]) == {"pruned_vs_pretrained", "pruned_vs_scratch"}
    for other in ("pretrained", "scratch"):
        seeds = sorted(mae[other])
        ref = stats.wilcoxon([mae["pruned:dark"][s] for s in seeds], [mae[other][s] for s in seeds])
        w = saved["wilcoxon"][f"pruned_vs_{other}"]
        assert w["statistic"] == pytest.approx(ref.statistic) and w["n"] == 5
        assert w["p"] == pytest.approx(ref.pvalue)


def test_wilcoxon_by_hand_values():
    a = [5.0, 6.0, 7.5, 5.5, 6.2, 5.9]
    b = [7.0, 6.5, 9.0, 8.0, 6.1, 7.7]
    runs = [TransferRun("pruned:x", s, "x", 2, v, {}, 0, 0, 0, 1) for s, v in enumerate(a)]
    runs += [TransferRun("pretrained", s, "y", 2, v, {}, 0, 0, 0, 1) for s, v in enumerate(b)]
    w = paired_wilcoxon(runs, ["pruned:x"])["pruned_vs_pretrained"]
    # differences a - b: -2, -0.5, -1.5, -2.5, +0.1, -1.8; the only positive one has rank 1
    assert w["statistic"] == 1.0 and w["n"] == 6
    assert w["p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    one = paired_wilcoxon(runs[:1] + runs[6:7], ["pruned:x"])["pruned_vs_pretrained"]
    assert math.isnan(one["p"]) and one["n"] == 1


def test_planted_chain_pruned_beats_full(run):
    _, res, files = run
    s = res.summary_frame()
    assert s.loc["pruned:dark", "mae_mean"] < 0.5 * s.loc["pretrained", "mae_mean"]
    assert s.loc["pruned:dark", "kappa_mean"] > s.loc["pretrained", "kappa_mean"]
    means = list(res.class_mean_area.values())
    assert means == sorted(means)
    assert res.wilcoxon["pruned_vs_pretrained"]["p"] == pytest.approx(0.0625)  # 5 of 5 pairs
    assert sorted(p.name for p in files.values()) == sorted(TRANSFER_FILES)
    assert all(p.stat().st_size > 0 for p in files.values())
    assert not list(files["transfer.json"].parent.glob(".*"))  # no temporary file left
    md = files["summary.md"].read_text()
    assert "pruned:dark" in md and "Wilcoxon" in md and "predictions.csv" in md
    heads = torch.load(files["heads.pt"])
    assert len(heads) == 15 and set(heads["pruned:dark/seed0"]) >= {"lin.weight", "x_mean"}


def test_different_split_seeds_give_different_test_sets():
    data = disc_patches(n_slides=8, per_class=1)
    tests = set()
    for seed in range(6):
        res = transfer(chain_model(), data, ["pruned:dark"], seeds=1, epochs=1, seed=seed)
        tests.add(tuple(sorted(res.data["groups"]["test"])))
        assert res.meta["seed"] == seed == res.seed
    assert len(tests) >= 3


# -- the result contract ---------------------------------------------------------------------


def test_json_round_trip_keeps_predictions_not_heads(run, tmp_path):
    _, res, files = run
    back = TransferResult.from_json(files["transfer.json"])
    assert back == res  # heads take no part in equality
    assert back.heads == {} and "heads" not in json.loads(res.to_json())
    pd.testing.assert_frame_equal(back.predictions_frame(), res.predictions_frame())
    pd.testing.assert_frame_equal(back.summary_frame(), res.summary_frame())
    assert back.meta["command"] == "" and back.meta["data_fingerprint"]


def test_reads_a_transfer_json_of_the_old_layout(run):
    _, res, _ = run
    d = json.loads(res.to_json())
    old = {k: v for k, v in d.items() if k not in ("meta", "test", "fractions")}
    old.update(command="rcvlab transfer ...", rcvlab_version="0.8.0", seed=3)
    for r in old["runs"]:
        del r["n_test"], r["predicted_area"]
    back = TransferResult.from_json(json.dumps(old))
    assert back.meta["command"] == "rcvlab transfer ..." and back.seed == 3
    assert back.to_frame()[["variant", "mae", "kappa"]].equals(
        res.to_frame()[["variant", "mae", "kappa"]]
    )
    assert back.predictions_frame().empty and len(back.summary_frame()) == 3


# -- options checked before any work ---------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Make loading a model, measuring and extracting features fail loudly."""

    def boom(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(transfer_module, "load_model", boom)
    monkeypatch.setattr(transfer_module, "extract_features", boom)
    return boom


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"epochs": 0}, "epochs must be a whole number >= 1, got 0"),
        ({"epochs": -1}, "epochs must be a whole number >= 1, got -1"),
        ({"epochs": 2.5}, "epochs must be a whole number >= 1, got 2.5"),
        ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
        ({"seeds": 0}, "seeds must be a whole number >= 1, got 0"),
        ({"seed": -2}, "seed must be a whole number >= 0, got -2"),
        ({"feature_batch_size": 0}, "feature_batch_size must be a whole number >= 1, got 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"lr": -1e-3}, "lr must be a finite number > 0, got -0.001"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
        ({"mode": "finetuned"}, "Unknown mode 'finetuned'"),
        ({"fractions": (0.6, 0.4, 0.0)}, r"fractions .* got \(0.6, 0.4, 0.0\)"),
        ({"fractions": (0.6, 0.2)}, r"fractions .* got \(0.6, 0.2\)"),
        ({"fractions": (0.7, 0.2, 0.2)}, r"fractions .* got \(0.7, 0.2, 0.2\)"),
        ({"device": "bogus"}, "Unknown device 'bogus'"),
    ],
)
def test_bad_options_are_one_line_before_any_work(option, match, no_work):
    data = disc_patches(n_slides=3, per_class=1)
    with pytest.raises(RcvlabError, match=match) as e:
        transfer("inception_v3", data, ["pretrained"], **option)
    assert "\n" not in str(e.value)


def test_variants_and_data_errors():
    data = disc_patches(n_slides=3, per_class=2)
    m = chain_model()
    with pytest.raises(RcvlabError, match="Unknown transfer variant 'pruned'"):
        transfer(m, data, ["pretrained", "pruned"])
    with pytest.raises(RcvlabError, match="Duplicate transfer variants"):
        transfer(m, data, ["pretrained", "pretrained"])
    with pytest.raises(RcvlabError, match="No transfer variants"):
        transfer(m, data, [])
    with pytest.raises(UnknownNameError, match="nope"):
        transfer(m, data, ["pruned:nope"])
    with pytest.raises(RcvlabError, match="model first"):
        transfer(data, m, ["pretrained"])
    no_groups = ArrayImageSet(data.images, data.measures, classes=data.classes)
    with pytest.raises(DataError, match="group"):
        transfer(m, no_groups, ["pretrained"])


@pytest.mark.parametrize("mode", ["linear", "finetune"])
def test_strict_raises_on_an_unreadable_patch_else_leaves_it_out(mode, tmp_path):
    from PIL import Image

    arrays = disc_patches(n_slides=4, per_class=2)
    paths = []
    for i, img in enumerate(arrays.images):
        paths.append(str(tmp_path / f"p{i}.png"))
        Image.fromarray(img).save(paths[-1])
    bad = 0
    with open(paths[bad], "wb") as f:
        f.write(b"not a png")
    kw = dict(classes=arrays.classes, groups=arrays.groups)
    data = FileImageSet(paths, {"nuclei_area": arrays.measures["nuclei_area"]}, **kw)
    m = load_model(Conv2().eval(), input_size=32, layers=["a", "b"])
    opts = dict(seeds=1, epochs=1, mode=mode, batch_size=8, seed=1)
    with pytest.raises(DataError, match=r"p0\.png"):
        transfer(m, data, ["pruned:a"], strict=True, **opts)
    data = FileImageSet(paths, {"nuclei_area": arrays.measures["nuclei_area"]}, **kw)
    res = transfer(m, data, ["pruned:a"], **opts)
    p = res.predictions_frame()
    assert paths[bad] not in set(p.path) and len(p) == res.runs[0].n_test
    assert res.runs[0].n_test == res.data["n_test"] - (paths[bad] in res.test.path)


@pytest.mark.parametrize("layer", ["softmax", "pre-softmax"])
def test_pruned_variant_is_refused_where_prune_refuses(layer, monkeypatch):
    m = load_model("mobilenet_v2", "random", seed=0, input_size=64)
    with pytest.raises(PruneError) as ref:
        prune(m, layer)
    calls = []
    monkeypatch.setattr(transfer_module, "extract_features", lambda *a, **k: calls.append(1))
    data = disc_patches(n_slides=3, per_class=1)
    with pytest.raises(PruneError) as got:
        transfer(m, data, ["pretrained", f"pruned:{layer}"])
    assert str(got.value) == str(ref.value) and not calls


# -- finetune mode ---------------------------------------------------------------------------


class Conv2(nn.Module):
    """Two conv stages: a prunable chain ending in GAP after either."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.b(self.a(x))).flatten(1)


def test_finetune_mode_trains_end_to_end(tmp_path):
    data = disc_patches(n_slides=6, per_class=2)
    m = load_model(Conv2().eval(), input_size=32, layers=["a", "b"])
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    res = transfer(
        m,
        data,
        ["pretrained", "scratch", "pruned:a"],
        seeds=2,
        mode="finetune",
        epochs=2,
        lr=1e-2,
        batch_size=8,
        checkpoint_dir=tmp_path / "ckpt",
    )
    f = res.to_frame()
    assert len(f) == 6 and np.isfinite(f.mae).all() and set(f.best_epoch) <= {1, 2}
    assert f.set_index("variant").loc["pruned:a", "dim"].tolist() == [4, 4]
    assert len(list((tmp_path / "ckpt").glob("*.pt"))) == 6
    assert len(res.predictions_frame()) == 6 * res.data["n_test"]
    # the source model is untouched: pruning copies before training
    for k, v in m.module.state_dict().items():
        assert torch.equal(v, before[k])
    # the same seed gives the same run
    again = transfer(
        m, data, ["pruned:a"], seeds=1, mode="finetune", epochs=2, lr=1e-2, batch_size=8
    )
    assert again.runs[0].mae == pytest.approx(res.runs[4].mae)


def test_a_class_without_training_patches_is_one_line_before_any_work(no_work):
    data = disc_patches(n_slides=4, per_class=1)
    # the 40X patches only on one slide: the split puts it on one side only
    keep = [
        i
        for i, (c, g) in enumerate(zip(data.classes, data.groups, strict=True))
        if c != "40X" or g == "slide0"
    ]
    sub = data.subset(keep)
    for seed in range(6):
        try:
            transfer(chain_model(), sub, ["pretrained"], seed=seed)
        except DataError as e:
            if "no training patch" in str(e):
                assert "40X" in str(e) and "\n" not in str(e)
                return
        except AssertionError:
            continue  # slide0 was in training: work started, as it should
    pytest.fail("no seed put the only 40X slide outside the training split")


def test_a_head_that_never_has_a_finite_validation_mae_is_one_line():
    from rcvlab.analyses.heads import train_head

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3))
    x_val = np.full((4, 3), np.nan)
    with pytest.raises(DataError, match="never reached a finite validation MAE in 2 epoch"):
        train_head(x, x[:, 0], x_val, np.ones(4), seed=0, epochs=2)
