"""Per-layer layouts: channels-last maps, token layers, unknown layouts, reshape.

Every expected value is computed here by hand from the module's raw output (a forward hook
written in the test, or timm's own ``forward_intermediates``), never by rcvlab.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab import RcvlabError, UnknownNameError, extract_features, layer_dims, load_model
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import get_pooling, layer_pools
from rcvlab.models.layers import LayerSpec, parse_layout

SWIN = "timm:swin_tiny_patch4_window7_224"
VIT = "timm:vit_small_patch16_224"


@pytest.fixture(scope="module")
def swin():
    return load_model(SWIN, "random")


@pytest.fixture(scope="module")
def vit():
    return load_model(VIT, "random")


def _x(n: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def _pooled(model, layers, x, pooling="gap", **resolve):
    specs = model.resolve(layers, **resolve)
    pool, linear = get_pooling(pooling)
    with capture(model.module, specs, pool, linear=linear) as out, torch.inference_mode():
        model.module(x)
    return {k: v.numpy() for k, v in out.items()}


def _raw(module: nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    got = {}
    h = module.get_submodule(path).register_forward_hook(lambda m, i, o: got.update(y=o))
    try:
        with torch.inference_mode():
            module(x)
    finally:
        h.remove()
    return got["y"]


# -- timm Swin (channels-last stages) and ViT (tokens), random weights ----------------------


def test_swin_stage_dims_are_feature_info_channels(swin):
    chs = [d["num_chs"] for d in swin.module.feature_info]
    assert chs == [96, 192, 384, 768]
    stages = [f"layers.{i}" for i in range(4)]
    assert swin.layers == [*stages, "pre-softmax", "softmax"]
    assert [swin.layouts[s] for s in stages] == ["NHWC"] * 4
    dims = layer_dims(swin)
    assert [dims[s] for s in stages] == chs and dims["pre-softmax"] == 1000


def test_swin_gap_equals_timm_forward_intermediates(swin):
    x = _x()
    feats = _pooled(swin, [f"layers.{i}" for i in range(3)], x)
    with torch.inference_mode():
        inter = swin.module.forward_intermediates(
            x, indices=[0, 1, 2], output_fmt="NCHW", norm=False
        )[1]
    for i in range(3):
        want = inter[i].mean(dim=(2, 3)).numpy()  # timm's own NCHW maps
        np.testing.assert_allclose(feats[f"layers.{i}"], want, rtol=1e-5, atol=1e-5)


def test_vit_block_dims_are_embed_dim(vit):
    embed = vit.module.embed_dim
    assert [d["num_chs"] for d in vit.module.feature_info] == [embed] * 12
    blocks = [f"blocks.{i}" for i in range(12)]
    assert vit.layers[:12] == blocks
    assert {vit.layouts[b] for b in blocks} == {"NLC+1"}
    assert vit.prefix_tokens == vit.module.num_prefix_tokens == 1
    dims = layer_dims(vit)
    assert [dims[b] for b in blocks] == [384] * 12 and dims["softmax"] == 1000


def test_vit_gap_is_mean_of_patch_tokens_and_cls_is_token0(vit):
    x = _x()
    tokens = _raw(vit.module, "blocks.5", x)  # (2, 197, 384): class token, 196 patches
    assert tuple(tokens.shape) == (2, 197, 384)
    gap = _pooled(vit, ["blocks.5"], x)["blocks.5"]
    np.testing.assert_allclose(gap, tokens[:, 1:, :].mean(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(gap, tokens.mean(dim=1).numpy(), atol=1e-4)  # prefix really left out
    cls = _pooled(vit, ["blocks.5"], x, pooling="cls")["blocks.5"]
    np.testing.assert_array_equal(cls, tokens[:, 0, :].numpy())
    with torch.inference_mode():
        inter = vit.module.forward_intermediates(x, indices=[5], output_fmt="NCHW")[1][0]
    np.testing.assert_allclose(gap, inter.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)


def test_dotted_paths_of_timm_models_read_their_own_layout(vit, swin):
    x = _x()
    emb = _raw(vit.module, "patch_embed", x)  # (2, 196, 384): patches only, no class token
    got = _pooled(vit, ["patch_embed"], x)["patch_embed"]
    np.testing.assert_allclose(got, emb.mean(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    (spec,) = swin.resolve(["layers.0.blocks.0.attn"])  # window attention: (windows, 49, C)
    assert spec.layout is None
    with pytest.raises(RcvlabError, match="layout="):
        _pooled(swin, ["layers.0.blocks.0.attn"], x)


def test_corrected_gap_on_token_layer_is_an_error(vit):
    with pytest.raises(RcvlabError, match=r"does not apply to token layers.*blocks\.0"):
        layer_pools("corrected-gap", vit.module, vit.resolve(["blocks.0"]), 224)


def test_cls_pooling_needs_a_class_token(swin):
    with pytest.raises(RcvlabError, match=r"needs a class token.*layers\.0"):
        _pooled(swin, ["layers.0"], _x(), pooling="cls")


# -- plain modules: explicit layout, reshape, errors ------------------------------------------


class Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, H*W, C)
        return x.flatten(2).transpose(1, 2)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(5, 6, 3, padding=1),  # "2": NCHW
        Permute(0, 2, 3, 1),  # "3": the same map, NHWC
        Permute(0, 3, 1, 2),
        Flatten(),  # "5": the same map, tokens
    ).eval()


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("pooling", ["gap", "max", "corrected-gap"])
def test_nhwc_layer_equals_same_map_in_nchw(pooling):
    f = extract_features(
        _net(), _images(), ["2", "3"], input_size=16, pooling=pooling, layout={"3": "NHWC"}
    )
    assert f.dims == {"2": 6, "3": 6}
    np.testing.assert_allclose(f["3"], f["2"], rtol=1e-6, atol=1e-6)
    if pooling == "corrected-gap":
        assert f.positions["3"] == f.positions["2"] == 12 * 12


def test_nhwc_read_as_nchw_would_differ():
    # the silent error this fixes: averaging dims (2, 3) of (N, H, W, C) gives W values
    m = load_model(_net(), input_size=16, layers=["3"])
    assert layer_dims(m)["3"] == 16  # a plain module's maps are NCHW unless told otherwise
    assert layer_dims(load_model(_net(), input_size=16, layers=["3"], layout="NHWC")) == {"3": 6}


def test_token_layer_of_plain_module_needs_layout():
    with pytest.raises(RcvlabError, match=r"Layer 5 .*outputs shape .*layout=") as e:
        extract_features(_net(), _images(), ["5"], input_size=16)
    assert "\n" not in str(e.value)
    f = extract_features(_net(), _images(), ["2", "5"], input_size=16, layout={"5": "NLC"})
    np.testing.assert_allclose(f["5"], f["2"], rtol=1e-6, atol=1e-6)


def test_reshape_callable_brings_tokens_to_nchw():
    def to_map(t: torch.Tensor) -> torch.Tensor:  # (N, 256, 6) -> (N, 6, 16, 16)
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], 16, 16)

    f = extract_features(_net(), _images(), ["2", "5"], input_size=16, reshape={"5": to_map})
    np.testing.assert_allclose(f["5"], f["2"], rtol=1e-6, atol=1e-6)
    g = extract_features(_net(), _images(), ["5"], input_size=16, pooling="max", reshape=to_map)
    h = extract_features(_net(), _images(), ["2"], input_size=16, pooling="max")
    np.testing.assert_allclose(g["5"], h["2"], rtol=1e-6, atol=1e-6)


def test_prefix_tokens_and_cls_on_plain_module():
    x = torch.randn(2, 5, 4)

    class Tok(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return t

    net = nn.Sequential(Tok()).eval()
    m = load_model(net, input_size=8, layers=["0"], layout="NLC+2")
    (spec,) = m.resolve()
    assert (spec.layout, spec.prefix_tokens, spec.layout_label) == ("NLC", 2, "NLC+2")
    for pooling, want in (("gap", x[:, 2:].mean(1)), ("max", x[:, 2:].amax(1)), ("cls", x[:, 0])):
        pool, linear = get_pooling(pooling)
        with capture(net, [spec], pool, linear=linear) as out:
            net(x)
        np.testing.assert_allclose(out["0"].numpy(), want.numpy(), rtol=1e-6)
    m0 = load_model(net, input_size=8, layers=["0"], layout="NLC")
    pool, linear = get_pooling("cls")
    with pytest.raises(RcvlabError, match="has none"), capture(net, m0.resolve(), pool) as _:
        net(x)


def test_bad_layout_options_are_one_line_errors():
    with pytest.raises(RcvlabError, match=r"Unknown layout 'NWHC'.*NLC\+k"):
        extract_features(_net(), _images(), ["3"], input_size=16, layout="NWHC")
    with pytest.raises(UnknownNameError, match="layout= names layer '4'"):
        extract_features(_net(), _images(), ["3"], input_size=16, layout={"4": "NHWC"})
    with pytest.raises(RcvlabError, match="read as NHWC but outputs shape"):
        extract_features(_net(), _images(), ["5"], input_size=16, layout="NHWC")
    assert parse_layout("nlc+3", "x") == ("NLC", 3)


def test_cache_key_keeps_old_maps_and_separates_layouts():
    assert LayerSpec("a", "a").key() == ("a", "a", "output")
    assert LayerSpec("a", "a", layout="NHWC").key() != LayerSpec("a", "a").key()
    k1 = LayerSpec("a", "a", reshape=lambda t: t).key()
    k2 = LayerSpec("a", "a", reshape=lambda t: t * 2).key()
    assert k1 != k2


def test_channels_last_only_for_networks_of_maps(monkeypatch):
    """Channels-last speeds CNNs up on CPU but slows transformers: on only without token or
    NHWC layers, unless asked for."""
    import rcvlab.features.extract as fx

    seen = []
    real = fx.borrowed

    def spy(module, device, *, channels_last=False):
        seen.append(channels_last)
        return real(module, device, channels_last=channels_last)

    monkeypatch.setattr(fx, "borrowed", spy)
    extract_features(_net(), _images(), ["2"], input_size=16)
    extract_features(_net(), _images(), ["2", "3"], input_size=16, layout={"3": "NHWC"})
    extract_features(_net(), _images(), ["3"], input_size=16, layout="NHWC", channels_last=True)
    assert seen == [True, False, True]
