import numpy as np
import pytest
import torch
from PIL import Image

from rcvlab import DataError, RcvlabError, UnknownNameError, extract_features, load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import gap


class CountingSet(ArrayImageSet):
    """Counts loads; optionally fails (corrupt) or interrupts (Ctrl-C) at given indices."""

    def __init__(self, images, corrupt=(), interrupt_at=None):
        super().__init__(images)
        self.corrupt, self.interrupt_at, self.loads = set(corrupt), interrupt_at, 0

    def _load(self, i):
        if i == self.interrupt_at:
            raise KeyboardInterrupt
        if i in self.corrupt:
            raise DataError(f"cannot decode image {self.ids[i]}: truncated")
        self.loads += 1
        return super()._load(i)


def count_forwards(module):
    calls = []
    module.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    return calls


def test_gap_of_tiny_model_is_hand_computable(tiny, rng):
    imgs = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    m = load_model(
        tiny, input_size=32, layers=["conv", "relu", "fc"], mean=(0, 0, 0), std=(1, 1, 1)
    )
    calls = count_forwards(tiny)
    f = extract_features(m, imgs, batch_size=2)
    x = imgs.astype(np.float64) / 255
    conv = np.stack([x[..., 0], x[..., 1] - x[..., 2]], axis=-1)  # 1x1 conv, set weights
    np.testing.assert_allclose(f["conv"], conv.mean(axis=(1, 2)), atol=1e-6)
    relu = np.maximum(conv, 0).mean(axis=(1, 2))
    np.testing.assert_allclose(f["relu"], relu, atol=1e-6)
    np.testing.assert_allclose(f["fc"], relu @ np.array([[1, 0], [0, 1], [1, 1]]).T, atol=1e-6)
    assert calls == [2, 2, 1]  # one forward pass per batch for all three layers
    assert list(f) == ["conv", "relu", "fc"] and f.valid.all() and f.n_computed == 5


def test_plain_module_needs_input_size(tiny, rng):
    imgs = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    f = extract_features(tiny, imgs, layers=["conv"], input_size=32)
    assert f["conv"].shape == (2, 2)
    with pytest.raises(Exception, match="input_size"):
        extract_features(tiny, imgs, layers=["conv"])


def test_resnet_residual_sum_is_the_pre_relu_sum(rng):
    m = load_model("resnet50", "random", input_size=64)
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    f = extract_features(m, imgs, layers=["add1", "add2", "layer1.1"], channels_last=False)
    mod = m.module
    x = m.preprocessing([Image.fromarray(i) for i in imgs])
    with torch.inference_mode():
        h = mod.maxpool(mod.relu(mod.bn1(mod.conv1(x))))
        sums = []
        for b in mod.layer1[:2]:
            r = b.bn3(b.conv3(b.relu(b.bn2(b.conv2(b.relu(b.bn1(b.conv1(h))))))))
            s = r + (b.downsample(h) if b.downsample is not None else h)
            sums.append(s)
            h = torch.relu(s)
    np.testing.assert_allclose(f["add1"], sums[0].mean((2, 3)).numpy(), atol=1e-5)
    np.testing.assert_allclose(f["add2"], sums[1].mean((2, 3)).numpy(), atol=1e-5)
    np.testing.assert_allclose(f["layer1.1"], h.mean((2, 3)).numpy(), atol=1e-5)
    assert (f["add2"] < 0).any() and (f["layer1.1"] >= 0).all()  # before vs after the ReLU


def test_softmax_layer_sums_to_one_and_matches_logits(rng):
    m = load_model("mobilenet_v2", "random", input_size=64)
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    f = extract_features(m, imgs, layers=["pre-softmax", "softmax"])
    np.testing.assert_allclose(f["softmax"].sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(
        f["softmax"], torch.softmax(torch.tensor(f["pre-softmax"]), -1), atol=1e-6
    )


def test_channels_last_gives_the_same_features(rng):
    m = load_model("efficientnet_lite0", "random", input_size=64)
    imgs = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    a = extract_features(m, imgs, channels_last=True)
    b = extract_features(m, imgs, channels_last=False)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_corrupt_image_is_listed_not_fatal_and_strict_raises(tiny, rng):
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    m = load_model(tiny, input_size=32, layers=["conv"])
    data = CountingSet(imgs, corrupt={2})
    f = extract_features(m, data, batch_size=4)
    assert f.valid.tolist() == [True, True, False, True, True, True]
    assert np.isnan(f["conv"][2]).all() and np.isfinite(f["conv"][[0, 1, 3, 4, 5]]).all()
    assert f.skipped[2].path == "array[2]" and "truncated" in f.skipped[2].reason
    with pytest.raises(DataError, match=r"truncated \(image 2; drop --strict"):
        extract_features(m, CountingSet(imgs, corrupt={2}), strict=True)


def test_hooks_are_removed_also_after_errors(tiny, rng):
    m = load_model(tiny, input_size=32, layers=["conv", "fc"])
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(KeyboardInterrupt):
        extract_features(m, CountingSet(imgs, interrupt_at=1))
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in tiny.modules())
    with capture(tiny, m.resolve(["conv"]), gap) as out:
        tiny(torch.zeros(1, 3, 8, 8))
        assert out["conv"].shape == (1, 2)
    assert not tiny.conv._forward_hooks


def test_unknown_layer_and_bad_options(tiny, rng):
    m = load_model(tiny, input_size=32, layers=["conv"])
    imgs = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(UnknownNameError, match="Did you mean 'conv'"):
        extract_features(m, imgs, layers=["cnv"])
    with pytest.raises(UnknownNameError, match="pooling"):
        extract_features(m, imgs, pooling="median")
    with pytest.raises(DataError, match="No images"):
        extract_features(m, np.zeros((0, 32, 32, 3), np.uint8))


@pytest.mark.gpu
def test_cuda_extraction_matches_cpu(rng):
    m = load_model("resnet50", "random", input_size=64)
    imgs = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    cpu = extract_features(m, imgs, layers=["add3", "add16", "softmax"], device="cpu")
    gpu = extract_features(m, imgs, layers=["add3", "add16", "softmax"], device="cuda")
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-3, atol=1e-4)


def test_one_layer_reads_the_all_layers_cache(tmp_path, rng):
    from rcvlab.features.extract import one_layer

    m = load_model("mobilenet_v2", "random", input_size=64)
    imgs = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    full = extract_features(m, imgs, cache_dir=tmp_path)  # as `rcvlab probe` does
    X, f = one_layer(m, imgs, "features.7", cache_dir=tmp_path)
    assert f.n_computed == 0 and f.key == full.key
    np.testing.assert_array_equal(X, full["features.7"])
    # without a cache, or for a module path outside the named layers: only that layer
    _, f2 = one_layer(m, imgs, "features.7.conv")
    assert list(f2) == ["features.7.conv"] and f2.n_computed == 4


def test_device_that_does_not_exist_is_one_error():
    from rcvlab.features.extract import choose_device

    with pytest.raises(RcvlabError, match="Unknown device 'bogus'"):
        choose_device("bogus")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(RcvlabError, match="not available"):
        choose_device(f"cuda:{n}")
    assert choose_device("cpu").type == "cpu"
