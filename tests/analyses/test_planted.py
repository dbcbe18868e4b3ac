"""A planted concept end to end: images -> one-pass features -> RCV profile."""

import numpy as np
import torch
import torch.nn as nn

from rcvlab import extract_features, load_model, probe_layers
from rcvlab.analyses import layer_profile
from rcvlab.data.base import ArrayImageSet


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
