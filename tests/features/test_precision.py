"""``extract_features(precision=...)``: 16-bit forward passes, float32 features."""

import sys

import numpy as np
import pytest
import torch

from rcvlab import RcvlabError, extract_features, load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.features import extract as extract_module
from rcvlab.features.cache import FeatureCache, cache_key
from rcvlab.features.extract import precision_supported


class NeverRead(ArrayImageSet):
    """Images that fail the test if one is read."""

    def _load(self, i):
        raise AssertionError(f"image {i} was read before the options were checked")


def bf16(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest, ties to even) on their bits, as float64."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.fixture
def setup(tiny, rng):
    """The hand-computable tiny network on raw pixels / 255, and five 32 px images."""
    imgs = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    m = load_model(
        tiny, input_size=32, layers=["conv", "relu", "fc"], mean=(0, 0, 0), std=(1, 1, 1)
    )
    return m, imgs


def bf16_conv_map(imgs: np.ndarray) -> np.ndarray:
    """The tiny network's 1x1 convolution under bf16 autocast, ``(n, h, w, 2)``: inputs
    rounded to bf16, the products summed exactly (weights 1, 0, -1), the sum rounded."""
    x = imgs.astype(np.float32) / np.float32(255)
    xb = bf16(x)
    return np.stack([xb[..., 0], bf16((xb[..., 1] - xb[..., 2]).astype(np.float32))], axis=-1)


@pytest.mark.parametrize("bad", ["bf32", "FP16", 16, None])
def test_unknown_precision_is_one_line_before_any_work(setup, tiny, tmp_path, bad):
    m, imgs = setup
    calls = []
    tiny.register_forward_pre_hook(lambda *a: calls.append(1))
    cache = tmp_path / "cache"
    with pytest.raises(RcvlabError) as e:
        # a device that does not exist: the precision is checked before it
        extract_features(m, NeverRead(list(imgs)), cache_dir=cache, device="cuda:99", precision=bad)
    msg = str(e.value)
    assert msg.startswith(f"Unknown precision {bad!r}") and "\n" not in msg
    assert "fp32, bf16, fp16" in msg
    assert not cache.exists() and not calls


