"""On-disk feature cache: chunks written atomically, resumable, mergeable from many workers.

Layout under ``root/<key>/``::

    meta.json                      what the key stands for (model, weights, layers, data, ...)
    chunks/00000000-00000032.npz   features of images [0, 32), one file per written batch
    features.npz                   the merged result once every image is covered

Each file is written to a temporary name and renamed, so a killed process leaves either a
whole chunk or none. Chunks are independent: shards of one extraction may be computed by
different processes or machines sharing ``root`` and merged by any of them.

Several processes may finish the same extraction at once without a lock: chunks are deleted
only after ``features.npz`` is in place, and a reader that finds a chunk gone reads
``features.npz`` instead. A file that cannot be read (truncated, overwritten, failing its
CRC) is reported in one log line, renamed to ``<name>.corrupt-<timestamp>`` and recomputed
by :func:`rcvlab.features.extract_features`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import uuid
import zipfile
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np

from rcvlab.data.base import Skip
from rcvlab.errors import RcvlabError

FORMAT_VERSION = 1
_CHUNK = re.compile(r"^(\d{8})-(\d{8})\.npz$")
# A temporary file this old was left by a killed process, not one still writing.
STALE_TMP_SECONDS = 3600.0

log = logging.getLogger(__name__)

Arrays = tuple[dict[str, np.ndarray], np.ndarray, dict[int, Skip]]


class CacheError(RcvlabError):
    """A cache folder that cannot be created, written or repaired."""


class CacheMiss(RuntimeError):
    """Part of the requested range is not (or no longer) in the cache.

    Raised by :meth:`FeatureCache.read` when a range is not computed yet, when another
    process moved a file away while it was read, or when an unreadable file was moved
    aside: compute what :meth:`FeatureCache.missing` lists and read again.
    """


def cache_key(payload: dict[str, object]) -> str:
    """A short digest of everything that determines the features."""
    blob = json.dumps({"format": FORMAT_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _why(e: OSError) -> str:
    name = errno.errorcode.get(e.errno, "") if e.errno is not None else ""
    return f"{e.strerror or e}" + (f" ({name})" if name else "")


def _write_error(path: Path, e: OSError) -> CacheError:
    hint = (
        "free some space and rerun to resume (features computed so far are kept)"
        if e.errno in (errno.ENOSPC, errno.EDQUOT)
        else "use a writable --cache-dir"
    )
    return CacheError(
        f"Cannot write the feature cache file {path}: {_why(e)}; {hint}, "
        "or run without a cache (--cache-dir none)."
    )


def check_cache_dir(path: str | os.PathLike[str]) -> Path:
    """Create the cache root if needed and check that files can be written in it.

    Call it before any work, so that a run does not fail at its first cache write.

    Parameters
    ----------
    path : path
        The cache root (``~`` is expanded).

    Returns
    -------
    Path
        The expanded path.

    Raises
    ------
    CacheError
        One line naming the folder and the reason (read-only or full file system, a file
        in the way, no permission).
    """
    root = Path(path).expanduser()
    try:
        if root.exists() and not root.is_dir():
            raise CacheError(
                f"Cache folder {root} is a file, not a folder; pass another --cache-dir, "
                "or run without a cache (--cache-dir none)."
            )
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=root)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise CacheError(
            f"Cannot write the feature cache in {root}: {_why(e)}; pass a writable "
            "--cache-dir, or run without a cache (--cache-dir none)."
        ) from None
    return root


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise _write_error(path, e) from None


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# What reading a damaged npz raises: a truncated or garbage file (BadZipFile, EOFError,
# ValueError from the npy header), a failing CRC (BadZipFile), a damaged deflate stream
# (zlib.error), a member missing (KeyError), a damaged skip list (JSON errors).
_UNREADABLE = (zipfile.BadZipFile, EOFError, ValueError, KeyError, TypeError, zlib.error)


class FeatureCache:
    """The cache folder of one extraction key.

    Parameters
    ----------
    root : path
        Cache root (shared between runs).
    key : str
        From :func:`cache_key`.
    n : int
        Number of images of the data set.
    layers : list of str
        Layer names, in the order stored.
    meta : dict, optional
        Written once to ``meta.json`` for people reading the cache.

    Raises
    ------
    CacheError
        When the folder cannot be created or ``meta.json`` cannot be written.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str,
        n: int,
        layers: list[str],
        meta: dict[str, object] | None = None,
    ) -> None:
        self.dir = Path(root) / key
        self.chunk_dir = self.dir / "chunks"
        self.n = n
        self.layers = list(layers)
        try:
            self.chunk_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _write_error(self.chunk_dir, e) from None
        meta_path = self.dir / "meta.json"
        if meta is not None and not meta_path.exists():
            _atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=str).encode())

    @property
    def merged_path(self) -> Path:
        """``features.npz``: every image, written once all chunks are there."""
        return self.dir / "features.npz"

    def chunks(self) -> list[tuple[int, int, Path]]:
        """Written chunks as ``(start, stop, path)``, sorted."""
        out = []
        for p in self.chunk_dir.iterdir():
            m = _CHUNK.match(p.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), p))
        return sorted(out)

    def missing(self, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        """Index ranges within ``[start, stop)`` that no chunk covers yet."""
        stop = self.n if stop is None else stop
        chunks = self.chunks()
        # Checked after listing: chunks are deleted only once features.npz exists, so if it
        # does not exist now, the listing above was complete.
        if self.merged_path.exists():
            return []
        covered = np.zeros(self.n, dtype=bool)
        for a, b, _ in chunks:
            covered[a:b] = True
        gaps, i = [], start
        while i < stop:
            if covered[i]:
                i += 1
                continue
            j = i
            while j < stop and not covered[j]:
                j += 1
            gaps.append((i, j))
            i = j
        return gaps

    def write_chunk(
        self,
        start: int,
        stop: int,
        feats: dict[str, np.ndarray],
        valid: np.ndarray,
        skipped: dict[int, Skip],
    ) -> None:
        """Store features of images ``[start, stop)`` atomically.

        ``skipped`` maps an image's index in the data set to why it has no features.

        Raises
        ------
        CacheError
            One line when the file cannot be written (read-only or full file system).
        """
        arrays = {f"layer:{k}": np.asarray(v, dtype=np.float32) for k, v in feats.items()}
        arrays["valid"] = np.asarray(valid, dtype=bool)
        arrays["skipped"] = _encode_skips(skipped)
        _atomic_write_bytes(self.chunk_dir / f"{start:08d}-{stop:08d}.npz", _npz_bytes(arrays))

    def read(self, start: int = 0, stop: int | None = None) -> Arrays:
        """Assemble images ``[start, stop)`` from the merged file or the chunks.

        Returns
        -------
        (features, valid, skipped)
            ``{layer: (stop - start, d)}``, validity per row, and the skipped images by
            their index in the data set.

        Raises
        ------
        CacheMiss
            When part of the range is not in the cache (not computed yet, or a file that
            could not be read was just moved aside): compute :meth:`missing` and read again.
        """
        stop = self.n if stop is None else stop
        if self.merged_path.exists():
            return self._read_merged(start, stop)
        feats: dict[str, np.ndarray] = {}
        valid = np.zeros(stop - start, dtype=bool)
        skipped: dict[int, Skip] = {}
        seen = np.zeros(stop - start, dtype=bool)
        bad, vanished = [], False
        for a, b, p in self.chunks():
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi or seen[lo - start : hi - start].all():
                continue
            try:
                f, v, s = self._load(p, b - a, lo, hi, offset=a)
            except FileNotFoundError:
                vanished = True  # merged and deleted by another process meanwhile
                break
            except CacheMiss:
                bad.append(p)
                continue
            for k, arr in f.items():
                if k not in feats:
                    feats[k] = np.full((stop - start, arr.shape[1]), np.nan, dtype=np.float32)
                feats[k][lo - start : hi - start] = arr
            valid[lo - start : hi - start] = v
            seen[lo - start : hi - start] = True
            skipped.update(s)
        if bad:
            raise CacheMiss(f"{len(bad)} unreadable chunk(s) of {self.dir} moved aside")
        if vanished or not seen.all():
            if self.merged_path.exists():
                return self._read_merged(start, stop)
            raise CacheMiss(f"cache {self.dir} does not cover [{start}, {stop}) yet")
        return {k: feats[k] for k in self.layers if k in feats}, valid, skipped

    def _read_merged(self, start: int, stop: int) -> Arrays:
        try:
            feats, valid, skipped = self._load(self.merged_path, self.n, start, stop, offset=0)
        except FileNotFoundError:
            raise CacheMiss(f"{self.merged_path} was moved away while being read") from None
        return {k: feats[k] for k in self.layers if k in feats}, valid, skipped

    def _load(self, path: Path, rows: int, lo: int, hi: int, offset: int) -> Arrays:
        """Rows ``[lo, hi)`` of a file holding ``rows`` images from index ``offset``.

        A file that cannot be read, or whose arrays do not have the expected shapes, is
        moved aside (:class:`CacheMiss`); FileNotFoundError passes through.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                # every member is read whole, so a damaged one fails its CRC check here
                full = {k[6:]: z[k] for k in z.files if k.startswith("layer:")}
                valid = np.asarray(z["valid"], dtype=bool)
                skipped = _decode_skips(z["skipped"])
            problem = _shape_problem(full, valid, rows, self.layers)
        except FileNotFoundError:
            raise
        except OSError as e:
            if e.errno not in (None, errno.EINVAL, errno.EIO):
                raise  # the file system failed (EMFILE, EACCES ...): the file may be fine
            problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        except _UNREADABLE as e:
            problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if problem:
            self._move_aside(path, problem)
            raise CacheMiss(f"{path} could not be read ({problem})")
        feats = {k: v[lo - offset : hi - offset] for k, v in full.items()}
        return (
            feats,
            valid[lo - offset : hi - offset],
            {i: s for i, s in skipped.items() if lo <= i < hi},
        )

    def _move_aside(self, path: Path, problem: str) -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return  # another process found it first and moved it
        except OSError as e:
            raise CacheError(
                f"Feature cache file {path} cannot be read ({problem}) nor moved aside: "
                f"{_why(e)}; delete it by hand and rerun."
            ) from None
        log.warning(
            "Feature cache file %s cannot be read (%s); moved it to %s and recomputing it.",
            path,
            problem,
            target.name,
        )

    def merge(self) -> None:
        """Write ``features.npz`` from the chunks (all images must be covered), drop chunks.

        Safe while other processes read or merge the same cache: the merged file is
        written under a temporary name and renamed; chunks are deleted only after it is in
        place. Raises :class:`CacheMiss` like :meth:`read`.
        """
        if not self.merged_path.exists():
            feats, valid, skipped = self.read()
            arrays = {f"layer:{k}": v for k, v in feats.items()}
            arrays["valid"] = valid
            arrays["skipped"] = _encode_skips(skipped)
            _atomic_write_bytes(self.merged_path, _npz_bytes(arrays))
        self._drop_chunks()

    def _drop_chunks(self) -> None:
        """Delete the chunks (features.npz holds them all) and stale temporary files."""
        now = time.time()
        try:
            for _, _, p in self.chunks():
                p.unlink(missing_ok=True)
            for p in self.chunk_dir.glob(".*.tmp"):
                # a recent one may be another process's chunk being written right now
                try:
                    if now - p.stat().st_mtime > STALE_TMP_SECONDS:
                        p.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
        except OSError as e:
            if not isinstance(e, FileNotFoundError):
                log.warning("Could not delete merged chunks in %s: %s.", self.chunk_dir, _why(e))


def _shape_problem(
    feats: dict[str, np.ndarray], valid: np.ndarray, rows: int, layers: list[str]
) -> str:
    """Why arrays read from a cache file do not fit it ('' when they do)."""
    if valid.shape != (rows,):
        return f"{valid.shape[0] if valid.ndim else 0} rows instead of {rows}"
    for k, v in feats.items():
        if k not in layers:
            return f"unexpected layer {k!r}"
        if v.ndim != 2 or v.shape[0] != rows:
            return f"layer {k!r} has shape {v.shape}, expected ({rows}, d)"
    if valid.any() and set(feats) != set(layers):
        return "layers missing"
    return ""


def _encode_skips(skipped: dict[int, Skip]) -> np.ndarray:
    return np.asarray(json.dumps([[int(i), s.path, s.reason] for i, s in sorted(skipped.items())]))


def _decode_skips(arr: np.ndarray) -> dict[int, Skip]:
    return {int(i): Skip(p, r) for i, p, r in json.loads(str(arr))}


__all__ = [
    "FORMAT_VERSION",
    "CacheError",
    "CacheMiss",
    "FeatureCache",
    "cache_key",
    "check_cache_dir",
]
