"""RCV relevance: sensitivities along the RCV and the bidirectional relevance score Br."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy import stats

from rcvlab import DataError, RcvlabError, UnknownNameError, extract_features, load_model
from rcvlab.analyses.relevance import relevance, relevance_from_arrays, sensitivity_stats
from rcvlab.data.base import ArrayImageSet
from rcvlab.probe.fit import fit_rcv
from rcvlab.probe.sensitivity import gap_gradient, raw_direction


class RedNet(nn.Module):
    """Channel 0 of ``conv`` is the red input; logit 1 = mean softplus(2 * red) increases with
    redness, nonlinearly (the sensitivity differs per image); logit 0 decreases with it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 2.0)
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[-1.0, 0, 0], [1.0, 0, 0], [0, 0.5, 0.5]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(nn.functional.softplus(self.conv(x)).mean(dim=(2, 3)))


def red_images(n=24, size=16, seed=0):
    """Images whose red level varies (the measure) and green/blue are noise."""
    rng = np.random.default_rng(seed)
    imgs, red = [], []
    for _ in range(n):
        level = rng.uniform(20, 235)
        img = rng.integers(0, 256, (size, size, 3)).astype(np.float64)
        img[..., 0] = np.clip(level + rng.normal(0, 8, (size, size)), 0, 255)
        img = img.astype(np.uint8)
        imgs.append(img)
        red.append(img[..., 0].mean())
    red = np.asarray(red)
    return ArrayImageSet(imgs, {"red": red, "minus_red": -red, "const": np.ones(n)})


@pytest.fixture
def red_model():
    return load_model(RedNet().eval(), input_size=16, layers=["conv", "fc"])


def test_planted_br_positive_and_flips_with_the_measure(red_model):
    data = red_images()
    res = relevance(
        red_model, data, layer="conv", measures=["red", "minus_red"], target_class=1, reps=5, seed=0
    )
    up, down = res.score("red"), res.score("minus_red")
    assert up.r2_mean > 0.9 and up.n == len(data)
    assert up.br > 0 and up.frac_positive == 1.0 and up.p_value < 1e-6
    # negating the measure: same R², sensitivities and Br change sign
    assert down.r2 == pytest.approx(up.r2, abs=1e-12)
    np.testing.assert_allclose(res.sensitivities["minus_red"], -res.sensitivities["red"])
    assert down.br == pytest.approx(-up.br, rel=1e-9)
    # Br by hand from the stored numbers
    s = res.sensitivities["red"]
    assert np.ptp(s) > 0
    r2 = float(np.mean(up.r2))
    assert up.r2_mean == pytest.approx(r2)
    assert up.br == pytest.approx(r2 * s.mean() / s.std(ddof=1), rel=1e-12)
    assert up.sens_std == pytest.approx(s.std(ddof=1))
    assert up.p_value == pytest.approx(stats.ttest_1samp(s, 0).pvalue)
    # the other logit decreases with redness
    res0 = relevance(red_model, data, layer="conv", measures="red", target_class=0, reps=5)
    assert res0.score("red").br < 0
    np.testing.assert_allclose(res0.sensitivities["red"], -s, rtol=1e-6)


def test_sensitivity_is_the_gradient_along_the_all_rows_rcv(red_model):
    data = red_images(n=16, seed=1)
    res = relevance(
        red_model, data, layer="conv", measures="red", target_class=1, reps=3, regressor="ridge"
    )
    X = extract_features(red_model, data, ["conv"])["conv"]
    y = data.measure("red")
    v = raw_direction(fit_rcv(X, y, "ridge"))
    np.testing.assert_allclose(res.directions["red"], v, atol=1e-10)
    assert v[0] > 0.99  # the RCV points along the red channel
    g, _ = gap_gradient(red_model, data, "conv", 1)
    np.testing.assert_allclose(res.sensitivities["red"], g @ v, rtol=1e-10)
    # by hand: d/dt mean softplus(A + t v0) along channel 0 = mean sigmoid(A_0) * v0
    x = red_model.preprocessing([data.load(i) for i in range(len(data))])
    with torch.no_grad():
        a0 = red_model.module.conv(x)[:, 0]
    expect = torch.sigmoid(a0).mean(dim=(1, 2)).double().numpy() * v[0]
    np.testing.assert_allclose(res.sensitivities["red"], expect, rtol=1e-5)
    f = res.per_image_frame()
    assert list(f.columns) == ["measure", "index", "id", "value", "sensitivity"]
    assert f["id"].tolist() == data.ids and np.allclose(f["value"], y)
    t = res.to_frame()
    assert t.loc[0, "br"] == res.score("red").br and t.loc[0, "measure"] == "red"


