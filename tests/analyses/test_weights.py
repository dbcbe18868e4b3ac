"""compare_weights: texture RCVs of one architecture under several weights (paper 004)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import rcvlab.analyses.weights as aw
from rcvlab import load_model
from rcvlab.analyses.weights import (
    PAPER004_FIGURE3,
    WeightsComparison,
    compare_weights,
    weights_kind,
    weights_label,
)
from rcvlab.data.base import ArrayImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError, WeightsError
from rcvlab.models.layers import PAPER004_LAYERS
from rcvlab.models.registry import IMAGENET_MEAN, IMAGENET_STD

N = 48
THRESHOLDS = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9)


def stripes(n: int = N, seed: int = 0) -> tuple[ArrayImageSet, np.ndarray]:
    """64 px grey images of 1-px vertical stripes ``lo, lo + a, lo, ...``: every horizontal
    neighbour pair differs by ``a``, so the GLCM contrast (distance 1, angle 0) is ``a²``."""
    rng = np.random.default_rng(seed)
    imgs, amp = [], []
    for _ in range(n):
        a = int(rng.integers(4, 70))
        lo = int(rng.integers(10, 250 - a))
        row = np.where(np.arange(64) % 2 == 0, lo, lo + a).astype(np.uint8)
        imgs.append(np.repeat(np.tile(row, (64, 1))[:, :, None], 3, axis=2))
        amp.append(a)
    amp = np.asarray(amp, dtype=float)
    return ArrayImageSet(imgs, {"amplitude": amp}), amp


class EdgeNet(nn.Module):
    """Set weights: a horizontal difference filter (kernel 1x2 on the red channel) with
    both signs and biases ``-t`` per threshold, then ReLU. GAP of ``relu(±d - t)`` is
    piecewise linear in the stripe amplitude, so a linear read-out fits ``a²``."""

    def __init__(self) -> None:
        super().__init__()
        k = len(THRESHOLDS)
        self.conv = nn.Conv2d(3, 2 * k, (1, 2))
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:k, 0, 0] = torch.tensor([-1.0, 1.0])
            self.conv.weight[k:, 0, 0] = torch.tensor([1.0, -1.0])
            self.conv.bias.copy_(-torch.tensor(THRESHOLDS * 2))
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv(x)))


class RandomNet(EdgeNet):
    """The same architecture, seeded random weights."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _model(module: nn.Module):
    return load_model(module.eval(), input_size=64, layers=["conv", "relu", "pool"])


def _count_forwards(models) -> list[int]:
    counts = [0] * len(models)
    for i, m in enumerate(models):

        def hook(_m, _i, _o, i=i):
            counts[i] += 1

        m.module.register_forward_hook(hook)
    return counts


@pytest.fixture(scope="module")
def planted():
    data, amp = stripes()
    models = [_model(EdgeNet()), _model(RandomNet(1))]
    counts = _count_forwards(models)
    res = compare_weights(
        models,
        data,
        measures=("glcm_contrast", "amplitude"),
        labels=["edges", "random"],
        reps=5,
        batch_size=64,
    )
    return res, amp, counts, data


def test_stripes_give_r2_near_one_at_the_first_layer(planted):
    res, amp, _, data = planted
    # the measure rcvlab computed is the planted one
    np.testing.assert_allclose(data.measure("glcm_contrast"), amp**2)
    f = res.to_frame().set_index(["weights", "measure", "layer"])
    assert f.loc[("edges", "glcm_contrast", "relu"), "r2_mean"] > 0.95
    assert f.loc[("edges", "glcm_contrast", "pool"), "r2_mean"] > 0.95
    assert f.loc[("edges", "glcm_contrast", "relu"), "r2_insample"] > 0.95
    # before the ReLU the map's mean is a/63 (32 rising, 31 falling edges): linear in a,
    # so a linear read-out of a² does worse there than after the ReLUs
    conv = f.loc[("edges", "glcm_contrast", "conv"), "r2_mean"]
    assert conv < f.loc[("edges", "glcm_contrast", "relu"), "r2_mean"] - 0.02
    assert f.loc[("edges", "amplitude", "conv"), "r2_mean"] > 0.99
    assert not f.insample_saturated.any()  # 14 features, 48 images


