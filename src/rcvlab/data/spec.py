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
``histo`` / ``histo:real`` / ``histo:synthetic``
    The embedded histology set (:func:`rcvlab.data.histo.histoset`): patches at seven
    magnifications with nuclei masks; classes are magnifications, groups source slides.
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
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rcvlab.errors import DataError, UnknownNameError, did_you_mean

from .base import ImageSet

#: The ``--data`` forms, as listed in error messages.
DATA_FORMS: tuple[str, ...] = (
    "folder:DIR",
    "histo[:real|synthetic]",
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


def _open_scaleset(
    arg: str | None, cls: str | Sequence[str] | None, spec: str, **kw: object
) -> ImageSet:
    classes = _embedded_classes(arg, cls, spec)
    from rcvlab.data.scaleset import scaleset  # lazy: builds images, pulls in extra modules

    return scaleset(classes=classes, **kw)


def _open_labelled(
    kind: str,
    arg: str | None,
    cls: str | Sequence[str] | None,
    spec: str,
    strict: bool,
    kw: dict[str, object],
) -> ImageSet:
    """``filled[:CLASS,...]``, ``labels:FILE.csv`` and ``synsets:DIR``."""
    from rcvlab.data import filled as F  # lazy: needs timm's synset list

    if kind == "filled":
        extra = sorted(set(kw) - {"n_per_class", "seed"})
        if extra:
            raise DataError(
                f"Option(s) {', '.join(extra)} do not apply to --data {spec!r} "
                "(only n_per_class and seed do); drop them."
            )
        return F.filled(_embedded_classes(arg, cls, spec, "filled"), **kw)  # type: ignore[arg-type]
    if kw:
        raise DataError(
            f"Options {', '.join(sorted(kw))} apply only to --data scaleset or filled, "
            f"not {spec!r}; drop them."
        )
    if kind == "labels":
        ds: ImageSet = F.read_labels_csv(_path(arg or "", spec, "file"), strict=strict)
    else:
        ds = F.read_synset_folders(_path(arg or "", spec, "folder"), strict=strict)
    return _filter_set(ds, cls)


def _path(arg: str, spec: str, what: str) -> str:
    if not arg.strip():
        raise DataError(f"--data {spec!r} names no {what}; write e.g. {spec.rstrip(':')}:/data/x.")
    return os.path.expanduser(arg.strip())


def open_data(
    spec: str | ImageSet,
    *,
    cls: str | Sequence[str] | None = None,
    strict: bool = False,
    **scaleset_kw: object,
) -> ImageSet:
    """Open the data source named by a ``--data`` string (forms in the module docstring).

    Parameters
    ----------
    spec : str or ImageSet
        The data spec; an :class:`ImageSet` is returned unchanged (subset to ``cls`` if given).
    cls : str or sequence of str, optional
        Keep only images of this class (synset or class name): passed to the VOC and CSV
        readers, and as ``classes`` to the scale set.
    strict : bool
        Raise at the first defective item instead of skipping it (VOC and CSV sources).
    **scaleset_kw
        Passed to :func:`rcvlab.data.scaleset.scaleset` (``n_per_class``, ``seed``, ``size``)
        or :func:`rcvlab.data.filled.filled` (``n_per_class``, ``seed``); rejected for other
        sources.

    Returns
    -------
    ImageSet
        The opened data.

    Raises
    ------
    UnknownNameError
        For an unknown ``PREFIX:`` or a name that is neither a form nor an existing path.
    DataError
        For a path that does not exist or is neither a folder nor a ``.csv`` file, or any
        error of the reader.
    """
    if isinstance(spec, ImageSet):
        return _filter_set(spec, cls)
    if not isinstance(spec, str):
        raise DataError(f"--data must be a string such as 'voc:DIR', got {type(spec).__name__}.")
    spec = spec.strip()
    prefix, sep, tail = spec.partition(":")
    arg: str | None = tail
    kind = ""
    if prefix.lower() in _LABELLED and (sep or prefix.lower() == "filled"):
        return _open_labelled(
            prefix.lower(), tail if sep else None, cls, spec, strict, dict(scaleset_kw)
        )
    if sep and prefix.lower() in _PREFIXES:
        kind = prefix.lower()
    elif not sep and spec.lower() == "scaleset":
        kind, arg = "scaleset", None
    elif sep and prefix.lower() in ("folder", "janowczyk"):
        from rcvlab.data.folder import read_patch_folders

        return _filter_set(read_patch_folders(tail), cls)
    elif spec.lower() in ("histo", "histo:real", "histo:synthetic", "histo:both"):
        from rcvlab.data.histo import histoset

        source = tail.lower() if sep else "both"
        ds = histoset(source=source, **scaleset_kw)  # type: ignore[arg-type]
        ds.source = spec
        return _filter_set(ds, cls)
    elif os.path.exists(os.path.expanduser(spec)):
        p = os.path.expanduser(spec)
        if os.path.isdir(p):
            kind, arg = "voc", p
        elif p.lower().endswith(".csv"):
            kind, arg = "csv", p
        else:
            raise DataError(
                f"--data {spec!r} is a file but not a .csv manifest; "
                f"pass a folder of VOC/ImageNet XML annotations or a .csv file ({_forms()})."
            )
    elif sep and "/" not in prefix and os.sep not in prefix:
        raise UnknownNameError(
            f"Unknown data source prefix '{prefix}:' in --data {spec!r}."
            f"{did_you_mean(prefix.lower(), (*_PREFIXES, *_LABELLED))} Valid forms: {_forms()}."
        )
    elif "/" in spec or os.sep in spec or spec.startswith(("~", ".")):
        raise DataError(f"--data path {spec!r} does not exist; check it. Valid forms: {_forms()}.")
    else:
        raise UnknownNameError(
            f"Unknown data source {spec!r}."
            f"{did_you_mean(spec.lower(), ['scaleset', 'filled', *_PREFIXES])}"
            f" Valid forms: {_forms()}."
        )

    if kind != "scaleset" and scaleset_kw:
        raise DataError(
            f"Options {', '.join(sorted(scaleset_kw))} apply only to --data scaleset, "
            f"not {spec!r}; drop them."
        )
    if kind == "scaleset" or arg is None:
        return _open_scaleset(arg, cls, spec, **scaleset_kw)
    if kind in ("voc", "imagenet"):
        from .voc import read_voc

        ds: ImageSet = read_voc(_path(arg, spec, "folder"), cls=cls, strict=strict)
        if kind == "imagenet":
            ds.source = "imagenet:" + ds.source.partition(":")[2]
        return ds
    from .manifest import read_csv_manifest

    return read_csv_manifest(_path(arg, spec, "file"), cls=cls, strict=strict)


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


__all__ = ["DATA_FORMS", "open_data"]