def test_nan_measures_and_unreadable_rows_are_left_out():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    G = rng.normal(size=(30, 4)) + 1.0
    y = X @ [1.0, 0.5, 0, 0] + rng.normal(scale=0.1, size=30)
    y[3] = np.nan
    X[5] = np.nan  # unreadable image
    res = relevance_from_arrays(X, G, {"m": y}, layer="L", target_class=2, reps=4)
    assert res.score("m").n == 28
    assert 3 not in res.rows["m"] and 5 not in res.rows["m"]
    rows = res.rows["m"]
    rcv = fit_rcv(X[rows], y[rows], "ridge")
    np.testing.assert_allclose(res.sensitivities["m"], G[rows] @ raw_direction(rcv))


def test_sensitivity_stats_edge_cases():
    st = sensitivity_stats([1.0, 2.0, 3.0], 0.5)
    assert st["br"] == pytest.approx(0.5 * 2.0 / 1.0)
    assert st["frac_positive"] == 1.0
    const = sensitivity_stats([2.0, 2.0, 2.0], 0.8)  # linear after the layer
    assert const["br"] == math.inf and math.isnan(const["p_value"])
    noisy = sensitivity_stats([-2.0, -2.0 + 1e-12, -2.0], 0.8)  # rounding noise only
    assert noisy["br"] == -math.inf and noisy["sens_std"] > 0
    assert math.isnan(sensitivity_stats([0.0, 0.0], 0.8)["br"])
    assert math.isnan(sensitivity_stats([1.0], 0.8)["br"])


def test_input_errors(red_model):
    data = red_images(n=12)
    with pytest.raises(UnknownNameError, match="Unknown layer 'conb'"):
        relevance(red_model, data, layer="conb", measures="red", target_class=1)
    with pytest.raises(RcvlabError, match="vector"):
        relevance(red_model, data, layer="fc", measures="red", target_class=1)  # the logits
    with pytest.raises(RcvlabError, match="out of range"):
        relevance(red_model, data, layer="conv", measures="red", target_class=3)
    with pytest.raises(DataError, match="'const' is constant"):
        relevance(red_model, data, layer="conv", measures="const", target_class=1)
    with pytest.raises(UnknownNameError, match="Unknown measure"):
        relevance(red_model, data, layer="conv", measures="blue", target_class=1)
    with pytest.raises(DataError, match="only 12 images have a value"):
        relevance(red_model, data, layer="conv", measures="red", target_class=1, min_images=20)
    m = load_model("mobilenet_v2", "random", input_size=64)
    with pytest.raises(RcvlabError, match="out of range: the model has 1000"):
        relevance(m, data, layer="features.4", measures="red", target_class=1000)
    with pytest.raises(RcvlabError, match="softmax"):
        relevance(m, data, layer="softmax", measures="red", target_class=1)


def test_registry_model_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    data = ArrayImageSet(imgs, {"level": rng.uniform(0, 1, 8)})
    m = load_model("mobilenet_v2", "random", input_size=64)
    res = relevance(
        m,
        data,
        layer="features.7",
        measures=["level", "colourfulness"],
        target_class="tabby",
        reps=3,
        min_images=6,
        batch_size=4,
    )
    assert res.target_class == 281 and res.target_name == "tabby"
    assert res.measures == ["level", "colourfulness"]
    for s in res.scores:
        assert s.n == 8 and len(s.r2) == 3
        assert np.isfinite(res.sensitivities[s.measure]).all()
    assert res.meta["layer_shape"][0] == res.directions["level"].shape[0] == 64
    f = res.to_frame()
    assert set(f.columns) >= {"measure", "r2_mean", "sens_mean", "sens_std", "br", "p_value", "n"}
    assert '"kind": "relevance"' in res.to_json()


