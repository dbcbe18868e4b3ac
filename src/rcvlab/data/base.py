"""The one interface every data source implements: indexed images plus their concept measures.

Image files are decoded in one place, :func:`read_rgb` (masks: :func:`read_grey`), which
every file-based source uses.

Orientation
    The EXIF orientation tag is applied (:func:`PIL.ImageOps.exif_transpose`) to images and
    masks alike, each by its own tag: the pixels are the picture as a viewer shows it.
Bit depth
    Pillow's ``convert("RGB")`` clips wide grey modes to 0..255 (a 16-bit PNG becomes
    0 / 255), so those are scaled to 8 bits first (:func:`to_uint8`):

    - ``I;16`` (16-bit PNG, TIFF): by the type's range, ``round(x / 257)`` (65535 -> 255);
    - ``I`` (32-bit integers: 16-bit PGM, 32-bit TIFF) and ``F`` (32-bit float): the
      container says nothing about the range of the data (a 12- or 16-bit scan is often
      stored as 32-bit), so the scale is read from the values: integers within 0..255 are
      kept, within 0..65535 divided by 257; floats within [0, 1] are multiplied by 255
      (scikit-image's convention), within [0, 255] kept; anything else (negative values,
      larger ones) is stretched from the image's own minimum and maximum to 0..255.
      Values are rounded to the nearest integer. NaN or infinite values are an error.

    The same rule converts the arrays of an :class:`ArrayImageSet`. Masks keep their values
    (:func:`read_grey`): only their order matters to the binarisation of the measures.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

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
        ``nuclei_area``; an empty string where an image has none); read by :meth:`load_mask`.
    strict : bool
        Raise at the first image (or mask) that cannot be read while computing a measure
        (:meth:`measure`), instead of giving it NaN and listing it in ``skipped``.
    """

    #: Whether :meth:`measure` raises at the first unreadable item (set by the readers).
    strict: bool = False

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
        strict: bool = False,
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
        self.strict = bool(strict)

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
        path = self.masks[int(i)]
        if not path:
            raise DataError(f"missing mask: no mask file given for {self.ids[int(i)]}")
        return read_grey(path)

    # -- measures -----------------------------------------------------------------------
    def measure(self, name: str) -> np.ndarray:
        """Return the measure ``name`` as a float64 array of shape ``(n,)``.

        A name that the data does not hold but that :mod:`rcvlab.measures` registers
        (``nuclei_area``, ``glcm_contrast``, ``colourfulness`` ...) is computed from the
        images (and masks) once and kept. Images where it fails get NaN and are listed in
        ``skipped`` with the reason (with ``strict``, the first such image raises
        :class:`DataError`).
        """
        from rcvlab.measures import MEASURES

        if name not in self.measures and name in MEASURES:
            self.measures[name] = self._compute_measure(name)
        if name not in self.measures:
            columns = ", ".join(sorted(self.measures)) or "none"
            raise UnknownNameError(
                f"Unknown measure '{name}' for data {self.source or type(self).__name__}."
                f"{did_you_mean(name, [*self.measures, *MEASURES])} Its own measures: "
                f"{columns}; the computed ones: `rcvlab measures`."
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
                if self.strict:
                    raise DataError(
                        f"{self.ids[i]}: measure {name}: {e}; fix the file, or drop strict "
                        "(--strict) to skip such images."
                    ) from e
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
            strict=parent.strict,
        )

    def _load(self, i: int) -> Image.Image:
        return self.parent.load(int(self.index[i]))

    @property
    def has_masks(self) -> bool:
        """Whether the parent has masks (sets that make masks have no mask files)."""
        return self.parent.has_masks

    def load_mask(self, i: int) -> np.ndarray:
        return self.parent.load_mask(int(self.index[i]))

    def _fingerprint_payload(self) -> object:
        return {"parent": self.parent.fingerprint(), "index": self.index.tolist()}