def test_one_extraction_per_weights_serves_every_measure(planted):
    res, _, counts, _ = planted
    assert counts == [1, 1]  # 48 images in one batch of 64, two measures, three layers
    assert len(res.profiles) == 4
    assert [(p.extra["label"], p.measure) for p in res.profiles] == [
        ("edges", "glcm_contrast"),
        ("edges", "amplitude"),
        ("random", "glcm_contrast"),
        ("random", "amplitude"),
    ]
    assert res.profile("random", "amplitude") is res.profiles[3]
    with pytest.raises(UnknownNameError, match="weights: edges, random"):
        res.profile("pretrained", "amplitude")


def test_frame_columns_and_standard_error(planted):
    res = planted[0]
    f = res.to_frame()
    assert list(f.columns) == list(WeightsComparison.frame_columns)
    assert len(f) == 2 * 2 * 3
    assert (f.n_reps == 5).all() and (f.n_images == N).all()
    np.testing.assert_allclose(f.r2_se, f.r2_std / np.sqrt(5))
    s = res.profile("edges", "glcm_contrast").score("relu")
    row = f[(f.weights == "edges") & (f.measure == "glcm_contrast") & (f.layer == "relu")]
    assert row.r2_mean.item() == s.r2_mean and row.dim.item() == 2 * len(THRESHOLDS)


def test_same_splits_for_every_network(planted):
    res = planted[0]
    a = res.profile("edges", "amplitude").data
    b = res.profile("random", "amplitude").data
    assert a["n_train"] == b["n_train"] and a["n_test"] == b["n_test"]


def test_insample_column_is_statsmodels_on_independent_features(planted):
    sm = pytest.importorskip("statsmodels.api")
    res, _, _, data = planted
    # GAP of the pooled map computed by hand from the images (not through rcvlab's hooks)
    x = torch.tensor(np.stack([np.asarray(data.load(i)) for i in range(N)]), dtype=torch.float32)
    x = x.permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        X = EdgeNet().eval()(x).mean(dim=(2, 3)).double().numpy()
    y = data.measure("glcm_contrast")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = sm.OLS(y, sm.add_constant(X)).fit().rsquared
    got = res.insample_score("edges", "glcm_contrast", "pool")
    assert got.r2 == pytest.approx(want, abs=1e-6) and not got.saturated


def test_json_round_trip(planted, tmp_path):
    res = planted[0]
    again = WeightsComparison.from_json(res.to_json())
    pd.testing.assert_frame_equal(again.to_frame(), res.to_frame())
    assert again.labels == res.labels and again.weights == ("custom", "custom")
    d = json.loads(res.to_json(tmp_path / "w.json"))
    assert d["kind"] == "weights_comparison"
    pd.testing.assert_frame_equal(
        WeightsComparison.from_json(tmp_path / "w.json").to_frame(), res.to_frame()
    )


def test_saturation_is_marked_when_features_outnumber_images():
    data, _ = stripes(n=12, seed=3)

    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 16, 3)

        def forward(self, x):
            return torch.relu(self.conv(x))

    m = load_model(Wide().eval(), input_size=64, layers=["conv"])
    res = compare_weights([m], data, measures="glcm_contrast", reps=2, min_images=5)
    row = res.to_frame().iloc[0]
    assert row.dim == 16 and row.n_images == 12
    assert row.insample_saturated and row.r2_insample == 1.0
    assert row.r2_mean < 1  # the held-out R² is not fooled


# -- options and errors, all before any extraction ---------------------------------------------


