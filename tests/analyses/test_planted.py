"""A planted concept end to end: images -> one-pass features -> RCV profile."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab import extract_features, load_model, probe_layers
from rcvlab.analyses import layer_profile
from rcvlab.data.base import ArrayImageSet
from rcvlab.errors import DataError, RcvlabError


class Planted(nn.Module):
    """``noise`` sees only the blue channel (noise), ``concept`` is linear in the red channel
    (which carries the target), ``scrambled`` folds it with a fast sine (not linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.noise = nn.Conv2d(3, 4, 1, bias=False)
        self.concept = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.noise.weight.zero_()
            self.noise.weight[:, 2] = torch.tensor([1.0, -1.0, 0.5, 2.0]).view(4, 1, 1)
            self.concept.weight.zero_()
            self.concept.weight[:, 0] = torch.tensor([1.0, 2.0, -1.0, 0.5]).view(4, 1, 1)
            self.concept.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        self.scramble = Sine(40.0)

    def forward(self, x):
        n = self.noise(x)
        c = self.concept(x)
        return torch.cat([n, c, self.scramble(c)], 1).mean((2, 3))


class Sine(nn.Module):
    def __init__(self, freq: float) -> None:
        super().__init__()
        self.freq = freq

    def forward(self, x):
        return torch.sin(self.freq * x)


def planted_images(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 1, n)
    imgs = np.empty((n, 32, 32, 3), np.uint8)
    imgs[..., 0] = np.round(40 + 180 * y)[:, None, None]
    imgs[..., 1] = 128
    imgs[..., 2] = rng.integers(0, 256, (n, 32, 32))
    y = (imgs[:, 0, 0, 0].astype(float) - 40) / 180  # exact target after uint8 rounding
    return imgs, y


def test_planted_concept_is_found_at_its_layer():
    net = Planted().eval()
    imgs, y = planted_images()
    m = load_model(net, input_size=32, layers=["noise", "concept"], mean=(0, 0, 0), std=(1, 1, 1))
    feats = extract_features(m, imgs, layers=["noise", "concept", "scramble"])
    res = probe_layers(feats, y, reps=5, seed=0)
    assert res.best_layer == "concept"
    assert res.score("concept").r2_mean > 0.95
    assert res.score("noise").r2_mean < 0.2
    assert res.score("scramble").r2_mean < 0.5
    assert all(s.r2_mean < 0.2 for s in res.profiles["shuffled"])


def test_layer_profile_runs_both_baselines_with_classes():
    net = Planted().eval()
    imgs, y = planted_images(80)
    classes = np.array(["a", "b"] * 40)
    data = ArrayImageSet(imgs, {"level": y}, classes=classes)
    m = load_model(net, input_size=32, layers=["noise", "concept"], mean=(0, 0, 0), std=(1, 1, 1))
    res = layer_profile(m, data, measure="level", reps=3, seed=1)
    assert set(res.profiles) == {"model", "random", "shuffled"}
    assert res.best_layer == "concept" and res.data["classes"] == ["a", "b"]
    assert len(res.score("concept").r2) == 6 and set(res.score("concept").r2_by_class) == {"a", "b"}
    # the twin has re-initialised weights, the same layers and splits
    assert [s.layer for s in res.profiles["random"]] == ["noise", "concept"]
    again = layer_profile(m, data, measure="level", reps=3, seed=1)
    assert again.to_dict()["profiles"] == res.to_dict()["profiles"]  # same seed, same output


def _counting_model(net: nn.Module):
    """The planted model with a forward hook that counts every forward pass."""
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    m = load_model(net, input_size=32, layers=["noise", "concept"], mean=(0, 0, 0), std=(1, 1, 1))
    return m, calls


@pytest.mark.parametrize(
    ("measure", "classes", "message"),
    [
        (np.full(40, 0.3), None, r"constant \(value 0.3\) over all images"),
        (np.full(40, np.nan), None, r"no value \(all NaN\) for the 40 images"),
        (np.r_[np.inf, np.linspace(0, 1, 39)], None, "infinite for 1 image"),
        (np.r_[np.full(34, np.nan), np.linspace(0, 1, 6)], None, "only 6 usable images"),
        (
            np.r_[np.linspace(0, 1, 36), np.full(4, np.nan)],
            np.repeat(["a", "b"], 20),
            r"only 16 usable images for class 'b' \(need at least 17\); 4 excluded",
        ),
    ],
)
def test_bad_measure_is_found_before_any_forward_pass(measure, classes, message):
    imgs, _ = planted_images(40)
    data = ArrayImageSet(imgs, {"level": measure}, classes=classes)
    m, calls = _counting_model(Planted().eval())
    with pytest.raises(DataError, match=message):
        layer_profile(
            m, data, measure="level", reps=2, min_images=17 if classes is not None else 10
        )
    assert calls == []  # no image went through the network
    # a good measure does run the network (the spy works)
    good = ArrayImageSet(imgs, {"level": np.linspace(0, 1, 40)})
    layer_profile(m, good, measure="level", reps=2, baselines=())
    assert len(calls) > 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"min_std": -1.0}, "min_std must be a number"),
        ({"regressor": "olss"}, "Did you mean 'ols'"),
        ({"reps": 0}, "reps must be a positive integer"),
        ({"min_images": 1}, "min_images must be an integer"),
        ({"layers": ["consept"]}, "Unknown layer 'consept'.*Did you mean 'concept'"),
    ],
)
def test_bad_options_are_found_before_any_forward_pass(option, message):
    imgs, y = planted_images(40)
    m, calls = _counting_model(Planted().eval())
    with pytest.raises(RcvlabError, match=message):
        layer_profile(m, ArrayImageSet(imgs, {"level": y}), measure="level", **option)
    assert calls == []


