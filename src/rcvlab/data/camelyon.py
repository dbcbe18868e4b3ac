"""Tumour / non-tumour patches of the paper's kind (Camelyon17), from a CSV or class folders.

Two layouts, both read by :func:`read_camelyon` (``--data camelyon:FILE.csv`` /
``--data camelyon:DIR``):

**CSV** with columns ``path,label,group``::

    path,label,group
    patches/patient_004_node_4_x1024_y2048.png,tumour,patient_004_node_4
    /data/p/patient_010_node_2_x0_y512.png,0,patient_010_node_2

It is read by :func:`rcvlab.data.manifest.read_csv_manifest` (``label`` as the class
column), so paths relative to the CSV's folder, a byte-order mark, missing files (skipped and
listed, or an error with ``strict``), repeated rows and numeric extra columns (measures)
behave as for ``csv:FILE``. ``group`` is optional: without it the group comes from the file
name as for folders (below). An empty label or group skips the row.

**Class folders**: ``DIR/tumour/`` and ``DIR/non-tumour/``, images directly inside or in
sub-folders (any of .png, .tif, .tiff, .jpg, .jpeg, .bmp; hidden files ignored; other
folders of ``DIR`` ignored). The group of an image is, in this order: the first sub-folder
below its class folder (``DIR/tumour/patient_004_node_4/x.png``); else the Camelyon17
``patient_NNN_node_N`` prefix of its file name; else the part of the name before the first
``_`` (``12750_500.png`` -> ``12750``); else the name itself (each image its own group).

**Labels** (CSV cells and folder names; case and ``_`` / space for ``-`` do not matter):
``tumour``, ``tumor``, ``1`` (also ``1.0``) mean ``"tumour"``; ``non-tumour``,
``non-tumor``, ``nontumour``, ``nontumor``, ``normal``, ``0`` (also ``0.0``) mean
``"non-tumour"``. Any other label is an error naming it.

Nuclei masks: the patches have none of their own; :meth:`CamelyonSet.load_mask` segments
each patch with :func:`rcvlab.measures.segment_nuclei` (colour deconvolution; its defaults are
sized for about 0.5 µm/px), so mask measures (``nuclei_area`` ...) and analyses that need
nuclei work on this data too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from rcvlab.data.base import FileImageSet, ImageSet
from rcvlab.data.manifest import read_csv_manifest
from rcvlab.errors import DataError

#: Image file types of the folder layout.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Label spellings (normalised: lower case, ``_`` and spaces as ``-``) -> class.
LABELS: dict[str, str] = {
    "tumour": "tumour",
    "tumor": "tumour",
    "1": "tumour",
    "1.0": "tumour",
    "non-tumour": "non-tumour",
    "non-tumor": "non-tumour",
    "nontumour": "non-tumour",
    "nontumor": "non-tumour",
    "normal": "non-tumour",
    "0": "non-tumour",
    "0.0": "non-tumour",
}
_PATIENT = re.compile(r"^(patient_?\d+_node_?\d+)", re.IGNORECASE)
_LABEL_HELP = "tumour/tumor/1 or non-tumour/non-tumor/normal/0"


def normalise_label(raw: str) -> str | None:
    """``"tumour"`` / ``"non-tumour"`` for a label spelling of :data:`LABELS`, else None."""
    key = re.sub(r"[\s_]+", "-", str(raw).strip().lower())
    return LABELS.get(key)


def group_from_name(name: str) -> str:
    """The group of a patch file name (module docstring): patient_node prefix, else the
    part before the first ``_``, else the name without its extension."""
    stem = Path(name).stem
    m = _PATIENT.match(stem)
    if m is not None:
        return m.group(1)
    return stem.split("_")[0] if "_" in stem.strip("_") else stem


class CamelyonSet(FileImageSet):
    """Tumour / non-tumour image files; nuclei masks segmented on demand."""

    @property
    def has_masks(self) -> bool:
        """Always: :meth:`load_mask` segments the patch."""
        return True

    def load_mask(self, i: int) -> np.ndarray:
        """Nuclei mask of image ``i`` by :func:`rcvlab.measures.segment_nuclei`."""
        from rcvlab.measures.segment import segment_nuclei

        return segment_nuclei(np.asarray(self.load(int(i))))


def _finish(ds: FileImageSet, source: str) -> CamelyonSet:
    return CamelyonSet(
        ds.ids,
        ds.measures,
        classes=None if ds.classes is None else ds.classes.tolist(),
        groups=None if ds.groups is None else ds.groups.tolist(),
        skipped=ds.skipped,
        source=source,
        strict=ds.strict,
    )


def read_camelyon_csv(path: str | os.PathLike[str], *, strict: bool = False) -> CamelyonSet:
    """Read a ``path,label,group`` CSV of tumour / non-tumour patches (module docstring).

    Parameters
    ----------
    path : path
        The CSV file.
    strict : bool
        Raise at the first row whose file is missing (or repeats a row) instead of skipping
        it, and at the first unreadable image when a measure is computed.

    Returns
    -------
    CamelyonSet
        Classes ``"tumour"`` / ``"non-tumour"``, groups, source ``camelyon:PATH``.

    Raises
    ------
    DataError
        For a missing file, no ``path`` or ``label`` column, an unknown label, no usable row.
    """
    csv = os.path.abspath(os.path.expanduser(os.fspath(path)))
    ds = read_csv_manifest(csv, strict=strict, class_column="label")
    if ds.classes is None:
        raise DataError(
            f"Camelyon CSV {csv} has no 'label' column; add one with {_LABEL_HELP} per row."
        )
    classes = []
    for p, raw in zip(ds.ids, ds.classes.tolist(), strict=True):
        cls = normalise_label(raw)
        if cls is None:
            raise DataError(
                f"Unknown label {raw!r} for {p} in {csv}; write {_LABEL_HELP}, or delete the row."
            )
        classes.append(cls)
    ds.classes = np.asarray(classes)
    if ds.groups is None:
        ds.groups = np.asarray([group_from_name(p) for p in ds.ids])
    return _finish(ds, f"camelyon:{csv}")


def read_camelyon_folders(root: str | os.PathLike[str], *, strict: bool = False) -> CamelyonSet:
    """Read ``DIR/tumour/`` and ``DIR/non-tumour/`` class folders (module docstring).

    Parameters
    ----------
    root : path
        The folder holding the class folders.
    strict : bool
        Raise at the first unreadable image when a measure is computed.

    Returns
    -------
    CamelyonSet
        One image per file, in sorted path order per class (tumour first).

    Raises
    ------
    DataError
        For a missing folder, no class folder, or class folders without images.
    """
    base = Path(os.path.expanduser(os.fspath(root))).absolute()
    if not base.exists():
        raise DataError(
            f"Folder {base} does not exist; pass the folder holding tumour/ and non-tumour/."
        )
    if not base.is_dir():
        raise DataError(
            f"{base} is a file; camelyon: takes a .csv file or a folder holding tumour/ and "
            "non-tumour/."
        )
    try:
        folders = sorted(p for p in base.iterdir() if p.is_dir())
    except PermissionError as e:
        raise DataError(f"Cannot list folder {base}: permission denied.") from e
    by_class: dict[str, list[Path]] = {"tumour": [], "non-tumour": []}
    for f in folders:
        cls = normalise_label(f.name)
        if cls is not None and not f.name.isdigit():
            by_class[cls].append(f)
    if not any(by_class.values()):
        raise DataError(
            f"No class folder in {base}; the layout is DIR/tumour/*.png and "
            "DIR/non-tumour/*.png (also tumor/, normal/)."
        )
    ids: list[str] = []
    classes: list[str] = []
    groups: list[str] = []
    for cls, dirs in by_class.items():
        for d in dirs:
            try:
                files = sorted(
                    p
                    for p in d.rglob("*")
                    if p.suffix.lower() in IMAGE_EXTENSIONS
                    and not any(part.startswith(".") for part in p.relative_to(d).parts)
                    and p.is_file()
                )
            except PermissionError as e:
                raise DataError(f"Cannot list folder {d}: permission denied.") from e
            for p in files:
                rel = p.relative_to(d).parts
                ids.append(str(p))
                classes.append(cls)
                groups.append(rel[0] if len(rel) > 1 else group_from_name(p.name))
    if not ids:
        names = ", ".join(d.name for ds in by_class.values() for d in ds)
        raise DataError(
            f"The class folders {names} of {base} hold no image ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return CamelyonSet(
        ids, {}, classes=classes, groups=groups, source=f"camelyon:{base}", strict=strict
    )


def read_camelyon(path: str | os.PathLike[str], *, strict: bool = False) -> ImageSet:
    """A ``.csv`` file by :func:`read_camelyon_csv`, a folder by :func:`read_camelyon_folders`.

    Raises
    ------
    DataError
        For a path that does not exist or is a file but not a ``.csv``, or any reader error.
    """
    p = os.path.expanduser(os.fspath(path))
    if os.path.isdir(p):
        return read_camelyon_folders(p, strict=strict)
    if not os.path.exists(p):
        raise DataError(
            f"{p} does not exist; camelyon: takes a .csv file (path,label,group) or a folder "
            "holding tumour/ and non-tumour/."
        )
    if not p.lower().endswith(".csv"):
        raise DataError(
            f"{p} is a file but not a .csv; camelyon: takes a .csv file (path,label,group) or "
            "a folder holding tumour/ and non-tumour/."
        )
    return read_camelyon_csv(p, strict=strict)


__all__ = [
    "IMAGE_EXTENSIONS",
    "LABELS",
    "CamelyonSet",
    "group_from_name",
    "normalise_label",
    "read_camelyon",
    "read_camelyon_csv",
    "read_camelyon_folders",
]
