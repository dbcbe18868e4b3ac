"""RCV relevance: sensitivities along the RCV and the bidirectional relevance score Br."""

from __future__ import annotations

import math

import numpy as np
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
    res = relevance(red_model, data, "conv", ["red", "minus_red"], target_class=1, reps=5, seed=0)
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
    res0 = relevance(red_model, data, "conv", "red", target_class=0, reps=5)
    assert res0.score("red").br < 0
    np.testing.assert_allclose(res0.sensitivities["red"], -s, rtol=1e-6)


def test_sensitivity_is_the_gradient_along_the_all_rows_rcv(red_model):
    data = red_images(n=16, seed=1)
    res = relevance(red_model, data, "conv", "red", target_class=1, reps=3, regressor="ridge")
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
        relevance(red_model, data, "conb", "red", target_class=1)
    with pytest.raises(RcvlabError, match="vector"):
        relevance(red_model, data, "fc", "red", target_class=1)  # the logits
    with pytest.raises(RcvlabError, match="out of range"):
        relevance(red_model, data, "conv", "red", target_class=3)
    with pytest.raises(DataError, match="'const' is constant"):
        relevance(red_model, data, "conv", "const", target_class=1)
    with pytest.raises(UnknownNameError, match="Unknown measure"):
        relevance(red_model, data, "conv", "blue", target_class=1)
    with pytest.raises(DataError, match="usable images"):
        relevance(red_model, data, "conv", "red", target_class=1, min_images=20)
    m = load_model("mobilenet_v2", "random", input_size=64)
    with pytest.raises(RcvlabError, match="out of range: the model has 1000"):
        relevance(m, data, "features.4", "red", target_class=1000)
    with pytest.raises(RcvlabError, match="softmax"):
        relevance(m, data, "softmax", "red", target_class=1)


def test_registry_model_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    data = ArrayImageSet(imgs, {"level": rng.uniform(0, 1, 8)})
    m = load_model("mobilenet_v2", "random", input_size=64)
    res = relevance(
        m,
        data,
        "features.7",
        ["level", "colourfulness"],
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
    assert res.extra["layer_shape"][0] == res.directions["level"].shape[0] == 64
    f = res.to_frame()
    assert set(f.columns) >= {"measure", "r2_mean", "sens_mean", "sens_std", "br", "p_value", "n"}
    assert '"kind": "relevance"' in res.to_json()


def test_reported_numbers_match_independent_computations(red_model):
    """R² from probe_layers on the same features, fraction positive and Br from numpy."""
    from rcvlab.probe.profile import probe_layers

    base = red_images(n=30, seed=3)
    imgs = [base.images[i] for i in range(len(base))]
    # green minus blue: the RCV has opposite signs on those channels, and logit 2 (their
    # mean) rises or falls with it depending on the image
    g_b = np.array([im[..., 1].mean() - im[..., 2].mean() for im in imgs])
    data = ArrayImageSet(imgs, {"red": base.measure("red"), "g_b": g_b})
    res = relevance(red_model, data, "conv", ["red", "g_b"], target_class=2, reps=5, seed=0)
    X = extract_features(red_model, data, ["conv"])["conv"]
    for m in ("red", "g_b"):
        sc, s = res.score(m), res.sensitivities[m]
        ref = probe_layers(
            {"conv": X}, data.measure(m), reps=5, regressor="ridge", seed=0, shuffled=False
        )
        np.testing.assert_allclose(sc.r2, ref.profiles["model"][0].r2, rtol=1e-6, atol=1e-9)
        assert sc.frac_positive == pytest.approx(np.mean(s > 0))
        assert sc.sens_mean == pytest.approx(s.mean())
        assert sc.br == pytest.approx(np.mean(sc.r2) * s.mean() / s.std(ddof=1))
    assert 0 < res.score("g_b").frac_positive < 1  # a mixed case, not only all-positive