def test_layer_profile_guard_and_provenance():
    imgs, y = planted_images(60)
    data = ArrayImageSet(imgs, {"level": y})
    m = load_model(
        Planted().eval(), input_size=32, layers=["noise", "concept"], mean=(0, 0, 0), std=(1, 1, 1)
    )
    res = layer_profile(m, data, measure="level", reps=3, min_std=0.05, command="rcvlab probe x")
    assert res.min_std == 0.05
    assert res.meta["command"] == "rcvlab probe x" == res.command
    assert res.meta["data_fingerprint"] == data.fingerprint() and res.meta["seed"] == 0
    assert res.best_layer == "concept"
    assert all(s.n_floored >= 0 for s in res.profiles["model"])


def test_bf16_profile_keeps_the_random_baseline_in_fp32_and_records_it(monkeypatch):
    import rcvlab.analyses.profile as profile_module

    net = Planted().eval()
    imgs, y = planted_images(40)
    data = ArrayImageSet(imgs, {"level": y}, classes=np.array(["a", "b"] * 20))
    m = load_model(net, input_size=32, layers=["noise", "concept"], mean=(0, 0, 0), std=(1, 1, 1))
    seen = []
    real = profile_module.extract_features

    def spy(model, data, **kw):
        seen.append((model.weights, kw["precision"]))
        return real(model, data, **kw)

    monkeypatch.setattr(profile_module, "extract_features", spy)
    res = layer_profile(m, data, measure="level", reps=2, seed=0, precision="bf16")
    assert seen == [(m.weights, "bf16"), ("random", "fp32")]
    assert res.meta["precision"] == "bf16" and res.meta["fit_device"] is None
    back = type(res).from_json(res.to_json())
    assert back.meta["precision"] == "bf16"


def test_a_fit_device_that_is_not_here_is_refused_before_the_extraction(monkeypatch):
    import rcvlab.analyses.profile as profile_module

    imgs, y = planted_images(20)
    data = ArrayImageSet(imgs, {"level": y})
    m = load_model(Planted().eval(), input_size=32, layers=["concept"], mean=(0,) * 3, std=(1,) * 3)
    monkeypatch.setattr(profile_module, "extract_features", lambda *a, **k: pytest.fail("ran"))
    for bad in ("bogus", "cuda:7"):
        with pytest.raises(RcvlabError, match=bad):
            layer_profile(m, data, measure="level", regressor="ridge", fit_device=bad)
