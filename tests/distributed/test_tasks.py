"""The many small fits as Dask tasks: profiles, transfer heads and noise-size fits from a
2-worker loopback cluster equal the serial run; inputs are scattered once; a user error in a
task is the same one-line error; a worker killed mid-run changes nothing."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cloudpickle
import numpy as np
import pytest
import tests.analyses.test_transfer as transfer_tests
import torch
from tests.analyses.test_transfer import Conv2, chain_model, disc_patches
from threadpoolctl import threadpool_info

from rcvlab import load_model
from rcvlab.analyses.noise import noise_size
from rcvlab.analyses.transfer import transfer
from rcvlab.distributed.tasks import (
    Call,
    Shared,
    run_calls,
    run_tasks,
    shared_inputs,
    single_threaded,
)
from rcvlab.errors import DataError, UnknownNameError
from rcvlab.probe.profile import probe_layers

# The workers import rcvlab but not the test folders: the task functions and the tiny models
# defined here and in the transfer tests travel by value.
for _module in (sys.modules[__name__], transfer_tests):
    cloudpickle.register_pickle_by_value(_module)

TOL = 1e-12


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal structure and text; numbers equal within ``TOL`` (NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float | np.floating) and not isinstance(a, bool):
        assert isinstance(b, float | np.floating), where
        if math.isnan(a):
            assert math.isnan(b), where
        else:
            assert abs(a - b) <= TOL, (where, a, b)
    else:
        assert a == b, (where, a, b)


def without_meta(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "meta"}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def spying(client: Any) -> Iterator[dict[str, list[Any]]]:
    """Record every ``scatter`` and ``submit`` of ``client`` (they still run)."""
    seen: dict[str, list[Any]] = {"scatter": [], "submit": []}
    scatter, submit = client.scatter, client.submit

    def spy_scatter(data: Any, **kw: Any) -> Any:
        seen["scatter"].append((data, kw))
        return scatter(data, **kw)

    def spy_submit(*args: Any, **kw: Any) -> Any:
        seen["submit"].append(args)
        return submit(*args, **kw)

    client.scatter, client.submit = spy_scatter, spy_submit
    try:
        yield seen
    finally:
        del client.scatter, client.submit  # back to the class's methods


def arrays_in(value: Any) -> Iterator[np.ndarray]:
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from arrays_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from arrays_in(v)


# -- probe_layers ---------------------------------------------------------------------------


def planted(n: int = 90, seed: int = 0) -> tuple[dict[str, np.ndarray], dict, np.ndarray, Any]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.1, 0.9, n)
    b = rng.standard_normal((n, 25)) * 0.05
    b[:, :3] += np.outer(y, [2.0, -1.0, 0.5])
    feats = {
        "a": rng.standard_normal((n, 12)).astype(np.float32),
        "b": b + 3.0,
        "c": rng.standard_normal((n, 70)),  # d > n_train: the min-norm / small-n regime
    }
    random = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    classes = np.repeat(["bird", "car", "dog"], n // 3)
    return feats, random, y, classes


@pytest.mark.parametrize("regressor", ["ols", "ridge"])
def test_probe_profile_from_the_cluster_equals_serial(client, regressor):
    feats, random, y, classes = planted()
    kw = dict(
        reps=4,
        regressor=regressor,  # ridge without alpha: leave-one-out choice per fit
        classes=classes,
        random_features=random,
        shuffled=True,
        split="per-class",
        min_images=10,
        seed=3,
    )
    serial = probe_layers(feats, y, **kw)
    with spying(client) as seen:
        dist = probe_layers(feats, y, client=client, **kw)
    assert_same(without_meta(serial.to_dict()), without_meta(dist.to_dict()))
    assert set(dist.profiles) == {"model", "random", "shuffled"}
    if regressor == "ridge":
        assert dist.extra["ridge_alpha_chosen"]["model"]["b"]  # the LOO choices came back
    # scattered once, to every worker; one task per (network, layer), none carrying features
    assert len(seen["scatter"]) == 1 and seen["scatter"][0][1]["broadcast"] is True
    assert len(seen["scatter"][0][0]) == 2 * 3 + 1  # 6 feature matrices and the splits
    assert len(seen["submit"]) == 6
    assert not list(arrays_in(seen["submit"]))  # features and splits are all futures


def test_probe_leave_one_class_out_from_the_cluster_equals_serial(client):
    feats, random, y, classes = planted(seed=1)
    kw = dict(classes=classes, random_features=random, split="leave-one-class-out", seed=0)
    serial = probe_layers(feats, y, **kw)
    dist = probe_layers(feats, y, client=client, **kw)
    assert_same(without_meta(serial.to_dict()), without_meta(dist.to_dict()))


# -- transfer -------------------------------------------------------------------------------


def same_transfer(a: Any, b: Any) -> None:
    assert_same(without_meta(a.to_dict()), without_meta(b.to_dict()))
    for frame in ("to_frame", "predictions_frame", "class_frame", "summary_frame"):
        fa, fb = getattr(a, frame)(), getattr(b, frame)()
        assert list(fa.columns) == list(fb.columns) and len(fa) > 0
        assert_same(fa.to_dict("list"), fb.to_dict("list"), frame)
    assert list(a.heads) == list(b.heads)
    for k in a.heads:
        for name, t in a.heads[k].items():
            assert torch.equal(t, b.heads[k][name]), (k, name)


@pytest.mark.parametrize("cached", [False, True])
def test_transfer_from_the_cluster_equals_serial_with_one_thread(client, cached, tmp_path):
    data = disc_patches(n_slides=6, per_class=2)
    kw = dict(seeds=2, epochs=3, lr=1e-2, batch_size=8)
    variants = ["pretrained", "scratch", "pruned:dark"]
    with torch_threads(1):
        serial = transfer(chain_model(), data, variants, **kw)
    cache = tmp_path / "cache" if cached else None  # with a cache, extraction on the cluster
    with spying(client) as seen:
        dist = transfer(chain_model(), data, variants, client=client, cache_dir=cache, **kw)
    same_transfer(serial, dist)
    assert len(dist.runs) == 6 and np.isfinite(dist.to_frame().mae).all()
    # features scattered once: the measure and one matrix per (network, layer) read:
    # model/squash (pretrained), model/dark (pruned), random/squash (scratch)
    scattered = [s for s in seen["scatter"] if s[1].get("broadcast")]
    assert len(scattered) == 1 and len(scattered[0][0]) == 1 + 3
    heads = [args for args in seen["submit"] if getattr(args[1], "__name__", "") == "_linear_run"]
    assert len(heads) == 6
    for args in heads:  # a head's task carries row indices, never a feature matrix
        assert all(a.ndim == 1 and a.size <= len(data) for a in arrays_in(args))
    if cached:
        assert any(cache.iterdir())  # the workers wrote their shards there
    else:
        assert len(seen["scatter"]) == 1 and len(seen["submit"]) == 6
    n = len(data)
    for args in seen["submit"]:  # a task carries row indices, never a feature matrix
        assert all(a.ndim == 1 and a.size <= n for a in arrays_in(args))


def test_transfer_finetune_from_the_cluster_equals_serial(client, tmp_path):
    data = disc_patches(n_slides=4, per_class=2)
    m = load_model(Conv2().eval(), input_size=32, layers=["a", "b"])
    kw = dict(seeds=2, mode="finetune", epochs=2, lr=1e-2, batch_size=8)
    with torch_threads(1):
        serial = transfer(m, data, ["scratch", "pruned:a"], checkpoint_dir=tmp_path / "s", **kw)
    dist = transfer(
        m, data, ["scratch", "pruned:a"], client=client, checkpoint_dir=tmp_path / "d", **kw
    )
    same_transfer(serial, dist)
    names = sorted(p.name for p in (tmp_path / "s").glob("*.pt"))
    assert names == sorted(p.name for p in (tmp_path / "d").glob("*.pt")) and len(names) == 4
    for name in names:  # the workers wrote the same networks
        a, b = (torch.load(tmp_path / d / name) for d in ("s", "d"))
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_user_error_in_a_transfer_task_is_the_same_one_line_error(client):
    data = disc_patches(n_slides=6, per_class=2)
    kw = dict(seeds=2, epochs=1, lr=1e30, batch_size=8)  # the heads diverge
    with pytest.raises(DataError) as serial:
        transfer(chain_model(), data, ["pretrained"], **kw)
    with pytest.raises(DataError) as dist:
        transfer(chain_model(), data, ["pretrained"], client=client, **kw)
    assert str(dist.value) == str(serial.value)
    assert "never reached a finite validation MAE" in str(dist.value)
    assert "\n" not in str(dist.value)


# -- noise_size -----------------------------------------------------------------------------


class Padded(torch.nn.Module):
    """Two 3x3 convolutions with zero padding: regular GAP sees the padding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x)))


