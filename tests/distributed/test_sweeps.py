"""The image passes of the resize sweep and of relevance as Dask tasks: results from a 2-worker
loopback cluster equal the serial run under one torch thread, whatever the shards hold
(unreadable images, a shard without a readable image, rows without a measure); the model and
the images are scattered once; an unreadable image with ``strict`` is the same one-line
error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import tests.analyses.test_relevance as relevance_tests
import torch
import torch.nn as nn
from PIL import Image
from tests.analyses.test_relevance import RedNet
from tests.distributed.test_tasks import arrays_in, assert_same, spying, torch_threads, without_meta

from rcvlab import load_model
from rcvlab.analyses.relevance import relevance
from rcvlab.analyses.resize import resize_sweep
from rcvlab.data.base import FileImageSet, ImageSet
from rcvlab.errors import DataError, RcvlabError
from rcvlab.models.registry import Model
from rcvlab.probe.sensitivity import gradient_pass

# The workers import rcvlab but not the test folders: the tiny networks travel by value.
for _module in (sys.modules[__name__], relevance_tests):
    cloudpickle.register_pickle_by_value(_module)


class TinyNet(nn.Module):
    """A small classifier with global pooling (any input size), random weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def files(
    folder: Path, n: int, missing: set[int], seed: int = 0, red: bool = False
) -> tuple[list[str], np.ndarray]:
    """``n`` PNG paths of random images of different sizes (those in ``missing`` are not
    written) and, with ``red``, each image's mean red level."""
    rng = np.random.default_rng(seed)
    paths, reds = [], []
    for i in range(n):
        h, w = 20 + 3 * (i % 5), 24 + 2 * (i % 3)
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        if red:
            img[..., 0] = np.clip(rng.uniform(20, 235) + rng.normal(0, 8, (h, w)), 0, 255)
        reds.append(float(img[..., 0].mean()))
        paths.append(str(folder / f"{i:02d}.png"))
        if i not in missing:
            Image.fromarray(img).save(paths[-1])
    return paths, np.asarray(reds)