def limit_per_class(data: ImageSet, n: int, *, seed: int = 0) -> ImageSet:
    """Keep at most ``n`` images of every class, chosen by a seeded draw.

    For each class with more than ``n`` images, ``n`` of them are drawn without replacement
    by ``numpy.random.default_rng([seed, crc32(class name)])``, so the choice within a class
    depends only on the seed, the class and its images, not on the other classes (a class
    filter does not change it). The kept images stay in their original order; a class with
    at most ``n`` images is kept whole.

    Parameters
    ----------
    data : ImageSet
        Images with classes.
    n : int
        Images per class to keep, at least 1.
    seed : int
        Seed of the draw.

    Returns
    -------
    ImageSet
        ``data`` itself when no class has more than ``n`` images, else a subset (its
        fingerprint records the choice).

    Raises
    ------
    DataError
        If ``n < 1`` or the data has no classes.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise DataError(f"n_per_class must be a whole number of at least 1 (got {n!r}).")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise DataError(f"seed must be a whole number of at least 0 (got {seed!r}).")
    if data.classes is None:
        raise DataError(
            f"n_per_class={n} needs classes, and data {data.source or type(data).__name__} has "
            "none (a CSV manifest needs a 'class' column); add them or drop n_per_class."
        )
    keep: list[np.ndarray] = []
    for c in dict.fromkeys(data.classes.tolist()):
        idx = np.flatnonzero(data.classes == c)
        if idx.size > n:
            rng = np.random.default_rng([int(seed), zlib.crc32(str(c).encode("utf-8"))])
            idx = rng.choice(idx, size=int(n), replace=False)
        keep.append(idx)
    index = np.sort(np.concatenate(keep))
    return data if index.size == len(data) else data.subset(index)


def _stretch(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        return np.full(arr.shape, np.clip(lo, 0.0, 255.0))
    return (arr.astype(np.float64) - lo) * (255.0 / (hi - lo))


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale image values of any numeric type to uint8 (the rule in the module docstring).

    Parameters
    ----------
    arr : numpy.ndarray
        Pixel values: uint8 (returned unchanged), bool (0 / 255), uint16 (``x / 257``),
        other integers or floats (scale read from the values).

    Returns
    -------
    numpy.ndarray
        uint8 array of the same shape.

    Raises
    ------
    DataError
        For NaN or infinite values, an empty array, or a non-numeric type.
    """
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype.kind not in "iuf":
        raise DataError(f"image values of type {a.dtype} are not numbers")
    if a.size == 0:
        raise DataError(f"image of shape {a.shape} has no pixels")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError("image holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:  # I;16 and big-endian I;16B
        scaled = a / 257.0
    elif a.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = a.astype(np.float64)
    elif a.dtype.kind in "iu" and lo >= 0.0 and hi <= 65535.0:
        scaled = a / 257.0
    else:
        scaled = _stretch(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """An opened image as 8-bit RGB, the way every reader of rcvlab sees it.

    The EXIF orientation is applied, wide grey modes (``I;16``, ``I``, ``F``) are scaled
    to 8 bits by :func:`to_uint8` (Pillow's own conversion would clip them), every other
    mode goes through ``convert("RGB")`` (alpha dropped, palette resolved).

    Parameters
    ----------
    im : PIL.Image.Image
        Any image Pillow opened.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.
    """
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return Image.fromarray(to_uint8(np.asarray(im)), "L").convert("RGB")
    return im.convert("RGB")


def read_grey(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask image as a 2-D array; :class:`DataError` if it cannot be used.

    The EXIF orientation is applied and the values keep their type and depth. Grey and
    palette files (``1``, ``L``, ``P``, ``I;16``, ``I``, ``F``) give their values (a palette
    mask its indices); grey with alpha (``LA``) its grey channel; a colour file is accepted
    only when its colour channels are equal (a grey mask saved as RGB), since taking one
    channel of a coloured mask would silently drop the others.
    """
    p = os.fspath(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("LA", "La", "PA"):
                im = im.getchannel(0)
            elif im.mode not in ("1", "L", "P", "I", "F") and not im.mode.startswith("I;16"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except FileNotFoundError as e:
        raise DataError(f"missing mask file {p}") from e
    except IsADirectoryError as e:
        raise DataError(f"mask {p} is a folder, not an image file") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot decode mask {p}: {e}") from e
    if arr.ndim == 3:
        if not (
            np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            raise DataError(
                f"mask {p} is a colour image whose channels differ; save it as a grey image "
                "(nuclei bright)"
            )
        arr = arr[..., 0]
    return arr


def read_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file as 8-bit RGB (:func:`to_rgb`); every decoding failure is DataError."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except FileNotFoundError as e:
        raise DataError(f"missing file {os.fspath(path)}") from e
    except IsADirectoryError as e:
        raise DataError(f"{os.fspath(path)} is a folder, not an image file") from e
    except PermissionError as e:
        raise DataError(f"cannot read image {os.fspath(path)}: permission denied") from e
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
    """Images held in memory as ``(n, H, W, 3)`` arrays (tests, notebooks).

    uint8 is used as it is; other types are scaled by :func:`to_uint8` (floats in [0, 1]
    times 255, uint16 divided by 257, ...).
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], measures=None, **kw) -> None:
        self.images = [np.asarray(im) for im in images]
        for im in self.images:
            if im.ndim != 3 or im.shape[2] != 3:
                raise DataError(f"Expected H x W x 3 images, got shape {im.shape}.")
        ids = kw.pop("ids", None) or [f"array[{i}]" for i in range(len(self.images))]
        super().__init__(ids, measures or {}, **kw)

    def _load(self, i: int) -> Image.Image:
        return Image.fromarray(to_uint8(self.images[i]), "RGB")

    def _fingerprint_payload(self) -> object:
        h = hashlib.sha256()
        for im in self.images:
            h.update(str(im.shape).encode())
            h.update(np.ascontiguousarray(im).tobytes())
        return h.hexdigest()


class TensorImageSet(ImageSet):
    """Images already preprocessed into a float32 ``(n, 3, H, W)`` tensor.

    The tensor goes to the network as it is: no resize, no normalisation (it must be what
    the model expects, e.g. from its own transform). Its rows cannot be shown as pictures,
    so :meth:`load` (and measures computed from the images) raise :class:`DataError`;
    feature extraction reads :meth:`batch` instead.

    Parameters
    ----------
    tensor : torch.Tensor
        float32, shape ``(n, 3, H, W)``; kept on its device (detached).
    measures, ids, classes, groups, source, ...
        As for :class:`ImageSet`.

    Raises
    ------
    DataError
        A tensor of another rank, channel count or dtype (one line with the fix).
    """

    def __init__(
        self,
        tensor: torch.Tensor,
        measures: dict[str, Sequence[float] | np.ndarray] | None = None,
        **kw: object,
    ) -> None:
        check_float_batch(tensor)
        self.tensor = tensor.detach()
        ids = kw.pop("ids", None) or [f"tensor[{i}]" for i in range(tensor.shape[0])]
        super().__init__(ids, measures or {}, **kw)  # type: ignore[arg-type]

    @property
    def spatial_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.tensor.shape[2]), int(self.tensor.shape[3])

    def batch(self, i0: int, i1: int) -> torch.Tensor:
        """Images ``[i0, i1)`` as they are; :class:`DataError` if they hold NaN or inf."""
        x = self.tensor[i0:i1]
        if not all_finite(x):
            raise DataError(
                f"Images {i0}-{i1 - 1} of the float tensor hold NaN or infinite values; "
                "fix the tensor (torch.isfinite(x).all(dim=(1, 2, 3)) finds them)."
            )
        return x

    def _load(self, i: int) -> Image.Image:
        raise DataError(
            f"{self.ids[i]} is an already preprocessed tensor row, not a picture; pass uint8 "
            "images (array or tensor) to analyses that need the pictures."
        )

    def _fingerprint_payload(self) -> object:
        h = hashlib.sha256(f"{tuple(self.tensor.shape)} {self.tensor.dtype}".encode())
        rows = self.tensor.cpu()
        for row in rows:  # one image at a time: no second copy of the whole tensor
            h.update(row.contiguous().numpy().tobytes())
        return h.hexdigest()

    def subset(self, index: Sequence[int] | np.ndarray) -> ImageSet:
        """Return the rows ``index`` (in that order) as a new :class:`TensorImageSet`."""
        idx = np.asarray(index, dtype=np.int64)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"Subset index out of range for a set of {n} images.")
        return TensorImageSet(
            self.tensor[torch.as_tensor(idx, device=self.tensor.device)],
            {k: v[idx] for k, v in self.measures.items()},
            ids=[self.ids[i] for i in idx],
            classes=None if self.classes is None else self.classes[idx],
            groups=None if self.groups is None else self.groups[idx],
            skipped=self.skipped,
            source=self.source,
            strict=self.strict,
        )


