"""A CSV manifest (one row per image, its measures as columns) as an :class:`ImageSet`.

Format::

    path,class,group,scale_ratio,area
    img/a.jpg,albatross,slide1,0.31,120.5
    /abs/b.png,kite,slide2,,98.0

- ``path`` (required): the image file; relative paths are resolved against the CSV's folder.
- ``class``, ``group`` (optional): the object class and the source group (for group-disjoint
  splits). An empty value skips the row (the class or group would be unknown).
- ``mask`` (optional): the image's nuclei-mask file (relative to the CSV), for measures
  computed from masks (``nuclei_area`` ...). A missing mask makes those measures NaN for that
  image, listed in the skip list (with ``strict=True``, an empty or missing mask raises).
- Every other column is a **measure** when all its non-empty values are numbers; empty cells
  and ``nan``/``NA``/``n/a``/``null``/``none`` are missing values (NaN, which the probe
  excludes); an infinite value (``inf``) raises :class:`DataError` naming the line. A column
  with no numeric value at all is text (notes, split names...): it is ignored with a
  :class:`UserWarning`. A column that mixes numbers and text is almost surely a typo in a
  measure, so it raises :class:`DataError` naming the row and value. A column name written
  twice raises.
- Columns named ``Unnamed: N`` (an index that pandas wrote) are ignored silently.

Rows keep the CSV's order. Rows whose file is missing, or that repeat an earlier row's image,
are skipped with a reason (or raise with ``strict=True``).
"""

from __future__ import annotations

import csv as csvlib
import os
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from rcvlab.errors import DataError, did_you_mean

from .base import FileImageSet, Skip

PATH_COLUMN = "path"
CLASS_COLUMN = "class"
GROUP_COLUMN = "group"
MASK_COLUMN = "mask"
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})


def _parse_numbers(col: Sequence[object]) -> tuple[np.ndarray, int, int | None]:
    """Return ``(values, n_numbers, first_bad_row)`` of a column of strings.

    An infinite value (``inf``, ``1e999``) counts as a number here; the caller refuses it.
    """
    values = np.full(len(col), np.nan)
    n_num = 0
    first_bad: int | None = None
    for i, raw in enumerate(col):
        s = str(raw).strip()
        if s.lower() in _MISSING:
            continue
        try:
            values[i] = float(s)
            n_num += 1
        except ValueError:
            if first_bad is None:
                first_bad = i
    return values, n_num, first_bad


