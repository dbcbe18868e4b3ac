"""Dask clients for rcvlab: a loopback LocalCluster on this machine, or an existing cluster.

Only what the engine needs to stay on this machine is used for local clusters:
``LocalCluster(processes=True, host="127.0.0.1", dashboard_address=None,
threads_per_worker=1)``. Leaving ``host`` empty (or ``"0.0.0.0"``), or running workers as
threads, makes distributed look up the machine's public address (dask/distributed#8559);
with ``127.0.0.1`` every scheduler, nanny and worker listens and connects on loopback only.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from rcvlab.errors import RcvlabError

if TYPE_CHECKING:
    from distributed import Client

#: The one line shown when Dask is needed but not installed.
MISSING_DASK = (
    "Dask is not installed; pip install 'rcvlab[dask]' (or pip install 'dask[distributed]')."
)
BOTH_ENGINES = (
    "Give --cluster (a new cluster on this machine) or --scheduler (an existing cluster), not both."
)
#: Name under which the torch-threads worker plugin is registered (re-registering replaces).
THREADS_PLUGIN = "rcvlab-torch-threads"

_LOCAL = re.compile(r"^local:(\d+)$")
_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def check_dask() -> None:
    """Raise one line saying how to install Dask when ``dask.distributed`` is missing.

    Raises
    ------
    RcvlabError
        Dask or distributed cannot be imported.
    """
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise RcvlabError(MISSING_DASK) from None


def parse_cluster(spec: str) -> int:
    """Number of worker processes of a ``--cluster`` spec, ``local:N`` with N >= 1.

    Raises
    ------
    RcvlabError
        Anything else (one line with the accepted forms).
    """
    m = _LOCAL.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise RcvlabError(
            f"Unknown cluster {spec!r}; use local:N (N worker processes on this machine), "
            "or --scheduler tcp://HOST:PORT for a Dask cluster that is already running."
        )
    n = int(m.group(1))
    if n < 1:
        raise RcvlabError(f"Cluster {spec!r} has no workers; use local:N with N >= 1.")
    return n


def check_scheduler(address: str) -> str:
    """A scheduler address of the form ``tcp://HOST:PORT`` (returned stripped).

    Raises
    ------
    RcvlabError
        Another form, or a port outside 1-65535 (one line with an example).
    """
    text = address.strip() if isinstance(address, str) else ""
    m = _ADDRESS.match(text)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise RcvlabError(
            f"Scheduler address {address!r} is not tcp://HOST:PORT; give the address "
            "`dask scheduler` prints, e.g. tcp://10.0.0.5:8786."
        )
    return text


def check_engine(cluster: str | None = None, scheduler: str | None = None) -> None:
    """Check ``--cluster`` / ``--scheduler`` before any work, starting nothing.

    Raises
    ------
    RcvlabError
        Both given, a bad spec or address, or Dask not installed (one line each).
    """
    if cluster is not None and scheduler is not None:
        raise RcvlabError(BOTH_ENGINES)
    if cluster is not None:
        parse_cluster(cluster)
    if scheduler is not None:
        check_scheduler(scheduler)
    if cluster is not None or scheduler is not None:
        check_dask()


def visible_devices() -> list[str]:
    """CUDA devices of this process as ``CUDA_VISIBLE_DEVICES`` names them (``[]`` without
    CUDA): worker ``i`` of a local cluster sees only the ``i``-th of them (cycling)."""
    import torch

    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        names = [d.strip() for d in given.split(",") if d.strip()]
        if len(names) >= n:
            return names[:n]
    return [str(i) for i in range(n)]


def _torch_threads_plugin(threads: int | None) -> Any:
    from distributed import WorkerPlugin

    class TorchThreads(WorkerPlugin):
        """Pin torch's intra-op threads on every worker (and on restarted ones)."""

        def __init__(self, n: int | None) -> None:
            self.n = n

        def setup(self, worker: Any) -> None:
            import torch

            torch.set_num_threads(int(self.n or worker.state.nthreads))

    return TorchThreads(threads)


