"""Feature extraction on a Dask cluster: shards computed by workers into the shared cache.

The driver (:func:`rcvlab.features.extract_features` with ``client=``) validates
everything, then hands the rows missing from the cache to :func:`cluster_runner`'s ``run``:

1. the rows are cut into batch-aligned shards (a few per worker, at most
   :data:`MAX_SHARD_BATCHES` batches each), so every batch holds the images a single
   process would put in it and the features are bit-identical;
2. the model, the image set and the options are pickled ONCE into a job file in the cache
   entry's folder (written atomically); each worker process loads it on its first shard
   and keeps it (:func:`load_job`), so a large network crosses the wire once per worker;
3. each task runs the single-process extractor on its shard, which writes the shard's
   chunks atomically into the cache, and returns a small :class:`Receipt` (never features;
   the user's errors ride in it, so Dask neither logs nor retries them);
4. the driver ticks its progress bar by images as receipts arrive, in whatever order, then
   merges and reads the cache as a single process does.

A worker that dies mid-shard loses only its chunk in the making (chunks are written to a
temporary name and renamed): Dask reruns the shard elsewhere, which computes only the
chunks that are missing, on the same batch boundaries, so the result is the same.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcvlab.distributed.client import check_client, has_gpu_workers, n_workers
from rcvlab.errors import RcvlabError
from rcvlab.progress import progress_bar

if TYPE_CHECKING:
    from distributed import Client

    from rcvlab.data.base import ImageSet
    from rcvlab.models.registry import Model

#: Shards per worker: enough that a slow or restarted worker does not hold up the end.
SHARDS_PER_WORKER = 4
#: Largest shard in batches: bounds the progress bar's steps and the work a death loses.
MAX_SHARD_BATCHES = 16


@dataclass(frozen=True)
class Receipt:
    """What a worker reports for one shard: rows ``[start, stop)`` are in the cache.

    Attributes
    ----------
    start, stop : int
        The shard's rows.
    n_computed : int
        Images that went through the network (fewer when a previous try wrote some chunks).
    n_skipped : int
        Unreadable images in the shard.
    elapsed : float
        Seconds the shard took on the worker, loading the job included.
    error : RcvlabError or None
        The user's error that stopped the shard (an unreadable image with ``strict``, a
        full disk ...): returned, not raised, so that Dask neither logs a traceback on the
        worker nor retries it; the driver raises it.
    """

    start: int
    stop: int
    n_computed: int
    n_skipped: int
    elapsed: float
    error: RcvlabError | None = None


@dataclass
class Job:
    """Everything a worker needs to compute any shard of one extraction."""

    model: Model
    images: ImageSet
    options: dict[str, Any]
    key: str
    #: An image file the driver can read (absolute path), or "" when the images are not
    #: files: a worker that cannot read it does not see the data and must say so rather
    #: than list every image as unreadable (and cache them as such).
    probe_file: str = ""


# Per worker process: the job last loaded, by its token (a digest of its pickled bytes, so a
# job sent again, e.g. by a second cache pass, is not read again), and one lock so that
# shards run one at a time per process (they share the model, whose hooks and device are
# per-module state).
_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()


def plan_shards(
    todo: Sequence[tuple[int, int]], batch_size: int, n_workers: int
) -> list[tuple[int, int]]:
    """Cut index ranges into shards whose boundaries fall on their range's batch boundaries.

    Parameters
    ----------
    todo : sequence of (start, stop)
        Ranges of missing rows (as :meth:`FeatureCache.missing` gives them).
    batch_size : int
    n_workers : int
        Workers of the cluster: about :data:`SHARDS_PER_WORKER` shards each, none over
        :data:`MAX_SHARD_BATCHES` batches.

    Returns
    -------
    list of (start, stop)
        Shards in order, covering ``todo`` exactly; within a range ``(a, b)`` every shard
        starts at ``a + k * batch_size``, where a single process would start a batch.
    """
    counts = [math.ceil((b - a) / batch_size) for a, b in todo if b > a]
    total = sum(counts)
    if not total:
        return []
    shards_wanted = max(min(total, SHARDS_PER_WORKER * max(n_workers, 1)), 1)
    per_shard = min(max(math.ceil(total / shards_wanted), 1), MAX_SHARD_BATCHES)
    shards = []
    for a, b in todo:
        for i0 in range(a, b, per_shard * batch_size):
            shards.append((i0, min(i0 + per_shard * batch_size, b)))
    return shards


def load_job(path: str, token: str) -> Job:
    """The job at ``path``, read once per worker process for each ``token``."""
    with _JOBS_LOCK:
        job = _JOBS.get(token)
        if job is None:
            with open(path, "rb") as f:
                job = pickle.load(f)
            from rcvlab.features.extract import choose_device

            # The worker's copy lives on its device, so that no shard moves the weights
            # there and back (the extractor leaves a module where it found it).
            job.model.module.to(choose_device(job.options.get("device"))).eval()
            # Keep one job only: a long-lived worker serves many extractions.
            _JOBS.clear()
            _JOBS[token] = job
        return job


def run_shard(path: str, token: str, start: int, stop: int) -> Receipt:
    """Compute rows ``[start, stop)`` of the job at ``path`` into its cache (on a worker).

    The user's errors (an unreadable image with ``strict``, a full disk ...) come back in
    the receipt's ``error``, exactly as the single-process extractor raises them.
    """
    from rcvlab.features.extract import extract_features

    t0 = time.perf_counter()
    job = load_job(path, token)
    if job.probe_file and not os.access(job.probe_file, os.R_OK):
        err = RcvlabError(
            f"Worker {socket.gethostname()} cannot read the images (e.g. {job.probe_file}); "
            "every worker must see the data at the same absolute paths (a shared folder)."
        )
        return Receipt(start, stop, 0, 0, time.perf_counter() - t0, err)
    try:
        with _RUN_LOCK:
            fs = extract_features(job.model, job.images, shard=(start, stop), **job.options)
    except RcvlabError as e:
        return Receipt(start, stop, 0, 0, time.perf_counter() - t0, e.with_traceback(None))
    if fs.key != job.key:
        raise RuntimeError(
            f"Worker computed cache key {fs.key}, the driver {job.key}: rcvlab versions differ "
            "between the driver and the workers?"
        )
    return Receipt(start, stop, fs.n_computed, len(fs.skipped), time.perf_counter() - t0)


def probe_file(images: ImageSet) -> str:
    """The absolute path of the first image of ``images`` that is a file here, or ""."""
    for ident in images.ids[:64]:
        if isinstance(ident, str) and os.path.isfile(ident):
            return os.path.abspath(ident)
    return ""


def write_job(folder: Path, job: Job) -> tuple[Path, str]:
    """Pickle ``job`` (cloudpickle: lambdas and local classes too) into a new file in
    ``folder``, atomically; returns its path and the job's token (digest of the bytes)."""
    import cloudpickle

    from rcvlab.features.cache import CacheError

    blob = cloudpickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    token = hashlib.sha256(blob).hexdigest()[:24]
    # A file per call (another driver may be running the same job and remove its own file).
    name = f".job-{token}-{uuid.uuid4().hex[:8]}.pkl"
    path, tmp = folder / name, folder / f"{name}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CacheError(
            f"Cannot write the cluster job file {path}: {e.strerror or e}; use a writable "
            "--cache-dir."
        ) from None
    return path, token


