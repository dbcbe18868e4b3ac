"""Images with a known ImageNet-1k class, for experiments on the classifier's output.

Three sources (``--data`` forms in :mod:`rcvlab.data.spec`):

``filled`` / ``filled:CLASS[,CLASS]`` — :func:`filled`
    *Filled* images made offline from the embedded scale set's object photos
    (:data:`rcvlab.data.scaleset.SCALESET_CLASSES`: cat, coffee, rocket, motorcycle): square
    crops **inside** the object's annotated box (scale ratio 1: the object fills the frame),
    at the photo's own resolution, untouched otherwise (no colour matching, no jitter, no
    pasting). Image ``j`` of a class is a square of side ``k * min(box width, box height)``,
    ``k ~ U(0.8, 1)``, at a random position inside the box, mirrored with probability 1/2;
    everything depends only on ``(seed, class, j)``. All crops of a class come from **one**
    photograph, so they are not independent samples of the class: intervals over them
    measure the variation over crops, not over photographs. Labels: every acceptable
    ImageNet class of the object (cat: 281 tabby, 282 tiger cat, 285 Egyptian cat);
    :func:`class_indices` gives them.
``labels:FILE.csv`` — :func:`read_labels_csv`
    A CSV with a ``path`` column (relative paths against the CSV's folder) and a
    ``class_index`` (or ``label``) column: the ImageNet-1k index 0..999 (or any index of a
    classifier with more outputs) or the synset's WordNet id (``n01530575``).
``synsets:DIR`` — :func:`read_synset_folders`
    ImageNet's layout, one folder per synset: ``DIR/n01530575/*.JPEG``. The class index is
    the position of the WordNet id in the sorted list of the 1000 ImageNet-1k synsets
    (:func:`imagenet_wnids`, shipped with timm: ``n01530575`` is 10, brambling).

Each set stores the (first) class index as the measure ``class_index`` and the WordNet id
(or the object name for ``filled``) as the class.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rcvlab.errors import DataError, UnknownNameError, did_you_mean

from .base import FileImageSet, ImageSet, Skip, SubsetImageSet

#: Bump whenever :class:`FilledSet`'s crops change (it is part of the fingerprint).
FILLED_RECIPE = "filled-1"
#: File endings read as images by :func:`read_synset_folders`.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
LABEL_COLUMNS = ("class_index", "label")
_WNID = re.compile(r"^n\d{8}$")
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
_INDEX_HELP = (
    "an ImageNet-1k class index 0..999 or a WordNet id such as n01530575 (brambling, index 10)"
)


# -- ImageNet synsets -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (sorted), from timm (offline)."""
    from timm.data import ImageNetInfo

    wnids = tuple(ImageNetInfo().label_names())
    if len(wnids) != 1000 or list(wnids) != sorted(wnids):
        raise DataError("timm's ImageNet-1k synset list is not the expected 1000 sorted ids.")
    return wnids


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}


def wnid_to_index(wnid: str) -> int:
    """The ImageNet-1k class index of a WordNet id (``"n01530575"`` -> 10).

    Raises
    ------
    UnknownNameError
        If ``wnid`` is not one of the 1000 ImageNet-1k synsets.
    """
    idx = _wnid_index().get(str(wnid).strip())
    if idx is None:
        raise UnknownNameError(
            f"'{wnid}' is not one of the 1000 ImageNet-1k synsets."
            f"{did_you_mean(str(wnid), imagenet_wnids())}"
        )
    return idx


def index_to_wnid(index: int) -> str | None:
    """The WordNet id of ImageNet-1k class ``index``, or ``None`` outside 0..999."""
    w = imagenet_wnids()
    return w[index] if 0 <= index < len(w) else None


