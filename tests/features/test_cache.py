import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rcvlab import extract_features, load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.features.cache import FeatureCache


class InterruptingSet(ArrayImageSet):
    def __init__(self, images, interrupt_at=None):
        super().__init__(images)
        self.interrupt_at = interrupt_at

    def _load(self, i):
        if i == self.interrupt_at:
            raise KeyboardInterrupt
        return super()._load(i)

    def _fingerprint_payload(self):  # the interruption is not part of the data's identity
        return ArrayImageSet._fingerprint_payload(self)


@pytest.fixture
def setup(tiny, rng):
    imgs = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    return load_model(tiny, input_size=32, layers=["conv", "fc"]), imgs


def test_second_run_reads_the_cache(setup, tmp_path):
    m, imgs = setup
    a = extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    b = extract_features(m, imgs, cache_dir=tmp_path, batch_size=8)
    assert a.n_computed == 20 and b.n_computed == 0 and a.key == b.key
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = extract_features(m, imgs[:10], cache_dir=tmp_path)  # other data: other key
    assert c.key != a.key and c.n_computed == 10


def test_interrupted_extraction_resumes(setup, tmp_path):
    m, imgs = setup
    ref = extract_features(m, imgs, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            m, InterruptingSet(imgs, interrupt_at=13), cache_dir=tmp_path, batch_size=4
        )
    (key_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert not any(p.name.endswith(".tmp") for p in (key_dir / "chunks").iterdir())
    assert not (key_dir / "features.npz").exists()
    again = extract_features(m, InterruptingSet(imgs), cache_dir=tmp_path, batch_size=4)
    assert again.n_computed == 8  # batches [0,4) [4,8) [8,12) were cached; 12..19 recomputed
    for k in ref:
        np.testing.assert_array_equal(again[k], ref[k])


def test_shards_merge_into_the_full_extraction(setup, tmp_path):
    m, imgs = setup
    ref = extract_features(m, imgs, batch_size=3)
    s1 = extract_features(m, imgs, cache_dir=tmp_path, shard=(0, 7), batch_size=3)
    s2 = extract_features(m, imgs, cache_dir=tmp_path, shard=(7, 20), batch_size=5)
    assert s1["conv"].shape == (7, 2) and s2["conv"].shape == (13, 2)
    full = extract_features(m, imgs, cache_dir=tmp_path)
    assert full.n_computed == 0
    for k in ref:
        np.testing.assert_array_equal(full[k], ref[k])
    (key_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (key_dir / "features.npz").exists() and not list((key_dir / "chunks").iterdir())


def test_cache_missing_ranges(tmp_path):
    c = FeatureCache(tmp_path, "k", 10, ["a"])
    c.write_chunk(2, 4, {"a": np.ones((2, 1))}, np.ones(2, bool), {})
    c.write_chunk(6, 7, {"a": np.ones((1, 1))}, np.ones(1, bool), {})
    assert c.missing() == [(0, 2), (4, 6), (7, 10)]
    assert c.missing(3, 8) == [(4, 6), (7, 8)]


SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import Tiny
    from rcvlab import extract_features, load_model
    from rcvlab.data.base import ArrayImageSet

    class Slow(ArrayImageSet):
        def _load(self, i):
            time.sleep({delay})
            return super()._load(i)

    imgs = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    m = load_model(Tiny().eval(), input_size=32, layers=["conv", "fc"])
    f = extract_features(m, Slow(list(imgs)), cache_dir={cache!r}, batch_size=4)
    print("computed", f.n_computed)
    np.save({out!r}, f["fc"])
    """
)


@pytest.mark.slow
def test_killed_process_resumes_without_half_written_cache(tmp_path):
    tests = os.path.dirname(os.path.dirname(__file__))
    out = str(tmp_path / "fc.npy")
    cache = str(tmp_path / "cache")
    slow = SCRIPT.format(tests=tests, delay=0.02, cache=cache, out=out)
    proc = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        chunk_dirs = list((tmp_path / "cache").glob("*/chunks"))
        if chunk_dirs and len(list(chunk_dirs[0].glob("*.npz"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(list(chunk_dirs[0].glob("*.npz")))
    assert 3 <= done < 10
    fast = SCRIPT.format(tests=tests, delay=0.0, cache=cache, out=out)
    res = subprocess.run([sys.executable, "-c", fast], capture_output=True, text=True, check=True)
    assert res.stdout.split()[-1] == str(40 - 4 * done)
    fresh = SCRIPT.format(
        tests=tests, delay=0.0, cache=str(tmp_path / "fresh"), out=str(tmp_path / "ref.npy")
    )
    subprocess.run([sys.executable, "-c", fresh], capture_output=True, check=True)
    np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "ref.npy"))


def test_random_twins_of_different_custom_nets_do_not_share_a_cache(tiny, rng, tmp_path):
    import torch.nn as nn

    other = nn.Sequential()
    other.add_module("conv", nn.Conv2d(3, 2, 3, padding=1))
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    a = load_model(tiny, input_size=32, layers=["conv"]).twin("random", seed=0)
    b = load_model(other.eval(), input_size=32, layers=["conv"]).twin("random", seed=0)
    fa = extract_features(a, imgs, cache_dir=tmp_path)
    fb = extract_features(b, imgs, cache_dir=tmp_path)
    assert fa.key != fb.key and fb.n_computed == 4