def objects_in(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [o for v in value for o in objects_in(v)]
    if isinstance(value, dict):
        return [o for v in value.values() for o in objects_in(v)]
    return [value]


def tasks_of(seen: dict[str, list[Any]], name: str) -> list[Any]:
    return [args for args in seen["submit"] if getattr(args[1], "__name__", "") == name]


# -- the resize sweep -----------------------------------------------------------------------


@pytest.fixture
def sweep_data(tmp_path: Path) -> FileImageSet:
    # batches of 2: images 4 and 5 (a whole batch, so a whole shard on 2 workers) and 8
    # cannot be read
    paths, _ = files(tmp_path, 11, missing={4, 5, 8})
    labels = np.random.default_rng(1).integers(0, 10, len(paths))
    return FileImageSet(paths, {"class_index": labels})


SWEEP = dict(sizes="16,24,40", interps="bilinear,nearest", batch_size=2, device="cpu")


def test_resize_sweep_from_the_cluster_equals_serial(client, sweep_data):
    model = load_model(TinyNet().eval(), input_size=32)
    with torch_threads(1):
        serial = resize_sweep(model, sweep_data, **SWEEP)
    ticks: list[tuple[int, int]] = []
    with spying(client) as seen:
        dist = resize_sweep(
            model, sweep_data, client=client, progress=lambda d, t: ticks.append((d, t)), **SWEEP
        )
    assert dist.ids == serial.ids and len(dist.ids) == 8
    assert dist.labels == serial.labels and dist.skipped == serial.skipped
    assert [s.path for s in dist.skipped] == [sweep_data.ids[i] for i in (4, 5, 8)]
    for k in ("p", "top1", "top5", "pred"):
        a, b = getattr(serial, k), getattr(dist, k)
        assert a.dtype == b.dtype and a.shape == b.shape == (2, 3, 8)
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert np.isfinite(dist.p).all() and np.ptp(dist.p) > 0.01  # real, varying numbers
    pd.testing.assert_frame_equal(serial.to_frame(), dist.to_frame())
    assert_same(without_meta(serial.to_dict()), without_meta(dist.to_dict()))
    assert dist.meta["workers"] == 2 and dist.meta["torch_threads"] == 1
    # the model and the images scattered once, to every worker; one task per shard of one
    # batch (6 batches, at most 4 shards per worker), none carrying the model or images
    assert len(seen["scatter"]) == 1 and seen["scatter"][0][1]["broadcast"] is True
    shards = tasks_of(seen, "sweep_shard")
    assert len(shards) == len(seen["submit"]) == 6
    assert [args[2][3:5] for args in shards] == [(i, min(i + 2, 11)) for i in range(0, 11, 2)]
    carried = objects_in([args[2:] for args in shards])
    assert not [o for o in carried if isinstance(o, Model | ImageSet | nn.Module)]
    assert not list(arrays_in([args[2:] for args in shards]))
    # progress: image evaluations, counted as each shard comes back
    total = 11 * 2 * 3
    assert ticks[-1] == (total, total) and len(ticks) == 6  # one update per shard
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_an_unreadable_image_with_strict_is_the_same_one_line_error(client, sweep_data):
    model = load_model(TinyNet().eval(), input_size=32)
    with pytest.raises(DataError) as serial:
        resize_sweep(model, sweep_data, strict=True, **SWEEP)
    with pytest.raises(DataError) as dist:
        resize_sweep(model, sweep_data, strict=True, client=client, **SWEEP)
    assert str(dist.value) == str(serial.value)
    assert "04.png" in str(dist.value) and "drop --strict" in str(dist.value)
    assert "\n" not in str(dist.value)


def test_a_client_that_is_not_one_is_refused_before_any_work(sweep_data):
    model = load_model(TinyNet().eval(), input_size=32)
    for run in (
        lambda: resize_sweep(model, sweep_data, client="local:2", **SWEEP),
        lambda: relevance(model, sweep_data, layer="conv", target_class=1, client=4),
    ):
        with pytest.raises(RcvlabError, match=r"client must be a distributed\.Client") as e:
            run()
        assert "\n" not in str(e.value)


# -- relevance ------------------------------------------------------------------------------


@pytest.fixture
def red_files(tmp_path: Path) -> FileImageSet:
    """24 images; image 2 has no measure (not read), images 9-12 (after it, rows 8-11 of
    the pass: a whole shard of batches of 4) and 20 cannot be read."""
    paths, red = files(tmp_path, 24, missing={9, 10, 11, 12, 20}, seed=3, red=True)
    red[[9, 10, 11, 12, 20]] = 100.0
    red[2] = np.nan
    noisy = red + np.random.default_rng(5).normal(0, 25, len(red))
    return FileImageSet(paths, {"red": red, "noisy_red": noisy})


REL = dict(
    layer="conv", target_class=2, measures=["red", "noisy_red"], reps=3, batch_size=4, seed=1
)


def test_relevance_from_the_cluster_equals_serial(client, red_files):
    model = load_model(RedNet().eval(), input_size=16, layers=["conv", "fc"])
    with torch_threads(1):
        serial = relevance(model, red_files, device="cpu", **REL)
    with spying(client) as seen:
        dist = relevance(model, red_files, device="cpu", client=client, **REL)
    assert_same(without_meta(serial.to_dict()), without_meta(dist.to_dict()))
    for m in REL["measures"]:
        np.testing.assert_array_equal(serial.sensitivities[m], dist.sensitivities[m])
        np.testing.assert_array_equal(serial.directions[m], dist.directions[m])
        np.testing.assert_array_equal(serial.rows[m], dist.rows[m])
    used = [i for i in range(24) if i not in {2, 9, 10, 11, 12, 20}]
    assert dist.rows["red"].tolist() == used and dist.score("red").n == 18
    assert np.ptp(dist.sensitivities["noisy_red"]) > 0
    for key in ("n_readable", "n_used", "skipped", "n_without_measure", "layer_shape"):
        assert dist.meta[key] == serial.meta[key], key
    assert dist.meta["n_readable"] == 18 and dist.meta["workers"] == 2
    # the model and the images scattered once; one task per batch of 4 (23 images read)
    assert len(seen["scatter"]) == 1 and seen["scatter"][0][1]["broadcast"] is True
    shards = tasks_of(seen, "gradient_shard")
    assert len(shards) == len(seen["submit"]) == 6
    assert [args[2][4:6] for args in shards] == [(i, min(i + 4, 23)) for i in range(0, 23, 4)]
    carried = objects_in([args[2:] for args in shards])
    assert not [o for o in carried if isinstance(o, Model | ImageSet | nn.Module)]
    assert not list(arrays_in([args[2:] for args in shards]))


def test_relevance_progress_and_strict_error_on_the_cluster(client, red_files):
    model = load_model(RedNet().eval(), input_size=16, layers=["conv", "fc"])
    ticks: list[tuple[int, int]] = []
    relevance(
        model,
        red_files,
        device="cpu",
        client=client,
        progress=lambda d, t: ticks.append((d, t)),
        **REL,
    )
    assert ticks[-1] == (23, 23) and len(ticks) == 6  # one update per shard
    with pytest.raises(DataError) as serial:
        relevance(model, red_files, device="cpu", strict=True, **REL)
    with pytest.raises(DataError) as dist:
        relevance(model, red_files, device="cpu", strict=True, client=client, **REL)
    assert str(dist.value) == str(serial.value)
    assert "(image 8;" in str(dist.value) and "\n" not in str(dist.value)


def test_a_gradient_pass_shard_is_its_rows_of_the_whole_pass(red_files):
    """Shards on batch boundaries give the whole pass's rows exactly; a shard without a
    readable image gives arrays without columns; a shard outside the images is refused."""
    model = load_model(RedNet().eval(), input_size=16, layers=["conv", "fc"])
    kw = dict(batch_size=4, device="cpu")
    whole = gradient_pass(model, red_files, "conv", 2, **kw)
    for a, b in [(0, 4), (4, 12), (20, 24)]:
        part = gradient_pass(model, red_files, "conv", 2, shard=(a, b), **kw)
        np.testing.assert_array_equal(part.features, whole.features[a:b])
        np.testing.assert_array_equal(part.gradients, whole.gradients[a:b])
        np.testing.assert_array_equal(part.valid, whole.valid[a:b])
        assert part.skipped == {i: s for i, s in whole.skipped.items() if a <= i < b}
    empty = gradient_pass(model, red_files, "conv", 2, shard=(9, 13), **kw)
    assert empty.features.shape == empty.gradients.shape == (4, 0) and not empty.valid.any()
    assert sorted(empty.skipped) == [9, 10, 11, 12]
    for bad in [(4, 4), (-1, 3), (20, 25), (1.0, 3), 3]:
        with pytest.raises(RcvlabError, match="shard must be") as e:
            gradient_pass(model, red_files, "conv", 2, shard=bad, **kw)
        assert "\n" not in str(e.value)


# -- GPU workers ----------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_workers_match_the_cpu_sweep_and_relevance(sweep_data, red_files):
    """Workers on their GPU (device None: each worker's own) agree with a CPU run here."""
    from rcvlab.distributed import open_client

    tiny = load_model(TinyNet().eval(), input_size=32)
    red = load_model(RedNet().eval(), input_size=16, layers=["conv", "fc"])
    sweep = {k: v for k, v in SWEEP.items() if k != "device"}
    cpu_sweep = resize_sweep(tiny, sweep_data, device="cpu", **sweep)
    cpu_rel = relevance(red, red_files, device="cpu", **REL)
    with open_client("local:1", gpus=True) as c:
        gpu_sweep = resize_sweep(tiny, sweep_data, client=c, **sweep)
        gpu_rel = relevance(red, red_files, client=c, **REL)
        used = c.run(lambda: torch.cuda.max_memory_allocated())
    assert all(v > 0 for v in used.values())  # the worker ran on its GPU
    assert gpu_sweep.ids == cpu_sweep.ids
    np.testing.assert_allclose(gpu_sweep.p, cpu_sweep.p, rtol=1e-3, atol=1e-6)
    for m in REL["measures"]:
        a, b = gpu_rel.sensitivities[m], cpu_rel.sensitivities[m]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-3, m
