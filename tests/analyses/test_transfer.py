"""Transfer with single-unit heads: mapping, kappa, Wilcoxon, splits and a planted chain."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats
from skimage.draw import disk
from sklearn.metrics import cohen_kappa_score

from rcvlab import DataError, RcvlabError, load_model
from rcvlab.analyses.transfer import TransferRun, _wilcoxon, nearest_class, parse_variants, transfer
from rcvlab.data.base import ArrayImageSet
from rcvlab.probe.splits import group_split
from rcvlab.report.transfer import write_transfer_run

MAGS = {"5X": 5, "10X": 10, "20X": 20, "40X": 40}


def disc_patches(n_slides=12, per_class=6, size=32, seed=0):
    """One dark disc per patch; radius grows with magnification (area ~ m²), slides = groups."""
    rng = np.random.default_rng(seed)
    imgs, areas, classes, groups = [], [], [], []
    for s in range(n_slides):
        for mag, m in MAGS.items():
            for _ in range(per_class):
                r = 0.33 * m * rng.uniform(0.85, 1.15)
                img = rng.integers(200, 240, (size, size, 3)).astype(np.uint8)
                c = size / 2 + rng.uniform(-1, 1, 2) * max(0.0, size / 2 - r - 1)
                rr, cc = disk(tuple(c), r, shape=(size, size))
                img[rr, cc] = (60, 30, 90)
                imgs.append(img)
                areas.append(float(len(rr)))
                classes.append(mag)
                groups.append(f"slide{s}")
    return ArrayImageSet(imgs, {"nuclei_area": areas}, classes=classes, groups=groups)


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


def test_nearest_class_and_kappa_by_hand():
    means = {"5X": 21.37, "10X": 67.3, "40X": 913.82}
    got = nearest_class(np.array([0.0, 44.0, 45.0, 400.0, 500.0, 5000.0]), means)
    assert got.tolist() == ["5X", "5X", "10X", "10X", "40X", "40X"]
    true = np.array(["5X", "10X", "10X", "40X"])
    pred = np.array(["5X", "10X", "40X", "40X"])
    # observed agreement 3/4; chance = (1/4*1/4 + 2/4*1/4 + 1/4*2/4) = 5/16
    assert cohen_kappa_score(true, pred) == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16))


def test_wilcoxon_matches_scipy():
    a = [5.0, 6.0, 7.5, 5.5, 6.2, 5.9]
    b = [7.0, 6.5, 9.0, 8.0, 6.1, 7.7]
    runs = [TransferRun("pruned:x", s, "x", 2, v, {}, 0, 0, 0, 1) for s, v in enumerate(a)]
    runs += [TransferRun("pretrained", s, "y", 2, v, {}, 0, 0, 0, 1) for s, v in enumerate(b)]
    vs = parse_variants(
        ["pretrained", "pruned:dark"], load_model(Chain(), input_size=32, layers=["dark", "squash"])
    )
    vs[1] = vs[1].__class__("pruned:x", "pruned", "dark")
    w = _wilcoxon(runs, vs)["pruned_vs_pretrained"]
    ref = stats.wilcoxon(a, b)
    assert w["statistic"] == ref.statistic and w["p"] == pytest.approx(ref.pvalue) and w["n"] == 6


def test_group_split_is_disjoint_and_close_to_shares():
    g = np.repeat([f"s{i}" for i in range(30)], np.arange(5, 35))
    tr, va, te = group_split(g, (0.6, 0.2, 0.2), seed=3)
    assert len(tr) + len(va) + len(te) == len(g)
    sets = [set(g[i]) for i in (tr, va, te)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert abs(len(tr) / len(g) - 0.6) < 0.05 and abs(len(te) / len(g) - 0.2) < 0.05
    with pytest.raises(DataError, match="groups"):
        group_split(["a", "a", "b"], (0.6, 0.2, 0.2))


def test_planted_chain_pruned_beats_full(tmp_path):
    data = disc_patches()
    m = load_model(Chain().eval(), input_size=32, layers=["dark", "squash"])
    res = transfer(data, m, ["pretrained", "scratch", "pruned:dark"], seeds=5, epochs=30, lr=1e-2)
    s = res.summary_frame()
    assert s.loc["pruned:dark", "mae_mean"] < 0.5 * s.loc["pretrained", "mae_mean"]
    assert s.loc["pruned:dark", "kappa_mean"] > s.loc["pretrained", "kappa_mean"]
    assert list(res.class_mean_area) == ["5X", "10X", "20X", "40X"]
    means = list(res.class_mean_area.values())
    assert means == sorted(means)
    w = res.wilcoxon["pruned_vs_pretrained"]
    assert w["n"] == 5 and w["p"] == pytest.approx(0.0625)  # all 5 pairs favour pruned
    files = write_transfer_run(tmp_path, res)
    assert all(p.exists() for p in files.values())
    md = files["summary.md"].read_text()
    assert "pruned:dark" in md and "Wilcoxon" in md
    heads = torch.load(files["heads.pt"])
    assert len(heads) == 15


def test_transfer_input_errors():
    data = disc_patches(n_slides=3, per_class=2)
    m = load_model(Chain().eval(), input_size=32, layers=["dark", "squash"])
    with pytest.raises(RcvlabError, match="Unknown transfer variant"):
        transfer(data, m, ["pretrained", "pruned"])
    with pytest.raises(RcvlabError, match="Unknown mode 'finetuned'"):
        transfer(data, m, ["pretrained"], mode="finetuned")
    no_groups = ArrayImageSet(data.images, data.measures, classes=data.classes)
    with pytest.raises(DataError, match="group"):
        transfer(no_groups, m, ["pretrained"])


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
        data,
        m,
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
    # the source model is untouched: pruning copies before training
    for k, v in m.module.state_dict().items():
        assert torch.equal(v, before[k])
    # the same seed gives the same run
    again = transfer(
        data, m, ["pruned:a"], seeds=1, mode="finetune", epochs=2, lr=1e-2, batch_size=8
    )
    assert again.runs[0].mae == pytest.approx(res.runs[4].mae)
