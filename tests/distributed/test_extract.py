import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rcvlab import DataError, RcvlabError, extract_features, load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.distributed.extract import MAX_SHARD_BATCHES, SHARDS_PER_WORKER, plan_shards

N, BATCH = 60, 4


class SlowSet(ArrayImageSet):
    """Images that take ``delay(i)`` seconds to read, log ``pid i time`` to ``log``, and
    fail to decode at the ``corrupt`` indices (pickled by value to the workers)."""

    def __init__(self, images, *, log=None, slow=(), delay=0.0, jitter=0.0, corrupt=()):
        super().__init__(images)
        self.log, self.slow, self.delay, self.jitter = log, set(slow), delay, jitter
        self.corrupt = set(corrupt)

    def _load(self, i):
        if i in self.corrupt:
            raise DataError(f"cannot decode image {self.ids[i]}: truncated")
        wait = (self.delay if not self.slow or i in self.slow else 0.0) + self.jitter * (
            random.Random(i).random()
        )
        time.sleep(wait)
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()} {i} {time.time()}\n")
        return super()._load(i)


@pytest.fixture(scope="module", autouse=True)
def _pickle_this_module_by_value():
    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_model("mobilenet_v2", "random", input_size=48)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (N, 40, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(model, images, tmp_path_factory):
    """Single-process features with one torch thread (as each worker runs), and the merged
    cache file they leave."""
    root = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        f = extract_features(model, images, batch_size=BATCH, cache_dir=root, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return f, root / f.key / "features.npz"


def assert_same_features(f, ref):
    assert list(f) == list(ref)
    for k in ref:
        assert f[k].dtype == np.float32
        assert np.array_equal(f[k], ref[k]), k
    assert np.array_equal(f.valid, ref.valid)


def assert_same_cache(root: Path, f, ref_file: Path):
    merged = root / f.key / "features.npz"
    with np.load(merged) as a, np.load(ref_file) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in b.files:
            assert np.array_equal(a[k], b[k]), k
    assert not list((root / f.key / "chunks").glob("*.npz"))  # merged and dropped
    assert not list((root / f.key).glob(".job-*"))  # the job file is removed


def test_plan_shards_on_batch_boundaries():
    todo = [(0, 37), (50, 51), (60, 200)]
    shards = plan_shards(todo, 4, 2)
    covered = sorted(i for a, b in shards for i in range(a, b))
    assert covered == [i for a, b in todo for i in range(a, b)]
    for a, b in shards:
        start = next(s for s, e in todo if s <= a < e)
        assert (a - start) % 4 == 0 and b <= next(e for s, e in todo if s <= a < e)
    # about SHARDS_PER_WORKER per worker, never over MAX_SHARD_BATCHES batches
    assert len(plan_shards([(0, 400)], 4, 2)) == 2 * SHARDS_PER_WORKER
    big = plan_shards([(0, 10_000)], 4, 2)
    assert max(b - a for a, b in big) == 4 * MAX_SHARD_BATCHES
    assert plan_shards([(0, 3)], 4, 8) == [(0, 3)]
    assert plan_shards([], 4, 2) == []


def test_cluster_equals_single_process_whatever_the_order(
    client, model, images, reference, tmp_path
):
    ref, ref_file = reference
    log = tmp_path / "loads.log"
    # The first shard's images are slow (every image jittered): later shards finish first.
    data = SlowSet(images, log=log, slow=range(8), delay=0.1, jitter=0.01)
    ticks = []
    f = extract_features(
        model,
        data,
        batch_size=BATCH,
        cache_dir=tmp_path / "cache",
        device="cpu",
        client=client,
        progress=lambda done, total: ticks.append((done, total)),
    )
    assert_same_features(f, ref)
    assert_same_cache(tmp_path / "cache", f, ref_file)
    assert f.n_computed == N
    assert ticks[-1] == (N, N) and len(ticks) > 1  # counted in images, shard by shard
    loads = [line.split() for line in log.read_text().splitlines()]
    assert len({pid for pid, _, _ in loads}) == 2  # both workers computed shards
    last = {int(i): float(t) for _, i, t in sorted(loads, key=lambda r: float(r[2]))}
    assert max(last[i] for i in range(8)) > max(last[i] for i in range(8, 16))

    again = extract_features(
        model, data, batch_size=BATCH, cache_dir=tmp_path / "cache", device="cpu", client=client
    )
    assert again.n_computed == 0
    assert_same_features(again, ref)


def test_cluster_completes_a_partial_cache(client, model, images, reference, tmp_path):
    ref, ref_file = reference
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extract_features(
            model, images, batch_size=BATCH, cache_dir=tmp_path, device="cpu", shard=(0, 20)
        )
    finally:
        torch.set_num_threads(threads)
    f = extract_features(
        model, images, batch_size=BATCH, cache_dir=tmp_path, device="cpu", client=client
    )
    assert f.n_computed == N - 20
    assert_same_features(f, ref)
    assert_same_cache(tmp_path, f, ref_file)


def test_strict_corrupt_image_is_the_same_one_line_error(client, model, images, tmp_path):
    data = SlowSet(images, corrupt=[37])
    with pytest.raises(DataError) as local:
        extract_features(model, data, batch_size=BATCH, device="cpu", strict=True)
    with pytest.raises(DataError) as remote:
        extract_features(
            model,
            data,
            batch_size=BATCH,
            cache_dir=tmp_path,
            device="cpu",
            strict=True,
            client=client,
        )
    assert str(remote.value) == str(local.value)
    assert "\n" not in str(remote.value) and "image 37" in str(remote.value)
    assert remote.value.__cause__ is None and remote.value.__suppress_context__


def test_corrupt_image_is_skipped_as_in_one_process(client, model, images, tmp_path):
    data = SlowSet(images, corrupt=[5, 41])
    one = extract_features(model, data, batch_size=BATCH, device="cpu")
    f = extract_features(
        model, data, batch_size=BATCH, cache_dir=tmp_path, device="cpu", client=client
    )
    assert np.array_equal(f.valid, one.valid) and not f.valid[[5, 41]].any()
    assert f.skipped == one.skipped
    assert all(np.isnan(f[k][[5, 41]]).all() for k in f)


def test_client_needs_a_cache_dir(model, images):
    with pytest.raises(RcvlabError, match="needs cache_dir") as e:
        extract_features(model, images, client=object())
    assert "\n" not in str(e.value)


def test_client_must_be_a_dask_client(model, images, tmp_path):
    with pytest.raises(RcvlabError, match=r"distributed\.Client") as e:
        extract_features(model, images, cache_dir=tmp_path, client=object())
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the gpu tests check real devices")
def test_gpu_worker_plumbing_without_gpus(monkeypatch, model, images, reference, tmp_path):
    """As on a 2-GPU machine (devices faked): each worker gets its device in its
    environment and the resource GPU=1, and the shards are submitted with that resource."""
    import rcvlab.distributed.client as dc
    from rcvlab.distributed import has_gpu_workers, open_client

    ref, _ = reference
    monkeypatch.setattr(dc, "visible_devices", lambda: ["0", "1"])
    with open_client("local:2") as c:
        env = c.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
        assert sorted(env.values()) == ["0", "1"]
        assert has_gpu_workers(c)
        submitted = []
        real_submit = c.submit
        monkeypatch.setattr(
            c, "submit", lambda *a, **kw: submitted.append(kw) or real_submit(*a, **kw)
        )
        # no CUDA here: "cuda" resolves to the CPU on the workers, which run one thread
        f = extract_features(model, images[:8], batch_size=BATCH, cache_dir=tmp_path, client=c)
    assert submitted and all(kw["resources"] == {"GPU": 1} for kw in submitted)
    for k in ref:
        assert np.array_equal(f[k], ref[k][:8]), k


# Last in this module: the restarted worker is slow to start and to load its first job.
def test_killed_worker_leaves_the_same_cache(client, model, images, reference, tmp_path):
    ref, ref_file = reference
    data = SlowSet(images, delay=0.04)  # 2.4 s of reading: time to kill a worker mid-run
    before = set(client.run(os.getpid).values())
    killed = {}

    def kill_one_busy_worker():
        deadline = time.time() + 60
        while time.time() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy and any(tmp_path.glob("*/chunks/*.npz")):
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed["pid"], killed["at"] = pid, time.time()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    try:
        f = extract_features(
            model, data, batch_size=BATCH, cache_dir=tmp_path, device="cpu", client=client
        )
        end = time.time()
    finally:
        killer.join()
    assert killed and killed["at"] < end  # killed while the extraction ran
    assert_same_features(f, ref)
    assert_same_cache(tmp_path, f, ref_file)
    client.wait_for_workers(2, timeout=120)  # the nanny restarted it
    assert killed["pid"] in before and killed["pid"] not in set(client.run(os.getpid).values())


@pytest.mark.gpu
def test_gpu_workers_match_cpu_features(model, images, reference, tmp_path):
    from rcvlab.distributed import open_client

    ref, _ = reference
    n = min(torch.cuda.device_count(), 2)
    with open_client(f"local:{n}", gpus=True) as c:
        f = extract_features(model, images, batch_size=BATCH, cache_dir=tmp_path, client=c)
        used = c.run(lambda: torch.cuda.max_memory_allocated())
    assert all(v > 0 for v in used.values())  # every worker ran on its GPU
    for k in ref:
        rel = np.linalg.norm(f[k] - ref[k]) / np.linalg.norm(ref[k])
        assert rel < 1e-3, (k, rel)


def test_a_worker_that_cannot_see_the_images_says_so(model, tmp_path):
    """Images at paths a worker cannot read (a missing mount) are one line naming a file,
    not a shard of 'unreadable images' cached as such; run_shard is what a task runs."""
    from PIL import Image

    from rcvlab.data.base import FileImageSet
    from rcvlab.distributed.extract import Job, probe_file, run_shard, write_job

    paths = []
    for i in range(3):
        p = tmp_path / "imgs" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(p)
        paths.append(str(p))
    images = FileImageSet(paths, {})
    assert probe_file(images) == os.path.abspath(paths[0])
    assert probe_file(ArrayImageSet([np.zeros((8, 8, 3), np.uint8)])) == ""
    cache = tmp_path / "cache"
    gone = Job(model, images, {"cache_dir": str(cache)}, "k2", str(tmp_path / "nowhere.png"))
    path, token = write_job(cache / "k2", gone)
    receipt = run_shard(str(path), token, 0, 2)
    assert isinstance(receipt.error, RcvlabError)
    assert "cannot read the images" in str(receipt.error)
    assert "nowhere.png" in str(receipt.error) and "\n" not in str(receipt.error)
    assert receipt.n_computed == 0 and not list((cache / "k2").glob("*.npz"))


def test_a_cache_dir_with_a_tilde_is_the_home_folder(model, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    imgs = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    extract_features(model, imgs, layers=["features.2"], cache_dir="~/cache", batch_size=2)
    assert list((tmp_path / "home" / "cache").rglob("*.npz"))
    assert not (tmp_path / "~").exists()