def read_csv_manifest(
    path: str | os.PathLike[str],
    *,
    cls: str | Sequence[str] | None = None,
    strict: bool = False,
    class_column: str = CLASS_COLUMN,
) -> FileImageSet:
    """Read a CSV manifest of image paths and measures (format in the module docstring).

    Parameters
    ----------
    path : path
        The CSV file (UTF-8, a byte-order mark is fine).
    cls : str or sequence of str, optional
        Keep only rows of this class (needs a ``class`` column); other rows are skipped with a
        reason.
    strict : bool
        Raise :class:`DataError` at the first row whose file or mask is missing (or that is
        empty or a duplicate) instead of skipping it, and at the first image whose measure
        cannot be computed (:meth:`~rcvlab.data.base.ImageSet.measure`). Rows left out by
        ``cls`` never raise.
    class_column : str
        The column holding the class (``"class"``; a reader of another layout may name its
        own, e.g. ``"label"`` for :func:`rcvlab.data.camelyon.read_camelyon_csv`).

    Returns
    -------
    FileImageSet
        One image per kept row, in the CSV's order; ``classes``/``groups`` from the optional
        columns (else ``None``); skipped rows in ``.skipped``.

    Raises
    ------
    DataError
        If the file is missing or not a CSV, has no ``path`` column, has a measure column that
        mixes numbers and text, or leaves no usable row.
    """
    import pandas as pd  # lazy: only CSV sources need it, and it is slow to import

    csv = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(csv):
        raise DataError(f"Manifest {csv} is a folder; csv:FILE needs a .csv file.")
    if not os.path.isfile(csv):
        raise DataError(f"Manifest {csv} does not exist; check the path given to csv:FILE.")
    try:
        # pandas renames a repeated column ("m" -> "m.1"), so the header is read as written
        with open(csv, newline="", encoding="utf-8-sig") as f:
            header = [h.strip() for h in next(csvlib.reader(f, skipinitialspace=True), [])]
        df = pd.read_csv(
            csv, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csvlib.Error) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"Cannot read manifest {csv} as CSV: {msg}; save it as UTF-8 CSV.") from e
    except OSError as e:
        raise DataError(f"Cannot read manifest {csv}: {e.strerror or e}.") from e
    dups = sorted(c for c, k in Counter(header).items() if k > 1 and c)  # unnamed: ignored
    if dups:
        raise DataError(f"Manifest {csv} repeats the column(s) {', '.join(dups)}; rename them.")
    df.columns = [str(c).strip() for c in df.columns]
    cols = list(df.columns)
    if PATH_COLUMN not in cols:
        raise DataError(
            f"Manifest {csv} has no '{PATH_COLUMN}' column (columns: {', '.join(cols) or 'none'})."
            f"{did_you_mean(PATH_COLUMN, cols)} Name the image-file column '{PATH_COLUMN}'."
        )
    has_class, has_group = class_column in cols, GROUP_COLUMN in cols
    if cls is not None and not has_class:
        raise DataError(
            f"cls={cls!r} needs a '{class_column}' column, but manifest {csv} has none "
            f"(columns: {', '.join(cols)}); add one or drop the class filter."
        )
    wanted = None if cls is None else {c.strip() for c in ([cls] if isinstance(cls, str) else cls)}

    measures: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    for c in cols:
        if c in (PATH_COLUMN, class_column, GROUP_COLUMN, MASK_COLUMN) or c.startswith("Unnamed:"):
            continue
        values, n_num, bad = _parse_numbers(df[c])
        if bad is None and np.isinf(values).any():
            row = int(np.flatnonzero(np.isinf(values))[0])
            raise DataError(
                f"Column '{c}' of {csv} holds an infinite value (line {row + 2}: "
                f"{df[c].iloc[row]!r}); fix it, or leave the cell empty for a missing one."
            )
        if bad is None:
            measures[c] = values
        elif n_num == 0:
            ignored.append(c)
        else:
            raise DataError(
                f"Column '{c}' of {csv} mixes numbers and text (line {bad + 2}: "
                f"{df[c].iloc[bad]!r}); fix the value, or leave the cell empty for a missing one."
            )
    if ignored:
        warnings.warn(
            f"Manifest {csv}: ignoring non-numeric column(s) {', '.join(ignored)} "
            "(only numeric columns are measures).",
            UserWarning,
            stacklevel=2,
        )

    base = os.path.dirname(csv)
    keep: list[int] = []
    files: list[str] = []
    skipped: list[Skip] = []
    first_row: dict[str, int] = {}

    def problem(row: int, where: str, reason: str, *, defect: bool = True) -> None:
        if strict and defect:
            raise DataError(
                f"{reason} ({where}, line {row + 2} of {csv}); fix or remove that row, or drop "
                "strict (--strict) to skip such rows."
            )
        skipped.append(Skip(where, reason))

    classes = [str(v).strip() for v in df[class_column]] if has_class else None
    groups = [str(v).strip() for v in df[GROUP_COLUMN]] if has_group else None
    for i, raw in enumerate(df[PATH_COLUMN]):
        rel = str(raw).strip()
        if not rel:
            problem(i, f"{csv}:{i + 2}", "empty path")
            continue
        p = os.path.normpath(os.path.join(base, os.path.expanduser(rel)))
        if classes is not None and not classes[i]:
            problem(i, p, f"empty '{class_column}' value")
            continue
        if groups is not None and not groups[i]:
            problem(i, p, f"empty '{GROUP_COLUMN}' value")
            continue
        if wanted is not None and classes is not None and classes[i] not in wanted:
            problem(
                i,
                p,
                f"class {classes[i]!r}, not {', '.join(sorted(wanted))!r}",
                defect=False,
            )
            continue
        if not os.path.isfile(p):
            problem(i, p, "missing file")
            continue
        if p in first_row:
            problem(i, p, f"duplicate of line {first_row[p] + 2}")
            continue
        first_row[p] = i
        keep.append(i)
        files.append(p)

    if not files:
        top = Counter(s.reason for s in skipped).most_common(3)
        reasons = "; ".join(f"{r} ({n}x)" for r, n in top) or "the manifest has no rows"
        raise DataError(
            f"No usable row in manifest {csv}: {len(skipped)} of {len(df)} rows skipped. "
            f"Top reasons: {reasons}."
        )
    idx = np.asarray(keep, dtype=np.int64)
    masks = None
    if MASK_COLUMN in cols:
        # a missing or empty mask is not fatal here: measures needing it become NaN, listed
        masks = []
        for i in keep:
            raw = str(df[MASK_COLUMN].iloc[i]).strip()
            m = (
                ""
                if raw.lower() in _MISSING
                else os.path.normpath(os.path.join(base, os.path.expanduser(raw)))
            )
            if strict and not (m and os.path.isfile(m)):
                why = "empty mask cell" if not m else f"missing mask file {m}"
                raise DataError(
                    f"{why} (line {i + 2} of {csv}); fix that row, or drop strict (--strict) "
                    "to give its mask-based measures NaN."
                )
            masks.append(m)
    return FileImageSet(
        files,
        {k: v[idx] for k, v in measures.items()},
        classes=None if classes is None else [classes[i] for i in keep],
        groups=None if groups is None else [groups[i] for i in keep],
        skipped=skipped,
        source=f"csv:{csv}",
        masks=masks,
        strict=strict,
    )


__all__ = ["read_csv_manifest"]