def _sklearn_split_r2(X, y, reps, test_fraction, seed):
    """Held-out R² of every repeated split by scikit-learn: StandardScaler on the training
    rows, RidgeCV (efficient leave-one-out over 0.01 ... 1e6, two per decade), r2_score.

    The splits are the documented ones: ``SeedSequence(seed)`` spawns one child per class
    (here one), whose first child seeds ``default_rng``; each repetition permutes the rows
    and the first ``round(n * test_fraction)`` are the test side."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    n = len(y)
    (child,) = np.random.SeedSequence(seed).spawn(1)
    rng = np.random.default_rng(child.spawn(2)[0])
    n_test = int(np.floor(n * test_fraction + 0.5))
    out = []
    for _ in range(reps):
        perm = rng.permutation(n)
        te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        sc = StandardScaler().fit(X[tr])
        fit = RidgeCV(alphas=np.logspace(-2, 6, 17)).fit(sc.transform(X[tr]), y[tr])
        out.append(r2_score(y[te], fit.predict(sc.transform(X[te]))))
    return np.asarray(out)


def test_reported_numbers_match_independent_computations(red_model):
    """R² per split and the RCV's direction from scikit-learn, the printed mean S, fraction
    positive, Br and the t-test from numpy / scipy on the stored sensitivities."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    base = red_images(n=30, seed=3)
    imgs = [base.images[i] for i in range(len(base))]
    # green minus blue: the RCV has opposite signs on those channels, and logit 2 (their
    # mean) rises or falls with it depending on the image
    g_b = np.array([im[..., 1].mean() - im[..., 2].mean() for im in imgs])
    # red with noise: R² well below 1, so that the per-split values tell splits apart
    noisy = base.measure("red") + np.random.default_rng(5).normal(0, 25, len(imgs))
    data = ArrayImageSet(imgs, {"red": base.measure("red"), "g_b": g_b, "noisy_red": noisy})
    names = ["red", "g_b", "noisy_red"]
    res = relevance(red_model, data, layer="conv", measures=names, target_class=2, reps=5, seed=0)
    X = extract_features(red_model, data, ["conv"])["conv"].astype(np.float64)
    g, _ = gap_gradient(red_model, data, "conv", 2)
    assert 0.5 < res.score("noisy_red").r2_mean < 0.95
    for m in names:
        sc, s = res.score(m), res.sensitivities[m]
        y = data.measure(m)
        r2 = _sklearn_split_r2(X, y, 5, 0.3, 0)
        np.testing.assert_allclose(sc.r2, r2, rtol=1e-6)
        np.testing.assert_allclose(1 - np.asarray(sc.r2), 1 - r2, rtol=1e-3)
        assert sc.r2_mean == pytest.approx(r2.mean())
        scaler = StandardScaler().fit(X)
        w = RidgeCV(alphas=np.logspace(-2, 6, 17)).fit(scaler.transform(X), y).coef_
        v = w / scaler.scale_
        v /= np.linalg.norm(v)
        np.testing.assert_allclose(res.directions[m], v, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(s, g @ v, rtol=1e-6, atol=1e-12)
        assert sc.frac_positive == pytest.approx(np.mean(s > 0))
        assert sc.sens_mean == pytest.approx(s.mean())
        assert sc.br == pytest.approx(np.mean(sc.r2) * s.mean() / s.std(ddof=1))
        t = stats.ttest_1samp(s, 0.0)
        assert (sc.t_stat, sc.p_value) == pytest.approx((t.statistic, t.pvalue))
    assert 0 < res.score("g_b").frac_positive < 1  # a mixed case, not only all-positive


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"measures": "const"}, DataError, "'const' is constant"),
        ({"measures": "blue"}, UnknownNameError, "Unknown measure"),
        ({"measures": "inf"}, DataError, "'inf' has 1 infinite value"),
        ({"measures": []}, RcvlabError, "no measures"),
        ({"measures": ["red", "red"]}, RcvlabError, "duplicate"),
        ({"min_images": 20}, DataError, "only 12 images have a value"),
        ({"min_images": 1}, RcvlabError, "min_images must be an integer >= 2"),
        ({"test_fraction": 0.9}, DataError, "1 train / 11 test"),
        ({"test_fraction": 1.5}, RcvlabError, "test_fraction"),
        ({"reps": 0}, RcvlabError, "reps"),
        ({"seed": -1}, RcvlabError, "seed"),
        ({"batch_size": 0}, RcvlabError, "batch_size must be an integer >= 1"),
        ({"regressor": "rigde"}, UnknownNameError, "ridge"),
        ({"regressor": "lasso"}, RcvlabError, "alpha"),
        ({"resize": "stretch"}, RcvlabError, "resize mode"),
        ({"weights": "random"}, RcvlabError, "applies to a model name only"),
        ({"device": "bogus"}, RcvlabError, "Unknown device"),
        ({"layer": "conb"}, UnknownNameError, "Unknown layer 'conb'"),
        ({"layer": "fc"}, RcvlabError, "vector"),
        ({"target_class": 3}, RcvlabError, "out of range"),
        ({"target_class": "tabby"}, UnknownNameError, "no class names"),
    ],
)
def test_options_are_checked_before_the_pass(red_model, monkeypatch, options, error, match):
    """One line each, before the forward/backward pass (the measures before the model)."""
    import importlib

    # the package's ``relevance`` attribute is the function, not the module
    rel = importlib.import_module("rcvlab.analyses.relevance")

    def no_pass(*a, **k):
        raise AssertionError("the gradient pass ran before the options were checked")

    monkeypatch.setattr(rel, "gradient_pass", no_pass)
    base = red_images(n=12)
    inf = base.measure("red").copy()
    inf[4] = np.inf
    data = ArrayImageSet(
        [base.images[i] for i in range(len(base))],
        {k: base.measure(k) for k in ("red", "const")} | {"inf": inf},
    )
    kw = {"layer": "conv", "target_class": 1, "measures": "red", **options}
    with pytest.raises(error, match=match) as e:
        rel.relevance(red_model, data, **kw)
    assert "\n" not in str(e.value)