def test_noise_size_from_the_cluster_equals_serial(client):
    m = load_model(Padded().eval(), input_size=32, layers=["c1", "c2"])
    kw = dict(sizes="16,24,32", n_train=4, n_test=6, reps=3, device="cpu")
    serial = noise_size(m, **kw)
    with spying(client) as seen:
        dist = noise_size(m, client=client, **kw)
    assert_same(without_meta(serial.to_dict()), without_meta(dist.to_dict()))
    assert [len(e.r2_gap) for e in dist.layers] == [3, 3]
    assert all(e.r2_corrected is not None for e in dist.layers)  # both poolings fitted
    assert len(seen["scatter"]) == 1 and len(seen["submit"]) == 2  # one task per layer


# -- the task layer -------------------------------------------------------------------------


def double_row_sum(X: np.ndarray, i: int, *, delay: float = 0.0) -> float:
    time.sleep(delay)
    return 2.0 * float(X[i].sum())


def fail_at(X: np.ndarray, i: int, bad: dict[int, str | None]) -> float:
    """Row ``i``'s sum; rows in ``bad`` raise a DataError: at once when ``bad[i]`` is None,
    else once the file ``bad[i]`` exists. Every failing row first creates ``<its row>.done``
    next to the files named (so one call can wait for another to have failed)."""
    if i in bad:
        wait_for = bad[i]
        if wait_for is not None:
            deadline = time.monotonic() + 60
            while not os.path.exists(wait_for) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # the other call's error reaches the scheduler first
        for path in bad.values():
            if path is not None:
                open(os.path.join(os.path.dirname(path), f"{i}.done"), "w").close()
        raise DataError(f"row {i} is bad (value {X[i, 0]:g}); drop it")
    if i < 0:
        raise ValueError("a bug, not a user error")
    return float(X[i].sum())