@pytest.fixture
def no_extraction(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("features were extracted before the options were checked")

    monkeypatch.setattr(aw, "extract_features", never)


def test_bad_options_fail_before_extraction(no_extraction):
    data, _ = stripes(n=20)
    ms = [_model(EdgeNet()), _model(RandomNet(1))]
    cases = [
        (dict(measures="glcm_contrst"), UnknownNameError, "Did you mean 'glcm_contrast'"),
        (dict(layers=["relu", "nope"]), UnknownNameError, "Unknown layer 'nope'"),
        (dict(labels=["a"]), RcvlabError, "labels has 1 names for 2 networks"),
        (dict(measures="glcm_asm,glcm_asm"), RcvlabError, "more than once"),
        (dict(weights=["imagenet"]), RcvlabError, "a list of Models brings its own"),
        (dict(regressor="olz"), UnknownNameError, "unknown regressor"),
        (dict(reps=0), RcvlabError, "reps must be a positive integer"),
        (dict(split="per-class"), RcvlabError, "class"),
        (dict(insample="yes"), RcvlabError, "insample must be True or False"),
    ]
    for kw, err, msg in cases:
        with pytest.raises(err, match=msg) as e:
            compare_weights(ms, data, **kw)
        assert "\n" not in str(e.value), kw


def test_constant_measure_fails_before_extraction(no_extraction):
    data, _ = stripes(n=20)
    flat = ArrayImageSet(data.images, {"flat": np.ones(20)})
    with pytest.raises(DataError, match="constant"):
        compare_weights([_model(EdgeNet())], flat, measures="flat")
    with pytest.raises(DataError, match="constant"):  # 1-px stripes all have ASM 0.5
        compare_weights([_model(EdgeNet())], data, measures="glcm_contrast,glcm_asm")


def test_weights_that_cannot_load_fail_before_extraction(no_extraction, tmp_path):
    data, _ = stripes(n=20)
    with pytest.raises(WeightsError, match=r"missing\.pt"):
        compare_weights("mobilenet_v2", data, weights=[str(tmp_path / "missing.pt"), "random"])


@pytest.mark.slow
def test_inception_defaults_to_the_papers_six_layers(monkeypatch):
    data, _ = stripes(n=20)
    seen = {}

    def record(model, data, layers, **kw):
        seen["layers"] = layers
        raise RuntimeError("stop here")

    monkeypatch.setattr(aw, "extract_features", record)
    with pytest.raises(RuntimeError, match="stop here"):
        compare_weights("inception_v3", data, weights="random", measures="glcm_contrast")
    assert tuple(seen["layers"]) == PAPER004_LAYERS


@pytest.mark.slow
def test_registry_name_with_a_weights_file(tmp_path):
    """A name and two weights entries: the architecture's random init and a state-dict file
    (as a finetuned model.pt would be), each loaded with load_model."""
    data, _ = stripes(n=24, seed=2)
    path = tmp_path / "ft" / "model.pt"
    path.parent.mkdir()
    torch.save(load_model("mobilenet_v2", "random", seed=7).module.state_dict(), path)
    res = compare_weights(
        "mobilenet_v2",
        data,
        weights=f"random,{path}",
        measures="glcm_contrast",
        layers="features.1,features.2",
        reps=2,
        min_images=5,
    )
    assert res.labels == ("random", "finetuned") and res.weights == ("random", str(path))
    f = res.to_frame()
    assert len(f) == 4 and f.r2_insample.notna().all()
    # features.1 has 16 features for 24 images, features.2 has 24: saturated
    assert f.insample_saturated.tolist() == [False, True, False, True]
    # two different networks: different features, different in-sample fits
    assert f.r2_insample.iloc[0] != f.r2_insample.iloc[2]


def test_labels_and_kinds():
    assert weights_label("random-xavier") == "random (Xavier)"
    assert weights_label("imagenet") == "pretrained"
    assert weights_label("runs/ft/model.pt") == "finetuned"
    assert weights_label("runs/ft/model.pt", n_paths=2) == "finetuned (ft/model.pt)"
    assert [weights_kind(w) for w in ("random", "random-xavier", "imagenet", "a/b.pt")] == [
        "random",
        "random",
        "pretrained",
        "finetuned",
    ]
    assert weights_kind("custom") == "other" and weights_kind("finetuned") == "finetuned"


def test_one_model_and_its_twins():
    """One Model with weights=: its twins (Model.twin), here the architecture's own random
    init and the paper's Xavier-uniform one."""
    data, _ = stripes(n=20, seed=4)
    res = compare_weights(
        _model(EdgeNet()),
        data,
        weights="random,random-xavier",
        measures="amplitude",
        layers="relu",
        reps=2,
    )
    assert res.labels == ("random", "random (Xavier)")
    assert res.weights == ("random", "random-xavier")
    f = res.to_frame()
    assert f.r2_insample.iloc[0] != f.r2_insample.iloc[1]


def test_paper_values_have_six_layers_per_concept():
    for rows in PAPER004_FIGURE3.values():
        assert set(rows) == {"glcm_asm", "glcm_contrast", "glcm_correlation"}
        assert all(len(v) == len(PAPER004_LAYERS) for v in rows.values())


# -- figure, run folder, report section -------------------------------------------------------


def paper_shaped() -> WeightsComparison:
    """InceptionV3-shaped arrays at the paper's six layers and its three concepts."""
    rng = np.random.default_rng(1)
    n = 40
    ys = {m: rng.uniform(0, 1, n) for m in ("glcm_asm", "glcm_contrast", "glcm_correlation")}
    base = np.column_stack(list(ys.values()))
    dims = (4, 6, 8, 10, 12, 50)  # the last saturates (50 features, 40 images)
    feats = {
        label: {
            k: np.column_stack([base, rng.standard_normal((n, d - 3))]) * (1 + noise)
            + noise * rng.standard_normal((n, d))
            for k, d in zip(PAPER004_LAYERS, dims, strict=True)
        }
        for label, noise in (("random (Xavier)", 0.8), ("pretrained", 0.3), ("finetuned", 0.1))
    }
    return aw.weights_comparison_from_features(
        feats,
        ys,
        weights=["random-xavier", "imagenet", "runs/ft/model.pt"],
        model="inception_v3",
        reps=3,
        command="rcvlab probe --weights random-xavier,imagenet,runs/ft/model.pt",
    )


def test_plot_has_a_panel_per_concept_with_the_papers_colours():
    from rcvlab.viz.weights import KIND_COLOURS, plot_weights_comparison

    res = paper_shaped()
    fig = plot_weights_comparison(res)
    axes = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in axes] == list(res.measures)
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names[:3] == list(res.labels)
    assert "paper's in-sample R² (all images, no split)" in names
    assert any("saturated" in t for t in names)
    colours = {line.get_color() for line in axes[0].get_lines()}
    assert set(KIND_COLOURS.values()) <= colours
    without = plot_weights_comparison(res, insample=False)
    assert "paper's in-sample R² (all images, no split)" not in [
        t.get_text() for t in without.legends[0].get_texts()
    ]


