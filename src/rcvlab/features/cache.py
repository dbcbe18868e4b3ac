"""On-disk feature cache: chunks written atomically, resumable, mergeable from many workers.

Layout under ``root/<key>/``::

    meta.json                      what the key stands for (model, weights, layers, data, ...)
    chunks/00000000-00000032.npz   features of images [0, 32), one file per written batch
    features.npz                   the merged result once every image is covered

Each chunk is written to a temporary name and renamed, so a killed process leaves either a
whole chunk or none. Chunks are independent: shards of one extraction may be computed by
different processes or machines sharing ``root`` and merged by any of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from pathlib import Path

import numpy as np

from rcvlab.data.base import Skip

FORMAT_VERSION = 1
_CHUNK = re.compile(r"^(\d{8})-(\d{8})\.npz$")


def cache_key(payload: dict[str, object]) -> str:
    """A short digest of everything that determines the features."""
    blob = json.dumps({"format": FORMAT_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


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
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "meta.json"
        if meta is not None and not meta_path.exists():
            _atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=str).encode())

    @property
    def merged_path(self) -> Path:
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
        if self.merged_path.exists():
            return []
        covered = np.zeros(self.n, dtype=bool)
        for a, b, _ in self.chunks():
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
        """
        arrays = {f"layer:{k}": np.asarray(v, dtype=np.float32) for k, v in feats.items()}
        arrays["valid"] = np.asarray(valid, dtype=bool)
        arrays["skipped"] = _encode_skips(skipped)
        _atomic_write_bytes(self.chunk_dir / f"{start:08d}-{stop:08d}.npz", _npz_bytes(arrays))

    def read(
        self, start: int = 0, stop: int | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, Skip]]:
        """Assemble images ``[start, stop)`` from the merged file or the chunks."""
        stop = self.n if stop is None else stop
        if self.merged_path.exists():
            return self._load(self.merged_path, start, stop, offset=0)
        if self.missing(start, stop):
            raise RuntimeError(f"cache {self.dir} does not cover [{start}, {stop}) yet")
        feats: dict[str, np.ndarray] = {}
        valid = np.zeros(stop - start, dtype=bool)
        skipped: dict[int, Skip] = {}
        seen = np.zeros(stop - start, dtype=bool)
        for a, b, p in self.chunks():
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi or seen[lo - start : hi - start].all():
                continue
            f, v, s = self._load(p, lo, hi, offset=a)
            for k, arr in f.items():
                if k not in feats:
                    feats[k] = np.full((stop - start, arr.shape[1]), np.nan, dtype=np.float32)
                feats[k][lo - start : hi - start] = arr
            valid[lo - start : hi - start] = v
            seen[lo - start : hi - start] = True
            skipped.update(s)
        return {k: feats[k] for k in self.layers if k in feats}, valid, skipped

    @staticmethod
    def _load(
        path: Path, lo: int, hi: int, offset: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, Skip]]:
        with np.load(path) as z:
            feats = {
                k[6:]: z[k][lo - offset : hi - offset] for k in z.files if k.startswith("layer:")
            }
            valid = z["valid"][lo - offset : hi - offset]
            skipped = _decode_skips(z["skipped"])
        return feats, valid, {i: s for i, s in skipped.items() if lo <= i < hi}

    def merge(self) -> None:
        """Write ``features.npz`` from the chunks (all images must be covered), drop chunks."""
        if self.merged_path.exists():
            return
        feats, valid, skipped = self.read()
        arrays = {f"layer:{k}": v for k, v in feats.items()}
        arrays["valid"] = valid
        arrays["skipped"] = _encode_skips(skipped)
        _atomic_write_bytes(self.merged_path, _npz_bytes(arrays))
        for _, _, p in self.chunks():
            p.unlink(missing_ok=True)
        for p in self.chunk_dir.glob(".*.tmp"):  # left by a process killed mid-write
            p.unlink(missing_ok=True)


def _encode_skips(skipped: dict[int, Skip]) -> np.ndarray:
    return np.asarray(json.dumps([[int(i), s.path, s.reason] for i, s in sorted(skipped.items())]))


def _decode_skips(arr: np.ndarray) -> dict[int, Skip]:
    return {int(i): Skip(p, r) for i, p, r in json.loads(str(arr))}


__all__ = ["FORMAT_VERSION", "FeatureCache", "cache_key"]