def test_shape_and_defaults():
    import inspect

    from rcvlab.analyses.relevance import DEFAULT_MEASURES

    sig = inspect.signature(relevance)
    params = list(sig.parameters.values())
    assert [p.name for p in params[:2]] == ["model", "data"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
    assert sig.parameters["layer"].default is inspect.Parameter.empty
    assert sig.parameters["target_class"].default is inspect.Parameter.empty
    assert sig.parameters["measures"].default == DEFAULT_MEASURES == ("scale_ratio",)
    assert "cache_dir" not in sig.parameters  # one pass gives features and gradients


def test_unreadable_images_are_left_out_and_listed(red_model, tmp_path):
    from PIL import Image

    from rcvlab.data.base import FileImageSet
    from rcvlab.report.relevance import write_relevance_run

    base = red_images(n=12, seed=4)
    paths = []
    for i in range(len(base)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(base.images[i]).save(paths[-1])
    paths.append(str(tmp_path / "gone.png"))
    red = np.r_[base.measure("red"), 100.0]
    data = FileImageSet(paths, {"red": red})
    res = relevance(red_model, data, layer="conv", measures="red", target_class=1, reps=3)
    assert res.score("red").n == 12 and 12 not in res.rows["red"]
    assert [s["path"] for s in res.meta["skipped"]] == [paths[-1]]
    assert res.meta["n_readable"] == 12 and res.meta["data_fingerprint"] == data.fingerprint()
    out = tmp_path / "run"
    out.mkdir()
    files = write_relevance_run(out, res)
    assert pd.read_csv(files["skipped.csv"]).path.tolist() == [paths[-1]]
    with pytest.raises(DataError, match=r"gone\.png"):
        relevance(
            red_model, data, layer="conv", measures="red", target_class=1, reps=3, strict=True
        )