def test_results_come_back_in_the_order_of_the_calls(client):
    X = np.arange(40.0).reshape(8, 5)
    with shared_inputs(client, {"X": X}) as ref:
        # the first calls are the slowest: they finish last
        calls = [Call(double_row_sum, (ref["X"], i), {"delay": 0.05 * (8 - i)}) for i in range(8)]
        got = run_tasks(client, calls)
    assert got == [2.0 * X[i].sum() for i in range(8)]


def test_run_calls_here_and_on_the_cluster_agree(client):
    X = np.arange(12.0).reshape(4, 3)
    # placeholders at the top level and inside a plain dict / list
    calls = [Call(double_row_sum, (Shared("X"), i)) for i in range(3)]
    calls.append(Call(sum_of, ({"a": Shared("X"), "b": [Shared("X"), 1.0]},)))
    expected = [2 * X[i].sum() for i in range(3)] + [2 * X.sum() + 1.0]
    assert run_calls(None, calls, {"X": X}) == expected
    assert run_calls(client, calls, {"X": X}) == expected


def sum_of(d: dict[str, Any]) -> float:
    return float(d["a"].sum() + d["b"][0].sum() + d["b"][1])


def test_a_user_error_in_a_task_is_the_first_one_in_call_order(client, tmp_path):
    X = np.arange(30.0).reshape(10, 3)
    with pytest.raises(DataError) as serial:
        run_calls(
            None, [Call(fail_at, (Shared("X"), i, {2: None, 6: None})) for i in range(10)], {"X": X}
        )
    # call 2 fails only after call 6 has failed: the error is still call 2's, as in the
    # serial loop
    bad = {2: str(tmp_path / "6.done"), 6: None}
    with pytest.raises(DataError) as dist:
        run_calls(client, [Call(fail_at, (Shared("X"), i, bad)) for i in range(10)], {"X": X})
    assert (tmp_path / "6.done").exists() and (tmp_path / "2.done").exists()
    assert type(dist.value) is DataError
    assert str(dist.value) == str(serial.value) == "row 2 is bad (value 6); drop it"
    assert dist.value.__cause__ is None and dist.value.__suppress_context__


