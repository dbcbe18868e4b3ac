"""Many small independent fits as tasks on a Dask cluster, with results equal to a serial run.

The fits of a profile (every network and layer), of a transfer experiment (every variant and
seed) and of the noise-size experiment (every layer) are independent and share large inputs
(the features). This module runs them on a ``distributed.Client``:

* :func:`shared_inputs` scatters the shared inputs **once**, to every worker
  (``broadcast=True``), and frees them when the block ends. Tasks then name them by their
  futures; no feature matrix travels with a task.
* :func:`run_tasks` submits one task per call, each run under :func:`single_threaded`
  (one BLAS thread, one torch thread), and returns the results in the order of the calls.

**Equal to the serial run.** A task runs the same function on the same inputs as the serial
loop; with one BLAS and one torch thread on both sides the arithmetic is the same, so the
results are bit-identical. (:func:`rcvlab.probe.profile.probe_layers` pins one BLAS thread
in its serial path too; the heads of :func:`rcvlab.analyses.transfer.transfer` match a
serial run under ``torch.set_num_threads(1)``.)

**A worker that dies.** Its running and queued tasks are recomputed on the other workers by
the scheduler. Scattered data cannot be recomputed (it has no task that made it), which is
why it is broadcast: every worker holds a copy, so losing one worker loses no input while one
worker is left. A worker that joins later (a nanny's restart) fetches what its tasks need
from its peers. The price is memory: every worker holds all the shared inputs of a call.

**Errors.** A task raising a :class:`rcvlab.errors.RcvlabError` gives the driver the same
exception with the same one-line message (its remote traceback dropped); when several tasks
fail, the error is that of the first in the order of the calls, as the serial loop would
raise it, and the tasks not yet finished are cancelled. Other exceptions (bugs) come back
as Dask raises them, with the remote traceback.

Dask is optional: this module imports ``distributed`` only when a function is called.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import torch
from threadpoolctl import threadpool_limits

from rcvlab.errors import RcvlabError

if TYPE_CHECKING:
    from distributed import Client, Future

K = TypeVar("K", bound=Hashable)

# Reference count of the tasks running under single_threaded() in this process: the thread
# settings are process-wide, so only the first task in pins them and only the last out
# restores them (a worker may run several tasks at once in threads).
_pin_lock = threading.Lock()
_pin_state: dict[str, Any] = {"depth": 0, "torch": 1, "blas": None}


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with one BLAS thread and one torch (intra-op) thread.

    Process-wide settings, restored when the last block running in the process ends, so
    nested and concurrent blocks are safe. Results of BLAS and torch kernels then do not
    depend on how many cores the process has.
    """
    with _pin_lock:
        if _pin_state["depth"] == 0:
            _pin_state["torch"] = torch.get_num_threads()
            torch.set_num_threads(1)
            _pin_state["blas"] = threadpool_limits(limits=1, user_api="blas")
        _pin_state["depth"] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_state["depth"] -= 1
            if _pin_state["depth"] == 0:
                _pin_state["blas"].restore_original_limits()
                _pin_state["blas"] = None
                torch.set_num_threads(_pin_state["torch"])


class Call(NamedTuple):
    """One task: ``fn(*args, **kwargs)``.

    ``fn`` must be importable by the workers (a module-level function of rcvlab: it travels
    by reference). Futures from :func:`shared_inputs` among the arguments, alone or inside
    tuples, lists and dicts, reach the task as their values.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Shared:
    """Among the arguments of a :class:`Call` given to :func:`run_calls`: the shared input
    named ``key`` (the value here, its scattered copy on a cluster)."""

    key: Hashable


def run_calls(
    client: Client | None,
    calls: Sequence[Call],
    shared: Mapping[Hashable, Any],
    *,
    name: str = "rcvlab-task",
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """Run ``calls`` here, one after the other, or as tasks on ``client``'s cluster.

    Parameters
    ----------
    client : distributed.Client or None
        None: the calls run in this process, in order, with this process's thread settings.
        A client: ``shared`` is scattered once (:func:`shared_inputs`) and every call is a
        task (:func:`run_tasks`, one BLAS and one torch thread each).
    calls : sequence of Call
        :class:`Shared` placeholders among a call's arguments (alone, or inside plain
        tuples, lists and dicts) stand for ``shared[key]``.
    shared : mapping
        The large inputs the calls share.
    name : str
        Prefix of the task keys.
    on_done : callable, optional
        ``on_done(i)`` once call ``i`` has returned (as :func:`run_tasks`; in order here).

    Returns
    -------
    list
        The results, in the order of ``calls``.
    """
    if client is None:
        out: list[Any] = []
        for i, c in enumerate(calls):
            out.append(c.fn(*_fill(c.args, shared), **_fill_kw(c.kwargs, shared)))
            if on_done is not None:
                on_done(i)
        return out
    from rcvlab.distributed.client import check_client

    check_client(client)
    with shared_inputs(client, shared) as ref:
        filled = [Call(c.fn, _fill(c.args, ref), _fill_kw(c.kwargs, ref)) for c in calls]
        return run_tasks(client, filled, name=name, on_done=on_done)


def _fill(args: Sequence[Any], ref: Mapping[Hashable, Any]) -> tuple[Any, ...]:
    return tuple(_filled(a, ref) for a in args)


def _fill_kw(kwargs: Mapping[str, Any], ref: Mapping[Hashable, Any]) -> dict[str, Any]:
    return {k: _filled(v, ref) for k, v in kwargs.items()}


def _filled(value: Any, ref: Mapping[Hashable, Any]) -> Any:
    """``value`` with every :class:`Shared` in it (inside plain tuples, lists and dicts)
    replaced by ``ref[key]``."""
    if isinstance(value, Shared):
        return ref[value.key]
    if type(value) in (tuple, list):
        return type(value)(_filled(v, ref) for v in value)
    if type(value) is dict:
        return {k: _filled(v, ref) for k, v in value.items()}
    return value


def call_single_threaded(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``fn(*args, **kwargs)`` under :func:`single_threaded` (the body of every task)."""
    with single_threaded():
        return fn(*args, **kwargs)


