"""Helpers shared by the analyses of paper 001 (sparsity, alignment, consistency).

* input checks: one class's features and measure (:func:`check_xy`), and the options every
  analysis validates before any work (:func:`check_int`, :func:`check_reps`,
  :func:`check_seed`, :func:`check_test_fraction`, :func:`check_max_dims`,
  :func:`check_plain`, :func:`check_classes`);
* :func:`features_by_class`: the features of one layer (one extraction) split by class;
  :func:`class_features`: the start every model + data analysis shares (its options checked,
  the classes chosen, the features extracted), with :class:`ExtractOptions`, the keyword
  options it passes on to the extraction;
* :func:`analysis_meta`: the ``meta`` provenance of a result built from arrays;
* :func:`frozen_array` / :func:`array_from_json`: read-only arrays, with JSON's ``null``
  read back as NaN;
* :func:`row_shards`: an image pass (the resize sweep, the relevance gradients) cut into
  batch-aligned shards that run as tasks on a Dask cluster
  (:func:`rcvlab.distributed.tasks.run_calls`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.probe.profile import check_names
from rcvlab.result import provenance

if TYPE_CHECKING:  # typing.Unpack is Python 3.11+; annotations are not evaluated at run time
    from distributed import Client
    from typing_extensions import Unpack


MIN_ROWS = 10
"""Fewest usable rows (images) an analysis accepts for one class."""

PLAIN_REGRESSORS = ("ols", "ridge")
"""The non-regularised fits an analysis can compare with the Lasso."""

FloatArray = NDArray[np.float64]


# -- arrays and JSON ----------------------------------------------------------------------


def frozen_array(a: ArrayLike, dtype: Any = np.float64) -> NDArray[Any]:
    """A read-only copy of ``a`` with ``dtype`` (result fields must not be changed in place)."""
    out = np.array(a, dtype=dtype)
    out.setflags(write=False)
    return out


def array_from_json(a: Any, dtype: Any = np.float64) -> NDArray[Any]:
    """:func:`frozen_array` of nested JSON lists, with ``None`` (JSON's NaN) read as NaN."""
    obj = np.array(a, dtype=object)
    flat = [np.nan if v is None else v for v in obj.ravel()]
    return frozen_array(np.array(flat, dtype=dtype).reshape(obj.shape), dtype)


def analysis_meta(
    command: str = "", seed: int | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``meta`` of a result: :func:`rcvlab.result.provenance` plus ``extra``.

    ``extra`` (model, layer, data fingerprint, class names ...) cannot replace the command or
    the seed; its own ``command`` is used when ``command`` is empty.
    """
    more = {k: v for k, v in (extra or {}).items() if k not in ("command", "seed")}
    command = command or str((extra or {}).get("command", ""))
    return provenance(command=command, seed=seed, **more)


# -- input checks -------------------------------------------------------------------------


def check_xy(X: ArrayLike, y: ArrayLike, name: str = "X") -> tuple[FloatArray, FloatArray]:
    """Validate one class's features and measure; return them as float64.

    Parameters
    ----------
    X : array_like of shape (n, d)
        Raw features (one row per image).
    y : array_like of shape (n,)
        The measure.
    name : str
        What to call the data in error messages (e.g. the class name).

    Returns
    -------
    (X, y) : float64 arrays

    Raises
    ------
    DataError
        Not 2-D / 1-D, mismatched rows, NaN or infinite values, a constant measure, or
        fewer than :data:`MIN_ROWS` rows.
    """
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if Xa.ndim != 2:
        raise DataError(
            f"{name}: features must be a 2-D array (images x features), got shape {Xa.shape}"
        )
    if ya.ndim != 1 or ya.shape[0] != Xa.shape[0]:
        raise DataError(
            f"{name}: the measure must have shape ({Xa.shape[0]},) to match the features, "
            f"got {ya.shape}"
        )
    check_measure(ya, name)
    bad_x = ~np.isfinite(Xa).all(axis=1)
    if bad_x.any():
        raise DataError(
            f"{name}: features have NaN or infinite values in {int(bad_x.sum())} row(s) "
            f"(first: {np.flatnonzero(bad_x)[:5].tolist()}); drop those images first"
        )
    return Xa, ya


def check_measure(y: ArrayLike, name: str = "the class", *, drop_nan: bool = False) -> FloatArray:
    """Validate one class's measure: at least :data:`MIN_ROWS` finite values, not constant.

    With ``drop_nan`` the non-finite values are left out first (as :func:`features_by_class`
    drops those images) instead of being an error.
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    bad = ~np.isfinite(ya)
    if drop_nan:
        ya = ya[~bad]
    elif bad.any():
        raise DataError(
            f"{name}: the measure has {int(bad.sum())} NaN or infinite value(s) (first at "
            f"row {int(np.flatnonzero(bad)[0])}); drop those images first"
        )
    if ya.size < MIN_ROWS:
        raise DataError(
            f"{name}: {ya.size} images with a finite measure, need at least {MIN_ROWS}; add "
            "images to the class"
        )
    if np.ptp(ya) == 0:
        raise DataError(
            f"{name}: the measure is constant ({ya[0]:g} for all {ya.size} images); a "
            "regression needs it to vary"
        )
    return ya


def check_int(name: str, value: Any, minimum: int, hint: str = "") -> int:
    """``value`` as an int >= ``minimum``; a one-line :class:`RcvlabError` naming ``name`` else.

    Parameters
    ----------
    name : str
        The option's name, for the message (``"reps"``).
    value : Any
        What was given; ``bool`` and non-integral numbers are refused.
    minimum : int
    hint : str
        Why, or what to give instead, appended to the message.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise RcvlabError(
            f"{name} must be an integer >= {minimum}, got {value!r}" + (f"; {hint}" if hint else "")
        )
    return int(value)


def check_reps(reps: Any) -> int:
    """``reps`` as an int >= 1."""
    return check_int("reps", reps, 1, "use e.g. reps=10")


def check_seed(seed: Any) -> int:
    """``seed`` as an int >= 0."""
    return check_int("seed", seed, 0)


def check_test_fraction(test_fraction: Any) -> float:
    """``test_fraction`` as a float strictly between 0 and 1."""
    try:
        f = float(test_fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0 < f < 1:
        raise RcvlabError(
            f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}; "
            "0.5 splits a class into halves"
        )
    return f


def check_max_dims(max_dims: Any) -> int:
    """``max_dims`` as an int >= 1."""
    return check_int("max_dims", max_dims, 1, "the paper's is 200")


def check_plain(plain: str) -> str:
    """The plain (alpha 0) regressor, normalised: one of :data:`PLAIN_REGRESSORS`."""
    p = str(plain).strip().lower()
    if p not in PLAIN_REGRESSORS:
        raise UnknownNameError(
            f"unknown plain regressor {plain!r}; choose one of {', '.join(PLAIN_REGRESSORS)}"
            + did_you_mean(p, PLAIN_REGRESSORS)
        )
    return p


def available_classes(data: Any) -> list[str]:
    """The sorted class names of an ImageSet; a one-line DataError when it has none."""
    if getattr(data, "classes", None) is None:
        raise DataError(
            f"data {getattr(data, 'source', '') or type(data).__name__} has no classes; these "
            "analyses compare classes: give a 'class' column in the CSV manifest"
        )
    return sorted(set(data.classes.tolist()))


def check_classes(data: Any, classes: Sequence[str] | None) -> list[str]:
    """The wanted classes (default: all, sorted), each one that ``data`` has, none repeated.

    Raises
    ------
    DataError
        Data without classes.
    UnknownNameError
        A class the data does not have (the message lists the available ones).
    DataError
        An empty or repeated list (:func:`rcvlab.probe.profile.check_names`).
    """
    return check_names(classes, available_classes(data), "class", "classes")


# -- features of one layer, by class ------------------------------------------------------


class ExtractOptions(TypedDict, total=False):
    """Keyword options of every model + data analysis that only steer the extraction.

    ``weights`` (of a model given by name; default ``"imagenet"``), ``batch_size`` (32),
    ``pooling`` (``"gap"``), ``cache_dir`` (None: no cache), ``device`` (None: automatic),
    ``progress`` (False), ``strict`` (False: unreadable images are skipped and listed),
    ``precision`` (``"fp32"``), ``client`` (None: this process; a ``distributed.Client``
    extracts on its cluster, with ``cache_dir``): see :func:`features_by_class`, whose
    defaults they are.
    """

    weights: str
    batch_size: int
    pooling: str
    cache_dir: str | os.PathLike[str] | None
    device: str | None
    progress: bool
    strict: bool
    precision: str
    client: Any


def features_by_class(
    model: Any,
    data: Any,
    layer: str,
    measure: str,
    classes: Sequence[str] | None = None,
    *,
    weights: str = "imagenet",
    seed: int = 0,
    batch_size: int = 32,
    pooling: str = "gap",
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
    strict: bool = False,
    precision: str = "fp32",
    client: Any = None,
) -> tuple[dict[str, tuple[FloatArray, FloatArray]], dict[str, Any]]:
    """Features of one layer (one extraction) and the measure, split by ``data.classes``.

    The classes, the layer and the measure are checked before the extraction (every class
    needs :data:`MIN_ROWS` finite, non-constant values). Rows whose image could not be read,
    whose features are not finite or whose measure is NaN are dropped (and counted in the
    returned provenance).

    Parameters
    ----------
    model : str or rcvlab Model
        A registry name (loaded with ``weights`` and ``seed``) or a loaded model.
    data : ImageSet
        Images with classes and the measure (``rcvlab.data.open_data``).
    layer : str
        The layer to probe.
    measure : str
        Name of the measure (``data.measure(measure)``).
    classes : sequence of str, optional
        Classes wanted, in this order (default: all, sorted).

    Other parameters are those of :func:`rcvlab.features.extract_features`.

    Returns
    -------
    (by_class, info)
        ``{class: (X float64 (n_c, d), y (n_c,))}`` and a provenance dict (model, weights,
        layer, measure, data source and fingerprint, counts, dropped rows, skipped items)
        whose keys match :func:`rcvlab.result.provenance`'s.

    Raises
    ------
    DataError
        Data without classes; a class with too few finite values of the measure, or a
        constant one.
    UnknownNameError
        A class that the data does not have (the message lists the available ones), an
        unknown layer or measure.
    """
    from rcvlab.analyses.profile import skipped_items
    from rcvlab.features.extract import as_image_set, one_layer
    from rcvlab.models.registry import as_model

    data = as_image_set(data)
    wanted = check_classes(data, classes)
    y_all = np.asarray(data.measure(measure), dtype=np.float64)
    for c in wanted:
        check_measure(y_all[data.classes == c], f"class {c!r}", drop_nan=True)
    model = as_model(model, weights, seed)
    model.resolve([layer])  # an unknown layer fails here, not after the extraction
    X_all, feats = one_layer(
        model,
        data,
        layer,
        batch_size=batch_size,
        pooling=pooling,
        cache_dir=cache_dir,
        device=device,
        progress=progress,
        strict=strict,
        precision=precision,
        client=client,
    )
    X_all = np.asarray(X_all, dtype=np.float64)
    ok = np.asarray(feats.valid, dtype=bool) & np.isfinite(X_all).all(axis=1) & np.isfinite(y_all)
    out = {}
    dropped = {}
    for c in wanted:
        rows = data.classes == c
        keep = rows & ok
        dropped[c] = int(rows.sum() - keep.sum())
        out[c] = (X_all[keep], y_all[keep])
    skipped = skipped_items(data, feats)
    info = {
        "model": model.name,
        "weights": model.weights,
        "weights_id": model.weights_id,
        "layer": layer,
        "measure": measure,
        "pooling": pooling,
        "precision": precision,
        "data_source": data.source,
        "data_fingerprint": data.fingerprint(),
        "n_images": len(data),
        "n_per_class": {c: int(v[1].size) for c, v in out.items()},
        "n_dropped": dropped,
        "n_skipped": len(skipped),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "feature_cache_key": feats.key,
    }
    return out, info


def class_features(
    model: Any,
    data: Any,
    *,
    layer: str,
    measure: str,
    seed: int,
    classes: Callable[[Any], Sequence[str]],
    check_options: Callable[[], object],
    **extract: Unpack[ExtractOptions],
) -> tuple[dict[str, tuple[FloatArray, FloatArray]], dict[str, Any]]:
    """The start of a model + data analysis: check its options, choose classes, extract.

    In this order, so that every mistake is found before the (possibly long) extraction:
    ``check_options()`` (the analysis's own checks, the same its ``*_from_arrays`` form
    runs), the seed and the names of ``extract``; then ``data`` is read as an ImageSet,
    ``classes(data)`` chooses the classes (with :func:`check_classes`) and
    :func:`features_by_class` extracts ``layer`` once.

    Parameters
    ----------
    model : str or rcvlab Model
    data : ImageSet or anything :func:`rcvlab.features.extract.as_image_set` reads
    layer, measure : str
    seed : int
        Seed of a model given by name (the analysis uses it for its splits too).
    classes : callable
        ``classes(image_set) -> [class, ...]``, the classes to extract, in order.
    check_options : callable
        Raises on a bad option of the analysis.
    **extract
        :class:`ExtractOptions`, passed on to :func:`features_by_class`.

    Returns
    -------
    (by_class, info)
        As :func:`features_by_class`; ``info`` is the analysis's provenance, to which it
        adds its own keys (training class ...) before :func:`analysis_meta`.

    Raises
    ------
    TypeError
        A keyword that is not one of :class:`ExtractOptions` (as Python does for an
        unknown keyword argument).
    """
    from rcvlab.features.extract import as_image_set

    check_options()
    seed = check_seed(seed)
    unknown = sorted(set(extract) - set(ExtractOptions.__annotations__))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r}; the extraction options are "
            + ", ".join(ExtractOptions.__annotations__)
        )
    data = as_image_set(data)
    return features_by_class(model, data, layer, measure, classes(data), seed=seed, **extract)


# -- image passes on a Dask cluster ---------------------------------------------------------


def row_shards(client: Client | None, n: int, batch_size: int) -> list[tuple[int, int]]:
    """Rows ``[0, n)`` as the shards a per-shard function of an image pass is called on.

    Parameters
    ----------
    client : distributed.Client or None
        None: one shard, ``(0, n)`` (the pass runs here). A client: about
        :data:`rcvlab.distributed.extract.SHARDS_PER_WORKER` shards per worker, none over
        :data:`rcvlab.distributed.extract.MAX_SHARD_BATCHES` batches
        (:func:`rcvlab.distributed.extract.plan_shards`).
    n : int
    batch_size : int

    Returns
    -------
    list of (start, stop)
        In order; every shard starts on a multiple of ``batch_size``, so each batch holds
        the images that a single process puts in it.
    """
    if client is None:
        return [(0, n)]
    from rcvlab.distributed.client import n_workers
    from rcvlab.distributed.extract import plan_shards

    return plan_shards([(0, n)], batch_size, n_workers(client))


__all__ = [
    "MIN_ROWS",
    "PLAIN_REGRESSORS",
    "ExtractOptions",
    "FloatArray",
    "analysis_meta",
    "array_from_json",
    "available_classes",
    "check_classes",
    "check_int",
    "check_max_dims",
    "check_measure",
    "check_plain",
    "check_reps",
    "check_seed",
    "check_test_fraction",
    "check_xy",
    "class_features",
    "features_by_class",
    "frozen_array",
    "row_shards",
]
