"""Patches in magnification folders, with nuclei masks beside them.

Two layouts, read by one function:

* Janowczyk & Madabhushi's nuclei segmentation data as the paper arranged it:
  ``ROOT/<mag>/<id>_original.tif`` with ``ROOT/<mag>/<id>_mask.png``;
* the generic ``folder:`` layout: ``ROOT/<mag>/<image>.<ext>`` with ``<image>_mask.<ext>``
  beside it (any of .png, .tif, .tiff, .jpg, .jpeg, .bmp).

``<mag>`` is a magnification folder such as ``5X``, ``10x`` or ``40X``; other folders are
ignored. The class of a patch is its magnification (``"10X"``); its group (the source image,
so that splits never share one) is the part of the file name before the first ``_``
(``12750_500_f00003_original.tif`` comes from source ``12750``). A patch without a mask is
kept, its mask-based measures become NaN and it is listed in the skip list (with ``strict``,
it is an error instead).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rcvlab.data.base import FileImageSet, Skip
from rcvlab.errors import DataError

_MAG = re.compile(r"^(\d+(?:\.\d+)?)[xX]$")
_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_patch_folders(root: str | os.PathLike[str], *, strict: bool = False) -> FileImageSet:
    """Read patches grouped in magnification folders (see the module docstring).

    Parameters
    ----------
    root : path
        Folder holding ``5X/``, ``8X/``, ... sub-folders.
    strict : bool
        Raise :class:`DataError` for the first patch without a mask (in file order) instead
        of listing it in ``skipped``; the set is also strict when its measures are computed
        (the first unreadable image or mask raises, see :meth:`ImageSet.measure`).

    Returns
    -------
    FileImageSet
        With ``classes`` (magnifications), ``groups`` (source ids), ``masks`` (paths; empty
        where missing) and no measures of its own: ``measure("nuclei_area")`` computes them.
    """
    base = Path(os.path.expanduser(root))
    if not base.exists():
        raise DataError(f"Folder {base} does not exist; pass the folder holding 5X/ ... 40X/.")
    if not base.is_dir():
        raise DataError(f"{base} is a file; pass the folder holding 5X/ ... 40X/.")
    try:
        mags = sorted(
            (p for p in base.iterdir() if p.is_dir() and _MAG.match(p.name)),
            key=lambda p: float(_MAG.match(p.name).group(1)),
        )
    except PermissionError as e:
        raise DataError(f"Cannot list folder {base}: permission denied.") from e
    if not mags:
        raise DataError(
            f"No magnification folder (5X, 10X, ...) in {base}; the layout is "
            "ROOT/<mag>/<image>.png with <image>_mask.png beside it."
        )
    ids, masks, classes, groups, skipped = [], [], [], [], []
    for folder in mags:
        label = f"{_MAG.match(folder.name).group(1)}X"
        try:
            # hidden files are skipped: macOS's "._x.png" resource forks are not images
            files = sorted(
                p
                for p in folder.iterdir()
                if p.suffix.lower() in _EXT and not p.name.startswith(".") and p.is_file()
            )
        except PermissionError as e:
            raise DataError(f"Cannot list folder {folder}: permission denied.") from e
        names = {p.name for p in files}
        for p in files:
            stem = p.stem
            if stem.endswith("_mask"):
                continue
            core = stem[: -len("_original")] if stem.endswith("_original") else stem
            mask = next(
                (folder / f"{core}_mask{e}" for e in _EXT if f"{core}_mask{e}" in names), None
            )
            if mask is None and strict:
                raise DataError(
                    f"Patch {p} has no mask beside it ({core}_mask.png or another image "
                    "type); add it, or drop strict (--strict) to skip such patches."
                )
            if mask is None:
                skipped.append(Skip(str(p), "no mask beside it (mask-based measures are NaN)"))
            ids.append(str(p))
            masks.append("" if mask is None else str(mask))
            classes.append(label)
            groups.append(core.split("_")[0])
    if not ids:
        raise DataError(f"No image files in the magnification folders of {base}.")
    return FileImageSet(
        ids,
        {},
        classes=classes,
        groups=groups,
        masks=masks,
        skipped=skipped,
        source=f"folder:{base}",
        strict=strict,
    )


__all__ = ["read_patch_folders"]