def all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` holds no NaN or infinity.

    A CPU tensor is checked by numpy, in the calling thread alone: the extractor calls this
    in its loading thread, where a torch operation would start a second team of OpenMP
    threads competing with the forward pass for the cores (InceptionV3 on 2 cores: 15-20 %
    slower).
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(x.detach().numpy()).all())
    return bool(torch.isfinite(x).all())


def check_float_batch(x: torch.Tensor) -> torch.Tensor:
    """Check a preprocessed batch: float32, shape ``(n, 3, H, W)``; return it.

    Raises
    ------
    DataError
        One line naming the shape or dtype and the fix.
    """
    shape = tuple(x.shape)
    if x.dtype != torch.float32:
        raise DataError(
            f"A preprocessed image tensor must be float32, got {x.dtype} (shape {shape}); "
            "convert it with x.float(), or pass uint8 pixels (0-255) for rcvlab to preprocess."
        )
    if x.ndim != 4:
        fix = "add the batch dimension: x.unsqueeze(0)" if x.ndim == 3 else "pass a batch"
        raise DataError(
            f"A preprocessed image tensor must have shape (n, 3, H, W), got {shape}; {fix}."
        )
    if shape[1] != 3:
        fix = (
            "permute it: x.permute(0, 3, 1, 2)"
            if shape[3] == 3
            else "repeat a grey channel (x.expand(-1, 3, -1, -1)) or drop alpha (x[:, :3])"
        )
        raise DataError(
            f"A preprocessed image tensor must have 3 channels in dim 1, (n, 3, H, W), "
            f"got shape {shape}; {fix}."
        )
    return x


__all__ = [
    "ArrayImageSet",
    "FileImageSet",
    "ImageSet",
    "Skip",
    "SubsetImageSet",
    "TensorImageSet",
    "all_finite",
    "check_float_batch",
    "limit_per_class",
    "read_grey",
    "read_rgb",
    "to_rgb",
    "to_uint8",
]