def cluster_runner(
    client: Client,
    model: Model,
    images: ImageSet,
    *,
    cache_dir: str | os.PathLike[str],
    key: str,
    options: Mapping[str, Any],
    batch_size: int,
    progress: bool | Callable[[int, int], None] = False,
) -> Callable[[list[tuple[int, int]], object], int]:
    """A ``run(todo, sink) -> images computed`` that computes ``todo`` on the cluster.

    ``run`` stands in for the single-process batch loop inside
    :func:`rcvlab.features.extract_features`: the workers write their chunks into
    ``cache_dir/key`` themselves, so ``sink`` is not used; the caller merges and reads.

    Parameters
    ----------
    client : distributed.Client
    model : Model
        Resolved (input size applied) as the driver uses it.
    images : ImageSet
    cache_dir : path
        Cache root every worker can write (on several machines, a shared folder).
    key : str
        The extraction's cache key (workers check that they compute the same one).
    options : mapping
        Keyword arguments of ``extract_features`` for the workers (``layers``,
        ``batch_size``, ``pooling`` ...), without ``shard``, ``client`` and ``progress``.
    batch_size : int
    progress : bool or callable
        As for ``extract_features``; ticked by images as shards finish.
    """
    check_client(client)
    job = Job(model, images, {**options, "cache_dir": str(cache_dir)}, key, probe_file(images))
    label = f"extract {model.name} ({model.weights}) on the cluster"

    def run(todo: list[tuple[int, int]], sink: object = None) -> int:
        from distributed import as_completed

        total = sum(b - a for a, b in todo)
        if not total:
            return 0
        shards = plan_shards(todo, batch_size, n_workers(client))
        device = options.get("device")
        on_gpu = str(device if device is not None else "").split(":")[0] != "cpu"
        resources = {"GPU": 1} if on_gpu and has_gpu_workers(client) else None
        path, token = write_job(Path(cache_dir) / key, job)
        futures = []
        done = 0
        try:
            futures = [
                client.submit(run_shard, str(path), token, a, b, pure=False, resources=resources)
                for a, b in shards
            ]
            with progress_bar(progress, total, label) as tick:
                for fut in as_completed(futures):
                    receipt = _result(fut)
                    tick(receipt.stop - receipt.start)
                    done += receipt.n_computed
        finally:
            if futures:
                client.cancel(futures)
            path.unlink(missing_ok=True)
        return done

    return run


def _result(fut: Any) -> Receipt:
    """A task's receipt; the user's errors re-raised as they are (one line, no Dask
    traceback), a shard that kept killing workers as one line."""
    from distributed import KilledWorker

    try:
        receipt = fut.result()
    except RcvlabError as e:  # raised where run_shard does not catch it
        raise e.with_traceback(None) from None
    except KilledWorker as e:
        raise RcvlabError(
            f"Dask workers kept dying on an extraction shard ({e}); they may run out of "
            "memory: use fewer workers or a smaller --batch-size, and rerun (finished "
            "shards stay in the cache)."
        ) from None
    if receipt.error is not None:
        raise receipt.error from None
    return receipt


__all__ = [
    "MAX_SHARD_BATCHES",
    "SHARDS_PER_WORKER",
    "Job",
    "Receipt",
    "cluster_runner",
    "load_job",
    "plan_shards",
    "run_shard",
    "write_job",
]