@contextmanager
def open_client(
    cluster: str | None = None,
    scheduler: str | None = None,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    gpus: bool | None = None,
    timeout: float = 10.0,
) -> Iterator[Client | None]:
    """A ``distributed.Client`` for ``--cluster local:N`` or ``--scheduler tcp://HOST:PORT``.

    Parameters
    ----------
    cluster : str, optional
        ``local:N``: start a LocalCluster of N worker processes on 127.0.0.1 (no dashboard),
        closed when the block ends.
    scheduler : str, optional
        ``tcp://HOST:PORT`` of a Dask scheduler already running (``dask scheduler``); its
        workers need rcvlab installed and, for extraction, must see the cache folder.
    threads_per_worker : int
        Dask threads of each local worker, and torch threads of each CPU worker (pinned by a
        worker plugin, also on a worker restarted after a crash); a GPU worker gets
        ``cores // N`` torch threads for preparing its inputs. With 1, a worker computes
        features bit-identical to one process run with ``torch.set_num_threads(1)``. On a
        scheduler's workers, torch uses each worker's own thread count.
    memory_limit : str, int or None
        Per local worker: ``"auto"`` splits this machine's memory evenly between the
        workers; bytes, a string such as ``"4GiB"``, or None (no limit).
    gpus : bool, optional
        Local workers on CUDA devices: each worker sees one device (``CUDA_VISIBLE_DEVICES``
        in its environment, worker i on device i, cycling) and offers the Dask resource
        ``GPU=1``. Default: when CUDA is available here. False on a CUDA machine: the
        workers see no device (CPU workers).
    timeout : float
        Seconds to wait for a scheduler to answer.

    Yields
    ------
    distributed.Client or None
        None when neither ``cluster`` nor ``scheduler`` is given (run in this process).

    Raises
    ------
    RcvlabError
        Both given, a bad spec or address, Dask not installed, ``gpus=True`` without CUDA,
        or a scheduler that does not answer (one line each, before anything starts).
    """
    if cluster is not None and scheduler is not None:
        raise RcvlabError(BOTH_ENGINES)
    if cluster is None and scheduler is None:
        yield None
        return
    if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int):
        raise RcvlabError(
            f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}."
        )
    if threads_per_worker < 1:
        raise RcvlabError(f"threads_per_worker must be >= 1, got {threads_per_worker}.")
    n = parse_cluster(cluster) if cluster is not None else 0
    address = check_scheduler(scheduler) if scheduler is not None else ""
    check_dask()
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        if address:
            try:
                client = stack.enter_context(Client(address, timeout=timeout))
            except (OSError, TimeoutError) as e:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise RcvlabError(
                    f"Cannot reach the Dask scheduler at {address} ({first}); start it with "
                    f"`dask scheduler` and workers with `dask worker {address}`, or check "
                    "the address."
                ) from None
            # Nothing is registered on a cluster that is not ours (a plugin would outlive
            # this command); its workers keep their own thread settings.
            _wait_for_workers(client, 1, timeout, f"the Dask scheduler at {address}")
        else:
            devices = visible_devices()
            if gpus is None:
                gpus = bool(devices)
            if gpus and not devices:
                raise RcvlabError(
                    "gpus=True but CUDA is not available here; leave gpus out or run on CPU."
                )
            limit = _memory_limit(memory_limit, n)
            # Each nanny sets its "pre-spawn" variables (OMP_NUM_THREADS=1 ...) in THIS
            # process's environment before starting its worker: put them back afterwards.
            stack.callback(_restore_environ, _pre_spawn_environ())
            with warnings.catch_warnings():
                # the health/metrics HTTP server moving off a busy port 8787 is no news
                warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
                local = LocalCluster(
                    n_workers=0 if gpus else n,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    threads_per_worker=threads_per_worker,
                    memory_limit=limit,
                    silence_logs=logging.ERROR,
                    # CPU workers by choice on a CUDA machine: hide the devices from them.
                    env={"CUDA_VISIBLE_DEVICES": ""} if devices and not gpus else None,
                )
            stack.enter_context(local)
            if gpus:
                # Same worker options as LocalCluster's, plus each worker's own device:
                # CUDA_VISIBLE_DEVICES is set in the worker process before torch uses CUDA.
                base = local.new_spec
                for i in range(n):
                    local.worker_spec[i] = {
                        "cls": base["cls"],
                        "options": {
                            **base["options"],
                            "env": {"CUDA_VISIBLE_DEVICES": devices[i % len(devices)]},
                            "resources": {"GPU": 1},
                        },
                    }
                local.scale(n)
            client = stack.enter_context(Client(local, timeout=timeout))
            # A GPU worker's CPU threads only prepare its inputs (no bit-identity at stake):
            # it gets its share of the cores; CPU workers the threads they compute with.
            torch_threads = max(1, (os.cpu_count() or 1) // n) if gpus else threads_per_worker
            client.register_plugin(_torch_threads_plugin(torch_threads), name=THREADS_PLUGIN)
            _wait_for_workers(client, n, max(timeout, 120.0), "the local cluster")
        yield client


def _wait_for_workers(client: Client, n: int, timeout: float, what: str) -> None:
    """Wait until ``n`` workers are up; a one-line error after ``timeout`` seconds."""
    try:
        client.wait_for_workers(n, timeout=timeout)
    except (TimeoutError, OSError):
        have = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        raise RcvlabError(
            f"{have} of {n} Dask worker(s) came up at {what} within {timeout:.0f} s; start "
            "workers (`dask worker ADDRESS`) or ask for fewer (--cluster local:N)."
        ) from None


def _pre_spawn_environ() -> dict[str, str | None]:
    """This process's values of the variables Dask's nannies set before spawning."""
    import dask

    keys = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    return {k: os.environ.get(k) for k in keys}


def _restore_environ(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _memory_limit(memory_limit: str | int | None, n: int) -> int | str | None:
    """``"auto"`` as this machine's memory split over ``n`` workers (as LocalCluster does)."""
    if memory_limit != "auto":
        return memory_limit
    from distributed.system import MEMORY_LIMIT

    return int(MEMORY_LIMIT // max(n, 1))


def check_client(client: Any) -> None:
    """Raise one line unless ``client`` is None or a ``distributed.Client``.

    Raises
    ------
    RcvlabError
        Anything else (naming its type and how to open a client).
    """
    if client is not None and not (
        hasattr(client, "submit")
        and hasattr(client, "scatter")
        and hasattr(client, "scheduler_info")
    ):
        raise RcvlabError(
            f"client must be a distributed.Client, got {type(client).__name__}; open one with "
            "rcvlab.distributed.open_client('local:N'), or pass None to run here."
        )


def n_workers(client: Client) -> int:
    """Workers of ``client``'s cluster now (at least 1)."""
    return max(len(client.scheduler_info(n_workers=-1).get("workers", {})), 1)


def has_gpu_workers(client: Client) -> bool:
    """Whether any worker of ``client``'s cluster offers the Dask resource ``GPU``."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers.values())


__all__ = [
    "MISSING_DASK",
    "THREADS_PLUGIN",
    "check_client",
    "check_dask",
    "check_scheduler",
    "has_gpu_workers",
    "n_workers",
    "open_client",
    "parse_cluster",
    "visible_devices",
]
