"""Corrected-GAP masks against independent paths: interval arithmetic and brute force."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab.errors import RcvlabError
from rcvlab.features.pooling import corrected_gap, layer_pools
from rcvlab.features.receptive import padding_masks
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import load_model

# (kind, kernel, stride, (pad_before, pad_after), dilation, ceil_mode) of a chain
CHAIN = [
    ("conv", 3, 1, (1, 1), 1, False),
    ("conv", 3, 2, (1, 1), 1, False),
    ("max", 3, 2, (1, 1), 1, True),
    ("conv", 3, 1, (2, 2), 2, False),
    ("conv", 1, 1, (0, 0), 1, False),
    ("zpad", 0, 1, (0, 1), 1, False),  # TensorFlow "same" before a stride-2 conv
    ("conv", 3, 2, (0, 0), 1, False),
    ("avg", 3, 1, (1, 1), 1, False),
]
# pooling with padding (and ceil-mode windows running past the input) straight on the
# image: nothing before it pads, so only the pooling's own padding can exclude positions
POOL_CHAIN = [
    ("max", 3, 2, (1, 1), 1, True),
    ("conv", 3, 1, (0, 0), 1, False),
    ("avg", 3, 2, (1, 1), 1, True),
    ("conv", 3, 1, (0, 0), 2, False),
    ("max", 2, 2, (0, 0), 1, True),
]


class Chain(nn.Module):
    def __init__(self, chain) -> None:
        super().__init__()
        mods, c = [], 3
        for kind, k, s, (p, q), d, ceil in chain:
            if kind == "conv":
                mods.append(nn.Conv2d(c, 4, k, s, p, d))
                c = 4
            elif kind == "max":
                mods.append(nn.MaxPool2d(k, s, p, ceil_mode=ceil))
            elif kind == "avg":
                mods.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil))
            else:
                mods.append(nn.ZeroPad2d((p, q, p, q)))
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)


def _interval_valid(chain, size: int, upto: int) -> np.ndarray:
    """Positions (1-D) of layer ``upto`` whose window never reads padding, by arithmetic."""
    valid = np.ones(size, dtype=bool)  # the input: every pixel is real
    n = size
    for kind, k, s, (p, q), d, ceil in chain[: upto + 1]:
        if kind == "zpad":
            valid = np.concatenate([np.zeros(p, bool), valid, np.zeros(q, bool)])
            n = n + p + q
            continue
        span = d * (k - 1) + 1
        if ceil:
            out = -(-(n + p + q - span) // s) + 1
            if (out - 1) * s >= n + p:
                out -= 1
        else:
            out = (n + p + q - span) // s + 1
        new = np.zeros(out, dtype=bool)
        for j in range(out):
            taps = [j * s - p + t * d for t in range(k)]
            new[j] = all(0 <= i < n and valid[i] for i in taps)
        valid, n = new, out
    return valid


@pytest.mark.parametrize("size", [62, 80])
@pytest.mark.parametrize("chain", [CHAIN, POOL_CHAIN], ids=["convs", "pools"])
def test_chain_masks_match_interval_arithmetic(chain, size):
    net = Chain(chain).eval()
    specs = [LayerSpec(f"l{i}", f"body.{i}") for i in range(len(chain))]
    masks = padding_masks(net, specs, size)
    for i, spec in enumerate(specs):
        v = _interval_valid(chain, size, i)
        assert masks[spec.name].shape == (v.size, v.size)
        np.testing.assert_array_equal(masks[spec.name], np.outer(v, v), err_msg=spec.name)
        assert 0 < v.sum() < v.size  # some, not all positions excluded
    # the padding really grows: the last layers keep fewer positions than the first
    assert masks["l0"].sum() > masks[specs[-1].name].sum() > 0


def _embedding_check(module: nn.Module, specs, size: int, margin: int, seed: int = 0) -> None:
    """Brute force: put the image inside random surroundings (a larger input, shifted by a
    multiple of every stride). Positions claimed free of padding must not change; every
    excluded position must change (the padding it read is now something else)."""
    masks = padding_masks(module, specs, size)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    big = 3 * torch.randn(1, 3, size + 2 * margin, size + 2 * margin, generator=g)
    big = big.double()
    big[:, :, margin : margin + size, margin : margin + size] = x
    from rcvlab.features.hooks import capture

    module = module.double().eval()
    outs = []
    for inp in (x, big):
        with capture(module, specs, lambda t: t) as out, torch.no_grad():
            module(inp)
        outs.append({k: v[0] for k, v in out.items()})
    checked = 0
    for s in specs:
        a, b = outs[0][s.name], outs[1][s.name]
        stride = (b.shape[-1] - a.shape[-1]) // 2
        assert (b.shape[-1] - a.shape[-1]) % 2 == 0
        bb = b[:, stride : stride + a.shape[-2], stride : stride + a.shape[-1]]
        diff = (a - bb).abs().amax(dim=0).numpy()
        m = masks[s.name]
        scale = float(a.abs().max())
        assert np.all(diff[m] <= 1e-9 * max(scale, 1.0)), s.name
        assert np.all(diff[~m] > 1e-9 * max(scale, 1.0)), s.name
        checked += int(m.sum())
    assert checked > 0


def test_inception_first_layers_brute_force():
    model = load_model("inception_v3", "random", seed=0)
    # the cumulative stride up to mixed1 is 8, so a margin of 16 keeps positions aligned
    _embedding_check(model.module, model.resolve(["mixed0", "mixed1"]), 83, 16)
    specs = [LayerSpec("c2b", "Conv2d_2b_3x3"), LayerSpec("c4a", "Conv2d_4a_3x3")]
    _embedding_check(model.module, specs, 83, 16)


def test_resnet_first_blocks_brute_force():
    model = load_model("resnet50", "random", seed=0)
    specs = model.resolve(["add1", "add3", "add4", "add5"])  # add4: first stride-2 block
    _embedding_check(model.module, specs, 64, 32)
    specs = [LayerSpec("maxpool", "maxpool")]  # pooling with padding
    _embedding_check(model.module, specs, 64, 32)


def test_efficientnet_same_padding_brute_force():
    # TensorFlow 'same' padding is asymmetric and depends on the input size's parity: a
    # margin of 32 keeps every stage's parity, so the padding is the same in both inputs.
    model = load_model("efficientnet_lite0", "random", seed=0)
    _embedding_check(model.module, model.resolve(["stem", "block2a", "block3a"]), 64, 32)


def test_masks_are_weight_independent_and_cached():
    a = load_model("mobilenet_v2", "random", seed=0)
    b = load_model("mobilenet_v2", "random", seed=1)
    specs = a.resolve(["features.4", "features.9", "pre-softmax"])
    ma, mb = padding_masks(a.module, specs, 96), padding_masks(b.module, specs, 96)
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k])
    assert ma["pre-softmax"].shape == () and not ma["pre-softmax"]
    ma["features.4"][:] = False  # callers get copies: the cache is not changed
    assert padding_masks(a.module, specs, 96)["features.4"].any()


def test_corrected_gap_pool_is_the_masked_mean():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:4] = True
    got = corrected_gap(mask)(x)
    want = x[:, :, 1:3, 1:4].mean(dim=(2, 3))
    torch.testing.assert_close(got, want)
    irregular = mask.copy()
    irregular[0, 0] = True  # not a rectangle
    want = x.permute(0, 2, 3, 1)[:, torch.as_tensor(irregular)].mean(1)
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(corrected_gap(irregular)(layout), want)
    tokens = x.flatten(2).transpose(1, 2)  # (n, tokens, c)
    torch.testing.assert_close(
        corrected_gap(mask.ravel())(tokens), tokens[:, torch.as_tensor(mask.ravel())].mean(1)
    )
    empty = corrected_gap(np.zeros((4, 5), dtype=bool))(x)
    assert empty.shape == (2, 3) and torch.isnan(empty).all()
    with pytest.raises(ValueError, match="does not fit"):
        corrected_gap(mask)(torch.zeros(1, 3, 5, 5))


def test_too_small_input_is_a_clear_error():
    model = load_model("inception_v3", "random", seed=0)
    with pytest.raises(RcvlabError, match=r"Cannot run .* 40x40"):
        layer_pools("corrected-gap", model.module, model.resolve(["mixed10"]), 40)


def test_extract_corrected_gap_is_the_masked_mean_of_the_map(rng, tmp_path):
    from PIL import Image

    from rcvlab.features.extract import extract_features

    m = load_model("resnet50", "random", input_size=64)
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    kw = dict(layers=["add1", "add4"], cache_dir=tmp_path)
    f = extract_features(m, imgs, pooling="corrected-gap", **kw)
    g = extract_features(m, imgs, pooling="gap", **kw)
    masks = padding_masks(m.module, m.resolve(["add1", "add4"]), 64)
    assert f.positions == {k: int(v.sum()) for k, v in masks.items()}
    assert 0 < f.positions["add4"] < masks["add4"].size
    mod = m.module
    x = m.preprocessing([Image.fromarray(i) for i in imgs])
    with torch.inference_mode():
        h = mod.maxpool(mod.relu(mod.bn1(mod.conv1(x))))
        b = mod.layer1[0]
        r = b.bn3(b.conv3(b.relu(b.bn2(b.conv2(b.relu(b.bn1(b.conv1(h))))))))
        s = r + b.downsample(h)  # add1: the pre-ReLU sum
    want = s[:, :, masks["add1"]].mean(-1).numpy()
    np.testing.assert_allclose(f["add1"], want, atol=1e-5)
    assert not np.allclose(f["add1"], g["add1"], atol=1e-3)  # the border does matter
    assert f.key != g.key  # different cache entries


def test_layers_without_positions_are_listed_not_probed(rng, tmp_path):
    from rcvlab.analyses import layer_profile
    from rcvlab.data.base import ArrayImageSet

    m = load_model("mobilenet_v2", "random", input_size=64)
    imgs = rng.integers(0, 256, (14, 64, 64, 3), dtype=np.uint8)
    data = ArrayImageSet(imgs, measures={"m": rng.normal(size=14)})
    res = layer_profile(
        m,
        data,
        measure="m",
        layers=["features.2", "features.14"],
        pooling="corrected-gap",
        baselines=(),
        reps=2,
    )
    assert [s.layer for s in res.profiles["model"]] == ["features.2"]
    assert res.extra["no_positions"] == ["features.14"]
    assert res.extra["positions"]["features.14"] == 0
    from rcvlab.report.run import write_profile_run

    files = write_profile_run(tmp_path, [res])
    assert "no position free of padding in features.14 at 64 px" in files["report.html"].read_text()
    with pytest.raises(RcvlabError, match=r"no position free of padding|nothing to average"):
        layer_profile(
            m, data, measure="m", layers=["features.14"], pooling="corrected-gap", baselines=()
        )
