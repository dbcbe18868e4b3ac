"""The extractor's fast paths: prefetch started early, pixels normalised on the network's
device, one copy of every layer's features per batch back from a GPU."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from rcvlab import DataError, extract_features, load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.features.extract import load_batch, prefetch
from rcvlab.models.registry import RESAMPLE


def test_prefetch_starts_the_first_item_before_it_is_asked_for():
    started, closed = threading.Event(), threading.Event()

    def items():
        try:
            started.set()
            yield 1
            yield 2
        finally:
            closed.set()

    it = prefetch(items())
    assert started.wait(10)  # made while the caller sets up (no next() yet)
    assert list(it) == [1, 2] and closed.is_set()
    # closed before the first next(): the item in the making is waited for, then closed
    started.clear()
    closed.clear()
    it = prefetch(items())
    assert started.wait(10)
    it.close()
    assert closed.is_set() and list(it) == []


def test_prefetch_hands_over_the_error_of_an_item():
    def items():
        yield 1
        raise DataError("unreadable")

    it = prefetch(items())
    assert next(it) == 1
    with pytest.raises(DataError, match="unreadable"):
        next(it)
    assert list(it) == []


def test_raw_pixels_normalised_later_are_the_preprocessing(rng):
    m = load_model("mobilenet_v2", "random", input_size=48)
    imgs = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    data = ArrayImageSet(list(imgs))
    x, ok, bad = load_batch(m, data, 0, 3, resize="resize", strict=False)
    raw, ok_raw, bad_raw = load_batch(m, data, 0, 3, resize="resize", strict=False, raw=True)
    assert raw.dtype == torch.uint8 and tuple(raw.shape) == (3, 3, 48, 48)
    assert ok == ok_raw == [0, 1, 2] and bad == bad_raw == {}
    y = m.preprocessing.normalise(raw)
    assert torch.equal(x, y)
    # independently: PIL's resize, then the normalisation in numpy float32
    p = m.preprocessing
    px = np.stack(
        [np.asarray(Image.fromarray(im).resize((48, 48), RESAMPLE[p.interpolation])) for im in imgs]
    )
    mean, std = np.float32(p.mean), np.float32(p.std)
    ref = (px.astype(np.float32) / np.float32(255) - mean) / std
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), ref, rtol=1e-6, atol=1e-6)


def test_raw_batch_of_only_unreadable_images_is_none(rng):
    class Broken(ArrayImageSet):
        def _load(self, i):
            raise DataError("truncated")

    m = load_model("mobilenet_v2", "random", input_size=48)
    data = Broken(list(rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)))
    x, ok, bad = load_batch(m, data, 0, 2, resize="resize", strict=False, raw=True)
    assert x is None and ok == [] and sorted(bad) == [0, 1]


@pytest.mark.gpu
def test_cuda_pipeline_matches_cpu_with_unreadable_images_and_a_cache(rng, tmp_path):
    """Pinned uint8 batches, normalisation on the GPU, batch k handed over once k+1 is
    queued: same features as the CPU, NaN rows where images could not be read, every
    batch in the cache (also the last one)."""

    class SomeBroken(ArrayImageSet):
        def _load(self, i):
            if i in (3, 9):
                raise DataError("truncated")
            return super()._load(i)

    m = load_model("resnet50", "random", input_size=64)
    imgs = list(rng.integers(0, 256, (11, 64, 64, 3), dtype=np.uint8))
    layers = ["add3", "add16", "softmax"]
    cpu = extract_features(m, SomeBroken(imgs), layers=layers, device="cpu", batch_size=4)
    gpu = extract_features(
        m, SomeBroken(imgs), layers=layers, device="cuda", batch_size=4, cache_dir=tmp_path
    )
    again = extract_features(
        m, SomeBroken(imgs), layers=layers, device="cuda", batch_size=4, cache_dir=tmp_path
    )
    assert gpu.n_computed == 11 and again.n_computed == 0
    np.testing.assert_array_equal(gpu.valid, cpu.valid)
    for k in layers:
        assert np.isnan(gpu[k][[3, 9]]).all()
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(again[k], gpu[k])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_16_bit_features_are_float32_and_near_fp32(rng, precision):
    from rcvlab.features.extract import precision_supported

    if not precision_supported(PRECISION_DTYPES[precision], torch.device("cuda")):
        pytest.skip(f"{precision} is not supported by this GPU")
    m = load_model("mobilenet_v2", "imagenet")
    imgs = rng.integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    cpu = extract_features(m, imgs, device="cpu")
    gpu = extract_features(m, imgs, device="cuda", precision=precision)
    # 16-bit rounding through the whole network: close, not equal. On a CPU, bf16 moves
    # this network's features by up to 3 % of a layer's largest (9 % for the softmax);
    # fp16 has 3 more mantissa bits
    bound = {"bf16": 0.15, "fp16": 0.03}[precision]
    for k in cpu:
        assert gpu[k].dtype == np.float32
        scale = np.abs(cpu[k]).max()
        assert np.abs(gpu[k] - cpu[k]).max() < bound * scale, k


PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_all_finite_finds_every_non_finite_value(bad, dtype):
    from rcvlab.data.base import all_finite

    x = torch.randn(4, 3, 5, 6).to(dtype).contiguous(memory_format=torch.channels_last)
    assert all_finite(x) and all_finite(x[1:3]) and all_finite(x[:, :, ::2])
    x[2, 1, 4, 5] = bad
    assert not all_finite(x) and not all_finite(x[1:3]) and all_finite(x[:2])
    assert not all_finite(x.permute(0, 2, 3, 1))


def test_data_is_fingerprinted_only_for_a_cache(tiny, rng, tmp_path):
    """The cache key hashes every in-memory image: not worth it when nothing is cached."""

    class Counting(ArrayImageSet):
        prints = 0

        def fingerprint(self):
            Counting.prints += 1
            return super().fingerprint()

    m = load_model(tiny, input_size=32, layers=["conv"])
    data = Counting(list(rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)))
    plain = extract_features(m, data)
    assert Counting.prints == 0 and plain.key == ""
    cached = extract_features(m, data, cache_dir=tmp_path)
    assert Counting.prints == 1 and len(cached.key) == 20
    np.testing.assert_array_equal(cached["conv"], plain["conv"])


def test_ordered_map_keeps_order_bounds_work_and_raises_in_order():
    import threading
    import time

    from rcvlab.features.extract import ordered_map

    running, peak, lock = [0], [0], threading.Lock()

    def slow(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02 * ((7 * i) % 5))  # later items often finish first
        with lock:
            running[0] -= 1
        if i == 13:
            raise ValueError("item 13")
        return i * i

    got = []
    with pytest.raises(ValueError, match="item 13"):
        for v in ordered_map(slow, range(20), workers=3):
            got.append(v)
    assert got == [i * i for i in range(13)]  # in order, up to the failing item
    assert peak[0] <= 3
    assert list(ordered_map(lambda i: -i, range(5), workers=1)) == [0, -1, -2, -3, -4]
    gen = ordered_map(slow, range(10), workers=2)
    assert next(gen) == 0
    gen.close()  # waits for what is in the making; nothing left running
    assert running[0] == 0


def test_load_threads_one_on_a_cpu():
    from rcvlab.features.extract import load_threads

    assert load_threads(torch.device("cpu")) == 1
    assert 1 <= load_threads(torch.device("cuda")) <= 8


def test_full_fp32_is_a_no_op_on_a_cpu_and_restores_the_flags():
    from rcvlab.features.extract import full_fp32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with full_fp32(torch.device("cpu")):
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with full_fp32(torch.device("cuda")):  # flags only: no CUDA call is made
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
