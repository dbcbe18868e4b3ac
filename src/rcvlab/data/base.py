"""The one interface every data source implements: indexed images plus their concept measures."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from rcvlab.errors import DataError, UnknownNameError, did_you_mean


@dataclass(frozen=True)
class Skip:
    """An item that was left out, and why (listed in every run's ``skipped.csv``)."""

    path: str
    reason: str


class ImageSet:
    """Indexed images with per-image concept measures, classes and groups.

    Subclasses implement :meth:`_load` and :meth:`_fingerprint_payload`. Everything else
    (measure lookup, subsetting, fingerprints) lives here.

    Parameters
    ----------
    ids : sequence of str
        One identifier per image (a path for files), used in skip lists and manifests.
    measures : dict of str to array_like
        Concept measures, each of shape ``(n,)``; NaN marks a missing value.
    classes : sequence of str, optional
        Object class per image (``None`` when the source has no classes).
    groups : sequence of str, optional
        Source group per image (e.g. the slide a patch comes from) for group-disjoint splits.
    skipped : list of Skip, optional
        Items dropped while indexing the source.
    source : str
        The data spec this set was opened from (``"voc:DIR"``, ``"scaleset"``, ...).
    masks : sequence of str, optional
        One nuclei-mask file per image (for measures computed from masks, e.g.
        ``nuclei_area``); read by :meth:`load_mask`.
    """

    def __init__(
        self,
        ids: Sequence[str],
        measures: dict[str, Sequence[float] | np.ndarray],
        *,
        classes: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        skipped: list[Skip] | None = None,
        source: str = "",
        masks: Sequence[str] | None = None,
    ) -> None:
        self.ids = [str(i) for i in ids]
        n = len(self.ids)
        self.measures = {k: np.asarray(v, dtype=np.float64) for k, v in measures.items()}
        for k, v in self.measures.items():
            if v.shape != (n,):
                raise DataError(f"Measure '{k}' has shape {v.shape}, expected ({n},).")
        self.classes = None if classes is None else np.asarray([str(c) for c in classes])
        self.groups = None if groups is None else np.asarray([str(g) for g in groups])
        for name, arr in (("classes", self.classes), ("groups", self.groups)):
            if arr is not None and arr.shape != (n,):
                raise DataError(f"'{name}' has {arr.shape[0]} entries for {n} images.")
        self.skipped: list[Skip] = list(skipped or [])
        self.source = source
        self.masks = None if masks is None else [str(m) for m in masks]
        if self.masks is not None and len(self.masks) != n:
            raise DataError(f"{len(self.masks)} masks for {n} images.")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, n={len(self)}, "
            f"measures={sorted(self.measures)}, skipped={len(self.skipped)})"
        )

    # -- images -------------------------------------------------------------------------
    def load(self, i: int) -> Image.Image:
        """Return image ``i`` as an RGB PIL image; raise :class:`DataError` if unreadable."""
        return self._load(int(i))

    def _load(self, i: int) -> Image.Image:
        raise NotImplementedError

    @property
    def has_masks(self) -> bool:
        """Whether :meth:`load_mask` can give each image's nuclei mask."""
        return self.masks is not None

    def load_mask(self, i: int) -> np.ndarray:
        """Return the nuclei mask of image ``i`` as a 2-D array; :class:`DataError` if none."""
        if self.masks is None:
            raise DataError(
                f"Data {self.source or type(self).__name__} has no nuclei masks; give a 'mask' "
                "column in the CSV manifest."
            )
        return read_grey(self.masks[int(i)])

    # -- measures -----------------------------------------------------------------------
    def measure(self, name: str) -> np.ndarray:
        """Return the measure ``name`` as a float64 array of shape ``(n,)``.

        A name that the data does not hold but that :mod:`rcvlab.measures` registers
        (``nuclei_area``, ``glcm_contrast``, ``colourfulness`` ...) is computed from the
        images (and masks) once and kept. Images where it fails get NaN and are listed in
        ``skipped`` with the reason.
        """
        from rcvlab.measures import MEASURES

        if name not in self.measures and name in MEASURES:
            self.measures[name] = self._compute_measure(name)
        if name not in self.measures:
            raise UnknownNameError(
                f"Unknown measure '{name}' for data {self.source or type(self).__name__}."
                f"{did_you_mean(name, self.measures)} "
                f"Available: {', '.join(sorted(self.measures))}."
            )
        return self.measures[name]

    def _compute_measure(self, name: str) -> np.ndarray:
        from rcvlab.measures import compute_measure, get_measure

        spec = get_measure(name)
        if spec.needs_mask and not self.has_masks:
            raise DataError(
                f"Measure '{name}' needs nuclei masks, and data {self.source or 'given'} has "
                "none; add a 'mask' column to the CSV manifest."
            )
        out = np.full(len(self), np.nan)
        for i in range(len(self)):
            try:
                image = np.asarray(self.load(i)) if spec.needs_image else None
                mask = self.load_mask(i) if spec.needs_mask else None
                out[i] = compute_measure(name, image, mask)
            except (DataError, ValueError) as e:
                self.skipped.append(Skip(self.ids[i], f"measure {name}: {e}"))
        return out

    # -- identity -----------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A hash that changes whenever the images (or the recipe generating them) change."""
        payload = {
            "type": type(self).__name__,
            "ids": self.ids,
            "data": self._fingerprint_payload(),
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _fingerprint_payload(self) -> object:
        raise NotImplementedError

    def subset(self, index: Sequence[int] | np.ndarray) -> ImageSet:
        """Return a view on the images ``index`` (in that order)."""
        return SubsetImageSet(self, np.asarray(index, dtype=np.int64))


class SubsetImageSet(ImageSet):
    """A view on some images of a parent set."""

    def __init__(self, parent: ImageSet, index: np.ndarray) -> None:
        if index.size and (index.min() < 0 or index.max() >= len(parent)):
            raise DataError(f"Subset index out of range for a set of {len(parent)} images.")
        self.parent = parent
        self.index = index
        super().__init__(
            [parent.ids[i] for i in index],
            {k: v[index] for k, v in parent.measures.items()},
            classes=None if parent.classes is None else parent.classes[index],
            groups=None if parent.groups is None else parent.groups[index],
            skipped=parent.skipped,
            source=parent.source,
            masks=None if parent.masks is None else [parent.masks[i] for i in index],
        )

    def _load(self, i: int) -> Image.Image:
        return self.parent.load(int(self.index[i]))

    def load_mask(self, i: int) -> np.ndarray:
        return self.parent.load_mask(int(self.index[i]))

    def _fingerprint_payload(self) -> object:
        return {"parent": self.parent.fingerprint(), "index": self.index.tolist()}


def read_grey(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask image as a 2-D array (first channel of colour files); DataError if bad."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except FileNotFoundError as e:
        raise DataError(f"missing mask file {os.fspath(path)}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot decode mask {os.fspath(path)}: {e}") from e
    return arr[..., 0] if arr.ndim == 3 else arr


def read_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file as RGB, turning every decoding failure into :class:`DataError`."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"missing file {os.fspath(path)}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot decode image {os.fspath(path)}: {e}") from e


class FileImageSet(ImageSet):
    """Images stored as files on disk (paths as ids)."""

    def _load(self, i: int) -> Image.Image:
        return read_rgb(self.ids[i])

    def _fingerprint_payload(self) -> object:
        stats = []
        for p in self.ids:
            try:
                st = os.stat(p)
                stats.append((st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append(None)
        return {"stat": stats, "measures": {k: v.tolist() for k, v in self.measures.items()}}


class ArrayImageSet(ImageSet):
    """Images held in memory as ``(n, H, W, 3)`` uint8 arrays (tests, notebooks)."""

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], measures=None, **kw) -> None:
        self.images = [np.asarray(im) for im in images]
        for im in self.images:
            if im.ndim != 3 or im.shape[2] != 3:
                raise DataError(f"Expected H x W x 3 images, got shape {im.shape}.")
        ids = kw.pop("ids", None) or [f"array[{i}]" for i in range(len(self.images))]
        super().__init__(ids, measures or {}, **kw)

    def _load(self, i: int) -> Image.Image:
        im = self.images[i]
        if im.dtype != np.uint8:
            im = np.clip(im, 0, 255).astype(np.uint8)
        return Image.fromarray(im, "RGB")

    def _fingerprint_payload(self) -> object:
        h = hashlib.sha256()
        for im in self.images:
            h.update(str(im.shape).encode())
            h.update(np.ascontiguousarray(im).tobytes())
        return h.hexdigest()


__all__ = [
    "ArrayImageSet",
    "FileImageSet",
    "ImageSet",
    "Skip",
    "SubsetImageSet",
    "read_grey",
    "read_rgb",
]