def test_other_error_types_come_back_as_they_are(client):
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="a bug"):
        run_calls(client, [Call(fail_at, (Shared("X"), -1, {}))], {"X": X})
    with pytest.raises(UnknownNameError):  # a KeyError subclass keeps its class
        run_calls(client, [Call(raise_unknown, ())], {})


def raise_unknown() -> None:
    raise UnknownNameError("unknown layer 'mixed99'; available: mixed0, mixed1")


def threads_seen() -> tuple[int, list[int]]:
    return torch.get_num_threads(), [
        p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"
    ]


def test_tasks_run_with_one_torch_and_one_blas_thread(client):
    torch_n, blas = run_tasks(client, [Call(threads_seen)])[0]
    assert torch_n == 1 and blas and set(blas) == {1}


def test_single_threaded_nests_and_restores():
    before = threads_seen()
    with single_threaded():
        with single_threaded():
            assert threads_seen()[0] == 1 and set(threads_seen()[1]) <= {1}
        assert threads_seen()[0] == 1  # the outer block still holds the pin
    assert threads_seen() == before


def test_no_calls_no_tasks(client):
    assert run_tasks(client, []) == []


def test_shared_inputs_are_on_every_worker_and_freed_after_the_block(client):
    with shared_inputs(client, {"X": np.zeros(3)}) as ref:
        key = ref["X"].key
        assert len(client.who_has([ref["X"]])[key]) == 2  # a copy on each worker

    def held() -> bool:
        return any(key in keys for keys in client.has_what().values())

    deadline = time.time() + 10
    while held():
        assert time.time() < deadline, "the scattered input was not freed"
        time.sleep(0.05)


def test_a_worker_killed_mid_run_changes_nothing(client):
    """The scattered input has a copy on every worker; the killed worker's tasks are
    recomputed on the other one, and the results are the same."""
    X = np.arange(60.0).reshape(12, 5)
    pids = client.run(os.getpid)
    assert len(pids) == 2
    victim = pids[sorted(pids)[0]]
    killed_at: list[float] = []

    def kill() -> None:
        os.kill(victim, signal.SIGKILL)
        killed_at.append(time.monotonic())

    timer = threading.Timer(0.6, kill)
    calls = [Call(double_row_sum, (Shared("X"), i), {"delay": 0.25}) for i in range(12)]
    timer.start()
    try:
        got = run_calls(client, calls, {"X": X})
        done_at = time.monotonic()
    finally:
        timer.join()
    assert got == [2.0 * X[i].sum() for i in range(12)]
    assert killed_at and killed_at[0] < done_at  # the worker died mid-run
    client.wait_for_workers(2, timeout=120)  # the nanny restarts it for the other tests
    assert victim not in client.run(os.getpid).values()
