"""Open a data source from the CLI's ``--data`` string.

Forms
-----
``voc:DIR``
    VOC-style XML annotations, PASCAL VOC or ImageNet layout (:func:`rcvlab.data.voc.read_voc`).
``imagenet:DIR``
    The same reader (an alias; the source string keeps the prefix given).
``csv:FILE``
    A CSV manifest (:func:`rcvlab.data.manifest.read_csv_manifest`).
``folder:DIR`` / ``janowczyk:DIR``
    Patches in magnification folders with masks beside them
    (:func:`rcvlab.data.folder.read_patch_folders`).
``histo`` / ``histo:real`` / ``histo:synthetic`` / ``histo:ihc``
    The embedded histology set (:func:`rcvlab.data.histo.histoset`): patches at seven
    magnifications with nuclei masks; classes are magnifications, groups source slides.
    ``histo`` is real + synthetic; the real tissue is H&E (``histo:ihc``: scikit-image's
    IHC photo instead, alone).
``tumour`` / ``tumour:both`` / ``tumour:real`` / ``tumour:synthetic``
    The embedded tumour / non-tumour patch set (:func:`rcvlab.data.he.tumour_set`): real H&E
    (one carcinoma image, one normal skin region) and/or synthetic slides with tumour-like
    and normal nuclei, at 0.5 µm/px, with nuclei masks; classes ``tumour`` / ``non-tumour``,
    groups the source regions. ``tumour`` is ``tumour:both`` (each source balanced on its
    own, so both can be reported); ``tumor`` is accepted for ``tumour``.
``camelyon:FILE.csv`` / ``camelyon:DIR``
    Tumour / non-tumour patches such as Camelyon17's: a CSV with ``path,label,group`` or
    class folders ``DIR/tumour/``, ``DIR/non-tumour/`` (:func:`rcvlab.data.camelyon.read_camelyon`).
``scaleset`` / ``scaleset:CLASS[,CLASS]``
    The embedded synthetic scale set (:func:`rcvlab.data.scaleset.scaleset`), all classes or
    those listed.
``filled`` / ``filled:CLASS[,CLASS]``
    Embedded *filled* images (the object fills the frame) with their ImageNet-1k labels:
    square crops inside the scale set's object boxes (:func:`rcvlab.data.filled.filled`),
    for the resizing sweep.
``labels:FILE.csv``
    Images with their ImageNet class: columns ``path`` and ``class_index`` (or ``label``),
    an index 0..999 or a WordNet id (:func:`rcvlab.data.filled.read_labels_csv`).
``synsets:DIR``
    ImageNet's layout ``DIR/n01530575/*.JPEG``, the class index from the folder's WordNet id
    (:func:`rcvlab.data.filled.read_synset_folders`).
``DIR`` / ``FILE.csv``
    A bare existing path: a folder is read as ``voc:DIR``, a ``.csv`` file as ``csv:FILE``.

Options
-------
:func:`open_data` takes the options below; one given for a kind of data it does not apply
to is an error naming the kinds it applies to (:data:`OPTION_KINDS`), never ignored.

``cls``
    Keep only images of these classes (every kind with classes; ``tumour`` and ``camelyon``:
    ``"tumour"`` / ``"non-tumour"``).
``strict``
    Raise at the first defective item (unreadable annotation, missing file or mask, an image
    whose measure cannot be computed) instead of skipping and listing it: the kinds read from
    files (``voc``, ``imagenet``, ``csv``, ``folder``, ``janowczyk``, ``labels``,
    ``synsets``, ``camelyon``). ``strict=False`` is accepted by every kind.
``n_per_class``
    The embedded ``scaleset`` and ``filled`` sets *make* that many images per class, and
    ``tumour`` that many per class and per source (default 128). Every
    other kind *keeps at most* that many per class (after ``cls``), chosen by
    :func:`rcvlab.data.base.limit_per_class`: a seeded draw without replacement per class,
    the images then in their original order.
``seed``
    The seed of the embedded sets (``scaleset``, ``filled``, ``histo``, ``tumour``), which
    also seeds the
    ``n_per_class`` draw of ``histo``; for the other kinds only the seed of the
    ``n_per_class`` draw, so it needs ``n_per_class`` (default 0).
``size``, ``r_range``
    :func:`rcvlab.data.scaleset.scaleset` only.
``patch``, ``n_slides``
    :func:`rcvlab.data.histo.histoset` and :func:`rcvlab.data.he.tumour_set`.
``patches_per_slide_mag``, ``magnifications``
    :func:`rcvlab.data.histo.histoset` only.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

from rcvlab.errors import DataError, UnknownNameError, did_you_mean

from .base import ImageSet, limit_per_class

#: The ``--data`` forms, as listed in error messages.
DATA_FORMS: tuple[str, ...] = (
    "folder:DIR",
    "histo[:real|synthetic|ihc]",
    "tumour[:real|synthetic|both]",
    "camelyon:FILE.csv",
    "camelyon:DIR",
    "voc:DIR",
    "imagenet:DIR",
    "csv:FILE",
    "scaleset",
    "scaleset:CLASS[,CLASS]",
    "filled[:CLASS,...]",
    "labels:FILE.csv",
    "synsets:DIR",
    "DIR",
    "FILE.csv",
)
_PREFIXES = ("voc", "imagenet", "csv", "scaleset")
#: Prefixes of the sources with ImageNet labels (:mod:`rcvlab.data.filled`).
_LABELLED = ("filled", "labels", "synsets")
#: Kinds of data read from files (``strict`` applies to them).
FILE_KINDS: tuple[str, ...] = (
    "voc",
    "imagenet",
    "csv",
    "folder",
    "janowczyk",
    "labels",
    "synsets",
    "camelyon",
)
#: Embedded kinds, generated offline from a seed.
EMBEDDED_KINDS: tuple[str, ...] = ("scaleset", "filled", "histo", "tumour")
#: An :class:`ImageSet` passed to :func:`open_data` instead of a spec.
_GIVEN = "ImageSet"
#: The kinds of data each :func:`open_data` option applies to (``cls`` applies to all).
OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "strict": FILE_KINDS,
    "n_per_class": (*FILE_KINDS, *EMBEDDED_KINDS, _GIVEN),
    "seed": EMBEDDED_KINDS,
    "size": ("scaleset",),
    "r_range": ("scaleset",),
    "patch": ("histo", "tumour"),
    "n_slides": ("histo", "tumour"),
    "patches_per_slide_mag": ("histo",),
    "magnifications": ("histo",),
}
_HISTO_SOURCES = ("both", "real", "synthetic", "ihc")
_TUMOUR_SOURCES = ("both", "real", "synthetic")
_OTHER_PREFIXES = ("folder", "janowczyk", "histo", "tumour", "camelyon")
#: The command-line spelling of the options the CLI has.
_FLAGS = {"strict": "--strict", "n_per_class": "--n-per-class", "seed": "--seed"}


def _forms() -> str:
    return ", ".join(DATA_FORMS)


def _classes_arg(cls: str | Sequence[str] | None) -> list[str] | None:
    if cls is None:
        return None
    return [cls] if isinstance(cls, str) else [str(c) for c in cls]


def _embedded_classes(
    arg: str | None, cls: str | Sequence[str] | None, spec: str, form: str = "scaleset"
) -> list[str] | None:
    """The classes of an embedded set from ``form:CLASS,...`` and the class filter."""
    listed = None
    if arg is not None:
        listed = [c.strip() for c in arg.split(",") if c.strip()]
        if not listed:
            raise DataError(
                f"No class in --data {spec!r}; write {form}:CLASS[,CLASS] or just {form}."
            )
    wanted = _classes_arg(cls)
    if listed is not None and wanted is not None:
        extra = [c for c in wanted if c not in listed]
        if extra:
            raise DataError(
                f"Class {extra[0]!r} is not among those in --data {spec!r}; "
                "add it there or drop the class filter."
            )
        listed = wanted
    return listed if listed is not None else wanted


def _path(arg: str, spec: str, what: str) -> str:
    if not arg.strip():
        raise DataError(f"--data {spec!r} names no {what}; write e.g. {spec.rstrip(':')}:/data/x.")
    return os.path.expanduser(arg.strip())


def _resolve(spec: str) -> tuple[str, str | None]:
    """The kind of a ``--data`` string and its argument (path, class list or histo part).

    Raises
    ------
    UnknownNameError
        For an unknown prefix or name.
    DataError
        For a path that does not exist or is a file but not a ``.csv``.
    """
    prefix, sep, tail = spec.partition(":")
    low = prefix.lower()
    if sep and low in (*_PREFIXES, *_LABELLED, "folder", "janowczyk", "camelyon"):
        return low, tail
    if not sep and spec.lower() in ("scaleset", "filled"):
        return spec.lower(), None
    if low == "histo":
        part = tail.strip().lower() if sep else "both"
        if part not in _HISTO_SOURCES:
            raise DataError(
                f"--data {spec!r}: the histology set has the parts "
                f"{', '.join(_HISTO_SOURCES)}; write histo, histo:real or histo:synthetic "
                "(or histo:ihc for the IHC photo)."
            )
        return "histo", part
    if low in ("tumour", "tumor"):
        part = tail.strip().lower() if sep else "both"
        if part not in _TUMOUR_SOURCES:
            raise DataError(
                f"--data {spec!r}: the tumour set has the parts {', '.join(_TUMOUR_SOURCES)}; "
                "write tumour, tumour:real, tumour:synthetic or tumour:both."
            )
        return "tumour", part
    if os.path.exists(os.path.expanduser(spec)):
        p = os.path.expanduser(spec)
        if os.path.isdir(p):
            return "voc", p
        if p.lower().endswith(".csv"):
            return "csv", p
        raise DataError(
            f"--data {spec!r} is a file but not a .csv manifest; "
            f"pass a folder of VOC/ImageNet XML annotations or a .csv file ({_forms()})."
        )
    if sep and "/" not in prefix and os.sep not in prefix:
        raise UnknownNameError(
            f"Unknown data source prefix '{prefix}:' in --data {spec!r}."
            f"{did_you_mean(low, (*_PREFIXES, *_LABELLED, *_OTHER_PREFIXES))}"
            f" Valid forms: {_forms()}."
        )
    if "/" in spec or os.sep in spec or spec.startswith(("~", ".")):
        raise DataError(f"--data path {spec!r} does not exist; check it. Valid forms: {_forms()}.")
    raise UnknownNameError(
        f"Unknown data source {spec!r}."
        f"{did_you_mean(spec.lower(), ['scaleset', 'filled', 'histo', 'tumour', *_PREFIXES])}"
        f" Valid forms: {_forms()}."
    )


def _check_options(kind: str, spec: str, options: dict[str, Any]) -> None:
    """Refuse an option that does not apply to ``kind``, a bad ``n_per_class`` or ``seed``."""
    what = f"--data {spec!r}" if kind != _GIVEN else "a given ImageSet"
    for name, value in options.items():
        kinds = OPTION_KINDS.get(name)
        if kinds is None:
            raise UnknownNameError(
                f"Unknown open_data option {name!r}.{did_you_mean(name, OPTION_KINDS)} "
                f"Options: cls, {', '.join(OPTION_KINDS)}."
            )
        if name == "seed" and kind not in kinds and options.get("n_per_class") is not None:
            continue  # seeds the n_per_class draw
        if kind not in kinds:
            also = " (and to any kind with n_per_class)" if name == "seed" else ""
            flag = f" ({_FLAGS[name]})" if name in _FLAGS else ""
            raise DataError(
                f"Option {name}={value!r}{flag} does not apply to {what}; it applies to "
                f"{', '.join(kinds)} data{also}. Drop it."
            )
    for name, low in (("n_per_class", 1), ("seed", 0)):
        v = options.get(name)
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < low
        ):
            raise DataError(f"{name} must be a whole number of at least {low} (got {v!r}).")


def open_data(
    spec: str | ImageSet,
    *,
    cls: str | Sequence[str] | None = None,
    strict: bool = False,
    n_per_class: int | None = None,
    seed: int | None = None,
    **options: Any,
) -> ImageSet:
    """Open the data source named by a ``--data`` string (forms in the module docstring).

    Every option is checked against the kind of data before anything is read: one that does
    not apply (table in the module docstring, :data:`OPTION_KINDS`) raises.

    Parameters
    ----------
    spec : str or ImageSet
        The data spec; an :class:`ImageSet` is returned unchanged (subset to ``cls`` and
        ``n_per_class`` if given).
    cls : str or sequence of str, optional
        Keep only images of this class (synset or class name): passed to the VOC and CSV
        readers, and as ``classes`` to the embedded sets.
    strict : bool
        Raise at the first defective item instead of skipping it (data read from files).
    n_per_class : int, optional
        Images per class: made by ``scaleset`` and ``filled``, at most this many kept (a
        seeded draw, :func:`rcvlab.data.base.limit_per_class`) for every other kind.
    seed : int, optional
        Seed of the embedded sets, and of the ``n_per_class`` draw (default 0).
    **options
        ``size``, ``r_range`` (:func:`rcvlab.data.scaleset.scaleset`); ``patch``,
        ``n_slides``, ``patches_per_slide_mag``, ``magnifications``
        (:func:`rcvlab.data.histo.histoset`); ``patch``, ``n_slides``
        (:func:`rcvlab.data.he.tumour_set`).

    Returns
    -------
    ImageSet
        The opened data.

    Raises
    ------
    UnknownNameError
        For an unknown ``PREFIX:``, a name that is neither a form nor an existing path, or an
        unknown option.
    DataError
        For an option that does not apply to the kind of data, ``n_per_class < 1``, a path
        that does not exist or is neither a folder nor a ``.csv`` file, or any error of the
        reader.
    """
    given: dict[str, Any] = dict(options)
    if strict:
        given["strict"] = True
    if n_per_class is not None:
        given["n_per_class"] = n_per_class
    if seed is not None:
        given["seed"] = seed
    if isinstance(spec, ImageSet):
        _check_options(_GIVEN, "", given)
        return _limit(_filter_set(spec, cls), n_per_class, seed)
    if not isinstance(spec, str):
        raise DataError(f"--data must be a string such as 'voc:DIR', got {type(spec).__name__}.")
    spec = spec.strip()
    kind, arg = _resolve(spec)
    _check_options(kind, spec, given)
    n = None if n_per_class is None else int(n_per_class)

    if kind == "scaleset":
        from rcvlab.data.scaleset import scaleset  # lazy: builds images, pulls in extra modules

        gen = {k: v for k, v in given.items() if k != "strict"}
        return scaleset(classes=_embedded_classes(arg, cls, spec), **gen)
    if kind == "filled":
        from rcvlab.data.filled import filled  # lazy: needs timm's synset list

        gen = {k: v for k, v in given.items() if k != "strict"}
        return filled(_embedded_classes(arg, cls, spec, "filled"), **gen)
    if kind == "histo":
        from rcvlab.data.histo import histoset

        ds: ImageSet = histoset(source=arg or "both", **options, seed=seed or 0)
        ds.source = spec
        return _limit(_filter_set(ds, cls), n, seed)
    if kind == "tumour":
        from rcvlab.data.he import tumour_set

        ts = tumour_set(
            arg or "both",
            n_per_class=n,
            seed=seed or 0,
            classes=_classes_arg(cls),
            **options,
        )
        ts.source = spec
        return ts
    if kind == "camelyon":
        from rcvlab.data.camelyon import read_camelyon

        ds = read_camelyon(_path(arg or "", spec, "file or folder"), strict=strict)
        return _limit(_filter_set(ds, cls), n, seed)
    if kind in ("labels", "synsets"):
        from rcvlab.data import filled as F

        if kind == "labels":
            ds = F.read_labels_csv(_path(arg or "", spec, "file"), strict=strict)
        else:
            ds = F.read_synset_folders(_path(arg or "", spec, "folder"), strict=strict)
        return _limit(_filter_set(ds, cls), n, seed)
    if kind in ("folder", "janowczyk"):
        from rcvlab.data.folder import read_patch_folders

        ds = read_patch_folders(_path(arg or "", spec, "folder"), strict=strict)
        return _limit(_filter_set(ds, cls), n, seed)
    if kind in ("voc", "imagenet"):
        from .voc import read_voc

        ds = read_voc(_path(arg or "", spec, "folder"), cls=cls, strict=strict)
        if kind == "imagenet":
            ds.source = "imagenet:" + ds.source.partition(":")[2]
        return _limit(ds, n, seed)
    from .manifest import read_csv_manifest

    ds = read_csv_manifest(_path(arg or "", spec, "file"), cls=cls, strict=strict)
    return _limit(ds, n, seed)


def _limit(ds: ImageSet, n: int | None, seed: int | None) -> ImageSet:
    return ds if n is None else limit_per_class(ds, n, seed=seed or 0)


def _filter_set(ds: ImageSet, cls: str | Sequence[str] | None) -> ImageSet:
    wanted = _classes_arg(cls)
    if wanted is None:
        return ds
    if ds.classes is None:
        raise DataError(
            f"Class filter {', '.join(wanted)!r} given for data {ds.source or type(ds).__name__} "
            "that has no classes; drop the class filter."
        )
    idx = [i for i, c in enumerate(ds.classes) if c in set(wanted)]
    if not idx:
        found = sorted(set(ds.classes.tolist()))
        raise DataError(
            f"No image of class {', '.join(wanted)!r} in {ds.source or type(ds).__name__}."
            f"{did_you_mean(wanted[0], found)} Classes: {', '.join(found[:10])}."
        )
    return ds.subset(idx)


__all__ = ["DATA_FORMS", "EMBEDDED_KINDS", "FILE_KINDS", "OPTION_KINDS", "open_data"]