def test_precision_the_device_cannot_run_is_refused_before_any_work(setup, tmp_path, monkeypatch):
    m, imgs = setup
    monkeypatch.setattr(extract_module, "precision_supported", lambda dtype, dev: False)
    cache = tmp_path / "cache"
    with pytest.raises(RcvlabError) as e:
        extract_features(m, NeverRead(list(imgs)), cache_dir=cache, precision="fp16")
    msg = str(e.value)
    assert msg.startswith("Precision fp16 is not supported on this CPU") and "\n" not in msg
    assert "--precision fp32" in msg and not cache.exists()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "x86" not in __import__("platform").machine(),
    reason="reads the x86 flags of /proc/cpuinfo",
)
def test_cpu_support_follows_the_cpu_flags():
    """oneDNN's bf16 kernels need AVX-512 BW/VL/DQ, its fp16 kernels AVX512-FP16 (both:
    or AVX-NE-CONVERT): read here from the CPU's own flags, not from torch."""
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split())
    cpu = torch.device("cpu")
    bf16_ok = {"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags
    assert precision_supported(torch.bfloat16, cpu) == bf16_ok
    fp16_ok = "avx512_fp16" in flags or "avx_ne_convert" in flags
    assert precision_supported(torch.float16, cpu) == fp16_ok


@pytest.mark.skipif(
    not precision_supported(torch.bfloat16, torch.device("cpu")), reason="no bf16 on this CPU"
)
def test_bf16_features_are_float32_means_of_the_bf16_maps(setup):
    m, imgs = setup
    f32 = extract_features(m, imgs, batch_size=2)
    f16 = extract_features(m, imgs, batch_size=2, precision="bf16")
    assert list(f16) == ["conv", "relu", "fc"]
    assert all(v.dtype == np.float32 for v in f16.values())
    conv = bf16_conv_map(imgs)
    # averaged in float32: a mean rounded to bf16 would be off by up to 2**-9 (2e-3)
    np.testing.assert_allclose(f16["conv"], conv.mean(axis=(1, 2)), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(
        f16["relu"], np.maximum(conv, 0).mean(axis=(1, 2)), rtol=2e-6, atol=1e-7
    )
    assert np.abs(f16["conv"] - bf16(f16["conv"])).max() > 1e-5  # not bf16 values
    # 16-bit rounding, not another computation: within bf16's precision of fp32
    for k in f32:
        np.testing.assert_allclose(f16[k], f32[k], rtol=2**-7, atol=2**-8)
        assert not np.array_equal(f16[k], f32[k])


@pytest.mark.skipif(
    not precision_supported(torch.bfloat16, torch.device("cpu")), reason="no bf16 on this CPU"
)
def test_bf16_max_and_corrected_gap_are_float32(setup):
    m, imgs = setup
    conv = bf16_conv_map(imgs)
    mx = extract_features(m, imgs, layers=["conv"], pooling="max", precision="bf16")
    assert mx["conv"].dtype == np.float32
    np.testing.assert_array_equal(mx["conv"], conv.max(axis=(1, 2)))  # a bf16 value, exact
    cg = extract_features(m, imgs, layers=["conv"], pooling="corrected-gap", precision="bf16")
    assert cg["conv"].dtype == np.float32 and cg.positions == {"conv": 32 * 32}
    np.testing.assert_allclose(cg["conv"], conv.mean(axis=(1, 2)), rtol=2e-6, atol=1e-7)


def test_cache_key_holds_the_precision_only_when_not_fp32(setup, tmp_path):
    m, imgs = setup
    # the payload of every cache written before precision existed
    payload = {
        "model": m.name,
        "weights": m.weights_id,
        "layers": [s.key() for s in m.resolve(None)],
        "preprocessing": {**m.preprocessing.key(), "mode": "resize"},
        "pooling": "gap",
        "data": ArrayImageSet(list(imgs)).fingerprint(),
        "n": len(imgs),
    }
    old_key = cache_key(payload)
    # an fp32 cache as an earlier version wrote it (values no network gives): still read
    old = FeatureCache(tmp_path, old_key, len(imgs), ["conv", "relu", "fc"], meta=payload)
    made_up = {"conv": np.full((5, 2), 7.0), "relu": np.full((5, 2), 8.0), "fc": np.zeros((5, 3))}
    old.write_chunk(0, 5, made_up, np.ones(5, dtype=bool), {})
    fp32 = extract_features(m, imgs, cache_dir=tmp_path, precision="fp32")
    assert fp32.key == old_key and fp32.n_computed == 0
    for k, v in made_up.items():
        np.testing.assert_array_equal(fp32[k], v)
    if not precision_supported(torch.bfloat16, torch.device("cpu")):
        return
    b = extract_features(m, imgs, cache_dir=tmp_path, precision="bf16")
    assert b.key == cache_key({**payload, "precision": "bf16"}) != old_key
    assert b.n_computed == 5 and not np.array_equal(b["conv"], made_up["conv"])
    again = extract_features(m, imgs, cache_dir=tmp_path, precision="bf16")
    assert again.n_computed == 0 and again.key == b.key
    for k in b:
        np.testing.assert_array_equal(again[k], b[k])


@pytest.mark.slow
@pytest.mark.skipif(
    not precision_supported(torch.bfloat16, torch.device("cpu")), reason="no bf16 on this CPU"
)
def test_bf16_on_the_demo_set_changes_no_layers_r2_by_001(capsys):
    """bf16 extraction on the demo set changes every layer's R² by less than 0.01, and the
    features are float32.

    The demo's per-class profile (ridge, 10 splits per class, seed 0) of its first network,
    ImageNet-pretrained EfficientNet-Lite0, on the whole demo set (4 classes x 300 images),
    fitted on fp32 and on bf16 features of the same pictures with the same splits. Smaller
    sets cannot test the bound: with 30-100 images per class the profile itself moves by
    0.02-0.5 under such perturbations (measured), whatever their source. MobileNetV2, the
    demo's second network, misses the bound at one layer that encodes no scale (features.0,
    R² -0.38: 0.015; every other layer under 0.008), reported by ``bench/precision.py``.

    Pretrained weights on purpose: a random-weight network's features vary so little
    between images (tiny variance) that bf16 rounding can move them by as much as their
    own spread, and its R² with them.

    Slow on a CPU without AMX (bf16 emulated: 1.5-2.5 min on 2 shared cores); seconds on a GPU
    (``device`` left to its default, ``cuda`` when present).
    """
    from rcvlab.data.scaleset import scaleset
    from rcvlab.probe.profile import probe_layers

    m = load_model("efficientnet_lite0", "imagenet")
    data = scaleset(n_per_class=300, seed=0)
    # the pictures once, in memory: their synthesis is not what is tested
    pixels = np.stack([np.asarray(data.load(i)) for i in range(len(data))])
    y = data.measure("scale_ratio")
    r2 = {}
    for p in ("fp32", "bf16"):
        f = extract_features(m, pixels, batch_size=64, precision=p)
        assert all(v.dtype == np.float32 for v in f.values())
        res = probe_layers(
            dict(f), y, classes=data.classes, regressor="ridge", reps=10, seed=0,
            shuffled=False,
        )  # fmt: skip
        r2[p] = {s.layer: s.r2_mean for s in res.profiles["model"]}
    change = {k: abs(r2["bf16"][k] - r2["fp32"][k]) for k in r2["fp32"]}
    worst = max(change, key=change.get)
    with capsys.disabled():
        print(f"\nlargest R² change fp32 -> bf16: {change[worst]:.4f} at {worst}")
    assert len(change) == 20 and change[worst] < 0.01, change