def test_run_folder_and_section(tmp_path):
    from rcvlab.report.weights import WEIGHTS_FILES, weights_section, write_weights_run

    res = paper_shaped()
    assert res.paper_layers
    files = write_weights_run(tmp_path, res)
    assert list(files) == list(WEIGHTS_FILES) and all(p.is_file() for p in files.values())
    pd.testing.assert_frame_equal(
        pd.read_csv(files["weights_comparison.csv"]), res.to_frame(), check_dtype=False
    )
    assert WeightsComparison.from_json(files["weights_comparison.json"]).labels == res.labels
    md = files["summary.md"].read_text()
    # the paper's Figure-3 values beside ours, per kind of network
    assert "random (Xavier): paper 004" in md and "| 0.867 |" in md
    assert "finetuned: paper 004" in md and "(saturated)" in md
    html = weights_section(res)
    assert html.count('<img src="data:image/png;base64,') == 1
    assert "paper 004" in html and "<script" not in html


def test_paper_values_only_for_inception_at_its_layers():
    from rcvlab.report.weights import summary_markdown

    res = paper_shaped()
    other = WeightsComparison.from_dict({**res.to_dict(), "model": "mobilenet_v2"})
    assert not other.paper_layers and "paper 004" not in summary_markdown(other)


def test_every_network_sees_the_first_ones_input_size(tmp_path):
    """A weights file saved at 96 px beside imagenet-style entries: all loaded at one size
    (a file brings its own size, which must not make the features incomparable)."""
    from rcvlab.models import save_weights

    path = tmp_path / "model.pt"
    save_weights(load_model("mobilenet_v2", "random", seed=3, input_size=96), path)
    assert load_model("mobilenet_v2", path).input_size == 96
    nets = aw._networks("mobilenet_v2", f"random,{path}", seed=0)
    assert [n.input_size for n in nets] == [224, 224]
    nets = aw._networks("mobilenet_v2", f"{path},random-xavier", seed=0)
    assert [n.input_size for n in nets] == [96, 96]
    # the twin of a file model keeps the file's size
    assert load_model("mobilenet_v2", path).twin("random-xavier").input_size == 96
    a = load_model("mobilenet_v2", "random", input_size=64)
    b = load_model("mobilenet_v2", "random-xavier", input_size=96)
    data, _ = stripes(n=12, seed=1)
    with pytest.raises(RcvlabError, match="different input sizes"):
        compare_weights([a, b], data, measures="glcm_contrast", layers="features.1")