@contextmanager
def shared_inputs(client: Client, values: Mapping[K, Any]) -> Iterator[dict[K, Future]]:
    """Scatter ``values`` once to every worker; yield their futures; free them at the end.

    Parameters
    ----------
    client : distributed.Client
    values : mapping
        The large inputs that many tasks share (feature matrices, splits). Each value is
        scattered whole, under a key of its own (never shared with another call, so freeing
        it cannot remove another caller's data).

    Yields
    ------
    dict
        The same keys, each mapped to a future; pass the futures (alone or inside tuples,
        lists and dicts) among a task's arguments and the task receives the value.
    """
    keys = list(values)
    if not keys:
        yield {}
        return
    tag = uuid.uuid4().hex[:12]
    futures = client.scatter(
        {f"rcvlab-shared-{tag}-{i}": values[k] for i, k in enumerate(keys)},
        broadcast=True,
        hash=False,
    )
    out = {k: futures[f"rcvlab-shared-{tag}-{i}"] for i, k in enumerate(keys)}
    try:
        yield out
    finally:
        for f in out.values():
            f.release()


def run_tasks(
    client: Client,
    calls: Sequence[Call],
    *,
    name: str = "rcvlab-task",
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``[fn(*args, **kwargs) for fn, args, kwargs in calls]``, each call a task.

    Parameters
    ----------
    client : distributed.Client
    calls : sequence of Call
        The calls, in the order a serial loop would make them (it decides which error is
        raised when several fail, and the scheduler starts earlier calls first).
    name : str
        Prefix of the task keys (what the Dask dashboard shows).
    on_done : callable, optional
        ``on_done(i)`` on the driver as soon as call ``i`` has finished without error (for
        a progress bar), in the order the tasks finish.

    Returns
    -------
    list
        The results, in the order of ``calls``, whatever order the tasks finished in.

    Raises
    ------
    RcvlabError
        The first (in the order of ``calls``) task that raised one: the same exception and
        message; the other unfinished tasks are cancelled.
    """
    from distributed import as_completed, wait

    if not calls:
        return []
    tag = uuid.uuid4().hex[:12]
    n = len(calls)
    futures = [
        client.submit(
            call_single_threaded,
            # A plain tuple and dict: Dask resolves the futures inside them.
            c.fn,
            tuple(c.args),
            dict(c.kwargs),
            key=f"{name}-{tag}-{i}",
            # Earlier calls first: they are what the deterministic error order waits on.
            priority=n - i,
            pure=False,
        )
        for i, c in enumerate(calls)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for f in as_completed(futures):
            if f.status == "error":
                break
            if on_done is not None:
                on_done(index[f.key])
        failed = _first_error(futures)
        if failed is None:
            return list(client.gather(futures))
        # Only calls before the failed one can change which error the serial loop would
        # have raised first: wait for them alone.
        client.cancel(futures[failed + 1 :])
        wait(futures[:failed])
        earlier = _first_error(futures[:failed])
        if earlier is not None:
            failed = earlier
        exc = futures[failed].exception()
        if type(exc).__name__ == "KilledWorker":
            raise RcvlabError(
                f"Dask workers kept dying on task {failed} of {name} ({exc}); they may run "
                "out of memory: use fewer workers or less data per task, and rerun."
            ) from None
        if isinstance(exc, RcvlabError):
            raise exc.with_traceback(None) from None
        raise exc.with_traceback(futures[failed].traceback())  # a bug: its remote traceback
    finally:
        client.cancel([f for f in futures if not f.done()])
        for f in futures:
            f.release()


def _first_error(futures: Sequence[Future]) -> int | None:
    """Index of the first future (in order) that failed, or None."""
    for i, f in enumerate(futures):
        if f.status == "error":
            return i
    return None


__all__ = [
    "Call",
    "Shared",
    "call_single_threaded",
    "run_calls",
    "run_tasks",
    "shared_inputs",
    "single_threaded",
]