# -- the embedded filled set ------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _object_photo(name: str) -> Image.Image:
    """The object's box cut from its photo, at full resolution (shared: never modify)."""
    from rcvlab.data.scaleset import SCALESET_CLASSES

    c = SCALESET_CLASSES[name]
    x0, y0, x1, y1 = c.box
    arr = np.ascontiguousarray(c.load()[y0:y1, x0:x1, :3], dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


class FilledSet(ImageSet):
    """The embedded filled images (module docstring); build it with :func:`filled`.

    Attributes
    ----------
    class_names : list of str
        The selected object classes (image ``i`` is of class ``i // n_per_class``).
    labels : list of tuple of int
        Acceptable ImageNet-1k class indices of every image.
    crops : numpy.ndarray
        ``(n, 4)`` int array: the crop ``(x0, y0, x1, y1)`` inside the object's box.
    flips : numpy.ndarray
        ``(n,)`` bool: whether the crop is mirrored.
    """

    def __init__(self, classes: Sequence[str], n_per_class: int, seed: int) -> None:
        from rcvlab.data.scaleset import SCALESET_CLASSES

        self.class_names = list(classes)
        self.n_per_class, self.seed = int(n_per_class), int(seed)
        order = list(SCALESET_CLASSES)
        ids, cls_of, crops, flips, self.labels = [], [], [], [], []
        for name in self.class_names:
            c = SCALESET_CLASSES[name]
            bw, bh = c.box[2] - c.box[0], c.box[3] - c.box[1]
            for j in range(self.n_per_class):
                rng = np.random.default_rng([self.seed, order.index(name), 3, j])
                side = max(1, round(rng.uniform(0.8, 1.0) * min(bw, bh)))
                x0 = int(rng.integers(0, bw - side + 1))
                y0 = int(rng.integers(0, bh - side + 1))
                crops.append((x0, y0, x0 + side, y0 + side))
                flips.append(bool(rng.random() < 0.5))
                ids.append(f"filled/{name}/{j:05d}")
                cls_of.append(name)
                self.labels.append(tuple(c.imagenet))
        self.crops = np.asarray(crops, dtype=np.int64).reshape(-1, 4)
        self.flips = np.asarray(flips, dtype=bool)
        super().__init__(
            ids,
            {"class_index": [lab[0] for lab in self.labels]},
            classes=cls_of,
            source="filled:" + ",".join(self.class_names),
        )

    def _load(self, i: int) -> Image.Image:
        if not 0 <= i < len(self):
            raise DataError(f"Image index {i} out of range for a set of {len(self)} images.")
        photo = _object_photo(self.class_names[i // self.n_per_class])
        img = photo.crop(tuple(int(v) for v in self.crops[i]))
        return img.transpose(Image.FLIP_LEFT_RIGHT) if self.flips[i] else img

    def imagenet_labels(self, i: int) -> tuple[int, ...]:
        """The acceptable ImageNet-1k class indices of image ``i``."""
        return self.labels[i]

    def _fingerprint_payload(self) -> object:
        return {
            "recipe": FILLED_RECIPE,
            "seed": self.seed,
            "n_per_class": self.n_per_class,
            "classes": self.class_names,
        }


def filled(
    classes: Sequence[str] | None = None, *, n_per_class: int = 25, seed: int = 0
) -> FilledSet:
    """Filled images of the embedded object photos, with their ImageNet labels.

    Parameters
    ----------
    classes : sequence of str, optional
        Object classes (default: all of cat, coffee, rocket, motorcycle).
    n_per_class : int
        Crops per class (at least 1; default 25, so 100 images in all).
    seed : int
        Seed of the crops.

    Returns
    -------
    FilledSet
        Classes are the object names; ``labels`` / ``imagenet_labels(i)`` the acceptable
        ImageNet-1k indices; the measure ``class_index`` the first of them.

    Raises
    ------
    UnknownNameError
        For an unknown class.
    DataError
        For ``n_per_class < 1``, no class or duplicate classes.
    """
    from rcvlab.data.scaleset import SCALESET_CLASSES

    names = list(SCALESET_CLASSES) if classes is None else [str(c) for c in classes]
    for c in names:
        if c not in SCALESET_CLASSES:
            raise UnknownNameError(
                f"Unknown filled class '{c}'.{did_you_mean(c, SCALESET_CLASSES)} "
                f"Available: {', '.join(SCALESET_CLASSES)}."
            )
    if not names:
        raise DataError("No filled class selected.")
    if len(set(names)) != len(names):
        raise DataError(f"Duplicate filled classes in {names}.")
    if int(n_per_class) < 1:
        raise DataError(f"n_per_class must be at least 1 (got {n_per_class}).")
    return FilledSet(names, int(n_per_class), int(seed))


# -- a CSV of paths and class indices ---------------------------------------------------


def _parse_label(raw: str) -> int | str | None:
    """An int class index, ``None`` for a missing value, or an error text."""
    s = raw.strip()
    if s.lower() in _MISSING:
        return None
    if _WNID.match(s):
        try:
            return wnid_to_index(s)
        except UnknownNameError as e:
            return str(e)
    try:
        v = float(s)
    except ValueError:
        return f"{s!r} is neither a class index nor a WordNet id"
    if not math.isfinite(v) or not v.is_integer():
        return f"{s!r} is not a whole number"
    if v < 0:
        return f"{s!r} is negative"
    return int(v)


def read_labels_csv(path: str | os.PathLike[str], *, strict: bool = False) -> FileImageSet:
    """Read a CSV of image paths and their ImageNet class index.

    Format::

        path,class_index
        img/a.jpg,10
        /abs/b.png,n01530575

    ``path`` is required (relative paths are resolved against the CSV's folder); the class
    comes from ``class_index`` or, without it, ``label``: an integer >= 0 (ImageNet-1k:
    0..999; larger indices are for classifiers with more outputs and are checked against the
    model later) or a WordNet id. Other columns are ignored.

    Parameters
    ----------
    path : path
        The CSV file (UTF-8; a byte-order mark is fine).
    strict : bool
        Raise at the first row whose image file is missing or repeats an earlier row, instead
        of skipping it and listing it in ``skipped``.

    Returns
    -------
    FileImageSet
        Measure ``class_index``; classes are the WordNet ids (the index as text beyond 999);
        source ``labels:PATH``.

    Raises
    ------
    DataError
        For a missing file, no ``path`` or class column, a row without a valid class index
        (always: the message names the line), or no usable row.
    """
    csv_path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(csv_path):
        raise DataError(f"Labels file {csv_path} is a folder; labels:FILE needs a .csv file.")
    if not os.path.isfile(csv_path):
        raise DataError(f"Labels file {csv_path} does not exist; check the path in labels:FILE.")
    base = os.path.dirname(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Cannot read {csv_path} as CSV: {e}; save it as UTF-8 CSV.") from e
    except OSError as e:
        raise DataError(f"Cannot read labels file {csv_path}: {e.strerror or e}.") from e
    if "path" not in header:
        raise DataError(
            f"Labels file {csv_path} has no 'path' column (columns: "
            f"{', '.join(header) or 'none'}).{did_you_mean('path', header)} Name the image-file "
            "column 'path'."
        )
    label_col = next((c for c in LABEL_COLUMNS if c in header), None)
    if label_col is None:
        raise DataError(
            f"Labels file {csv_path} has no 'class_index' (or 'label') column (columns: "
            f"{', '.join(header)}).{did_you_mean('class_index', header)} Add one with "
            f"{_INDEX_HELP}."
        )
    ip, il = header.index("path"), header.index(label_col)
    ids: list[str] = []
    labels: list[int] = []
    skipped: list[Skip] = []
    seen: set[str] = set()
    for line, row in rows:
        if not any(c.strip() for c in row):
            continue
        p = row[ip].strip() if ip < len(row) else ""
        lab = _parse_label(row[il]) if il < len(row) else None
        where = f"line {line} of {csv_path}"
        if isinstance(lab, str) or lab is None:
            why = "has no class index" if lab is None else f"has an invalid class index: {lab}"
            raise DataError(
                f"Image {p or '(no path)'} on {where} {why}; write {_INDEX_HELP} in its "
                f"'{label_col}' cell, or delete the row."
            )
        if not p:
            raise DataError(f"Row on {where} has no path; fill in the image file or delete it.")
        full = os.path.normpath(os.path.join(base, os.path.expanduser(p)))
        problem = None
        if full in seen:
            problem = f"repeats an earlier row ({where})"
        elif not os.path.isfile(full):
            problem = f"missing file ({where})"
        if problem is not None:
            if strict:
                raise DataError(f"Image {full}: {problem}; fix it or drop --strict to skip it.")
            skipped.append(Skip(full, problem))
            continue
        seen.add(full)
        ids.append(full)
        labels.append(lab)
    if not ids:
        raise DataError(f"Labels file {csv_path} lists no usable image.")
    return FileImageSet(
        ids,
        {"class_index": np.asarray(labels, dtype=np.float64)},
        classes=[index_to_wnid(v) or str(v) for v in labels],
        skipped=skipped,
        source=f"labels:{csv_path}",
        strict=strict,
    )


# -- ImageNet layout: one folder per synset -----------------------------------------------


def read_synset_folders(root: str | os.PathLike[str], *, strict: bool = False) -> FileImageSet:
    """Read images in ImageNet's layout, ``ROOT/<wnid>/*.JPEG``.

    Every non-hidden folder in ``root`` must be named with an ImageNet-1k WordNet id; the
    images in it (any depth, by file ending: :data:`IMAGE_EXTENSIONS`) get its class index
    (:func:`wnid_to_index`). Other files are ignored.

    Parameters
    ----------
    root : path
        The folder holding the synset folders.
    strict : bool
        Raise for an image lying directly in ``root`` (it has no class) instead of skipping
        it and listing it in ``skipped``.

    Returns
    -------
    FileImageSet
        Sorted by synset, then path; measure ``class_index``; classes are the WordNet ids;
        source ``synsets:ROOT``.

    Raises
    ------
    DataError
        For a missing folder, a sub-folder that is not an ImageNet-1k synset (its images
        would have no class index), or no image at all.
    """
    top = Path(os.path.expanduser(os.fspath(root))).resolve()
    if top.is_file():
        raise DataError(f"{top} is a file; synsets:DIR needs the folder of the synset folders.")
    if not top.is_dir():
        raise DataError(f"Synset folder {top} does not exist; check the path in synsets:DIR.")
    known = _wnid_index()
    ids: list[str] = []
    labels: list[int] = []
    skipped: list[Skip] = []
    for entry in sorted(top.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if entry.suffix.lower() in IMAGE_EXTENSIONS:
                why = "image outside any synset folder (no class index)"
                if strict:
                    raise DataError(
                        f"Image {entry} lies outside any synset folder, so it has no class "
                        f"index; move it into its synset's folder ({top}/n01530575/...)."
                    )
                skipped.append(Skip(str(entry), why))
            continue
        if entry.name not in known:
            what = (
                "is not one of the 1000 ImageNet-1k synsets"
                if _WNID.match(entry.name)
                else ("is not named with an ImageNet WordNet id")
            )
            raise DataError(
                f"Folder {entry} {what}, so its images have no class index."
                f"{did_you_mean(entry.name, known)} Rename it to its synset's WordNet id (e.g. "
                "n01530575 for brambling) or list the images in labels:FILE.csv."
            )
        files = sorted(
            p
            for p in entry.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        ids += [str(p) for p in files]
        labels += [known[entry.name]] * len(files)
    if not ids:
        raise DataError(
            f"No image in synset folders under {top}; expected {top}/n01530575/xxx.JPEG."
        )
    return FileImageSet(
        ids,
        {"class_index": np.asarray(labels, dtype=np.float64)},
        classes=[imagenet_wnids()[v] for v in labels],
        skipped=skipped,
        source=f"synsets:{top}",
        strict=strict,
    )


# -- labels of any image set ------------------------------------------------------------


def class_indices(data: ImageSet) -> list[tuple[int, ...] | None]:
    """The acceptable classifier-output indices of every image (``None``: unknown).

    Looked up, in this order: an ``imagenet_labels(i)`` method (the embedded filled and
    scale sets: several acceptable classes per image); the parent set of a subset; a
    ``class_index`` or ``label`` measure (NaN: unknown; e.g. a ``csv:FILE`` manifest with
    such a column); classes that are all ImageNet-1k WordNet ids (``imagenet:DIR``).

    Raises
    ------
    DataError
        If the data has none of these, or a value that is not a whole number >= 0 (naming
        the image).
    """
    getter = getattr(data, "imagenet_labels", None)
    if callable(getter):
        return [tuple(int(v) for v in getter(i)) for i in range(len(data))]
    if isinstance(data, SubsetImageSet):
        parent = class_indices(data.parent)
        return [parent[int(i)] for i in data.index]
    for col in LABEL_COLUMNS:
        if col in data.measures:
            out: list[tuple[int, ...] | None] = []
            for img, v in zip(data.ids, data.measures[col], strict=True):
                if not np.isfinite(v):
                    out.append(None)
                elif v < 0 or not float(v).is_integer():
                    raise DataError(
                        f"Image {img} has class index {v:g}, not a whole number >= 0; write "
                        f"{_INDEX_HELP} in its '{col}' column."
                    )
                else:
                    out.append((int(v),))
            return out
    if data.classes is not None and len(data) and all(c in _wnid_index() for c in data.classes):
        return [(_wnid_index()[c],) for c in data.classes]
    raise DataError(
        f"Data {data.source or type(data).__name__} gives no ImageNet class index; use "
        "--data filled, labels:FILE.csv (path, class_index), synsets:DIR (ImageNet layout) or "
        "a CSV manifest with a class_index column."
    )


__all__ = [
    "FILLED_RECIPE",
    "IMAGE_EXTENSIONS",
    "FilledSet",
    "class_indices",
    "filled",
    "imagenet_wnids",
    "index_to_wnid",
    "read_labels_csv",
    "read_synset_folders",
    "wnid_to_index",
]
