"""Layer-wise concept profile: held-out R² of an RCV at every layer, with baselines."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.probe.fit import check_min_std, check_regressor, fit_predictions
from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.probe.splits import Split, repeated_splits
from rcvlab.probe.stats import summarise
from rcvlab.result import provenance

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class _Group:
    """One class (or all images): its rows, splits, and the targets of every repetition."""

    name: str
    rows: NDArray[np.intp]  # indices into the full arrays
    splits: list[Split]  # indices into ``rows``
    y_train: list[FloatArray]  # per rep: (n_train, m) columns: measure [, shuffled measure]
    y_test: list[FloatArray]  # per rep: (n_test, m)


def check_split_options(reps: int, test_fraction: float, seed: int) -> int:
    """Validate the repeated-split options (before any expensive work); return ``reps``."""
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < 1:
        raise RcvlabError(f"reps must be a positive integer, got {reps!r}")
    if not 0 < test_fraction < 1:
        raise RcvlabError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise RcvlabError(f"seed must be an integer >= 0, got {seed!r}")
    return int(reps)


def check_min_images(min_images: int) -> int:
    """Validate the minimum number of usable images per class; return it."""
    if (
        isinstance(min_images, bool)
        or not isinstance(min_images, int | np.integer)
        or min_images < 2
    ):
        raise RcvlabError(f"min_images must be an integer >= 2, got {min_images!r}")
    return int(min_images)


def check_measure(
    y: ArrayLike,
    classes: ArrayLike | None = None,
    *,
    min_images: int = 10,
    name: str = "the measure",
) -> FloatArray:
    """Check that a measure can be probed at all, before any feature is extracted.

    The same checks :func:`probe_layers` makes after extraction, on the measure alone (so
    images that later fail to load can still leave too few; that is caught then).

    Parameters
    ----------
    y : array_like of shape (n,)
        The measure; NaN marks an image without a value.
    classes : array_like of shape (n,), optional
        Class labels when probing per class: every class is checked on its own.
    min_images : int
        Minimum number of images with a value (per class when ``classes`` is given).
    name : str
        How to call the measure in messages.

    Returns
    -------
    ndarray of shape (n,), float64

    Raises
    ------
    DataError
        A measure that is not 1-D, has infinite values, has no value at all, has fewer than
        ``min_images`` values (in a class), or is constant (in a class).
    """
    yv = _measure_array(y, name)
    labels = _labels(classes, yv.shape[0])
    usable = ~np.isnan(yv)
    if not usable.any():
        raise DataError(
            f"{name} has no value (all NaN) for the {yv.size} images; nothing to regress"
        )
    n_nan = int(yv.size - usable.sum())
    note = f"; {n_nan} excluded ({n_nan} with NaN measure)" if n_nan else ""
    _class_members(yv, usable, labels, check_min_images(min_images), note)
    return yv


def probe_layers(
    features: Mapping[str, ArrayLike],
    y: ArrayLike,
    *,
    reps: int = 10,
    test_fraction: float = 0.3,
    regressor: str = "ols",
    alpha: float | None = None,
    seed: int = 0,
    classes: ArrayLike | None = None,
    random_features: Mapping[str, ArrayLike] | None = None,
    shuffled: bool = True,
    layers: Sequence[str] | None = None,
    min_images: int = 10,
    n_jobs: int | None = None,
    min_std: float | None = None,
) -> ProfileResult:
    """Probe every layer for the measure ``y`` with RCVs over repeated random splits.

    For each layer and repetition an RCV (:func:`rcvlab.probe.fit.fit_rcv`) is fitted on the
    training split (features standardised on it) and scored by R² on the test split. The
    same splits serve every layer and both baselines:

    * ``"random"``: the same layers of ``random_features`` (e.g. the random-weights twin);
    * ``"shuffled"``: the model's features against ``y`` permuted within the class, one
      permutation per repetition (R² that chance alone gives).

    Parameters
    ----------
    features : mapping of str to array_like of shape (n, d_layer)
        GAP features of every layer, in network order.
    y : array_like of shape (n,)
        The measure (e.g. scale ratio). NaN marks an image without a value.
    reps : int
        Repetitions (random splits) per class.
    test_fraction : float
        Fraction of a class's images in the test side (``round(n * test_fraction)``).
    regressor : {"ols", "ridge", "lasso"}
    alpha : float, optional
        Penalty of ridge/lasso (see :func:`rcvlab.probe.fit.fit_rcv`); ridge without alpha
        chooses it per fit by leave-one-out (the choices are kept in
        ``result.extra["ridge_alpha_chosen"]``).
    seed : int
        Seeds the splits and the permutations (``numpy.random.SeedSequence(seed)``, one
        child per class).
    classes : array_like of shape (n,), optional
        Class labels. When given, each class is probed separately (splits and permutations
        within the class) and a layer's R² values are pooled class-major, classes in sorted
        order; ``LayerScore.r2_by_class`` holds them per class.
    random_features : mapping of str to array_like, optional
        Features of the baseline network; must contain every probed layer.
    shuffled : bool
        Also compute the shuffled-measure baseline.
    layers : sequence of str, optional
        Layers to probe, in this order (default: all of ``features``).
    min_images : int
        Minimum usable images per class.
    n_jobs : int, optional
        Worker threads (default: the CPUs available). Each uses single-threaded BLAS, so the
        results do not depend on ``n_jobs``.
    min_std : float, optional
        Standardisation guard (:func:`rcvlab.probe.fit.fit_rcv`): each kept column is
        divided by ``max(std_j, min_std * median std)`` of its training split, so that a
        column that barely varies there cannot blow up one split's test R². None or 0 (the
        default) is the papers' plain standardisation. ``LayerScore.n_floored`` counts the
        columns it raised (maximum over repetitions and classes).

    Returns
    -------
    ProfileResult
        ``profiles["model"]`` (+ ``"random"``, ``"shuffled"``); ``data`` holds the counts:
        ``n_images``, ``n_used``, ``n_excluded_nan`` (rows with NaN measure or non-finite
        features in any probed layer of either network), ``classes``, ``n_by_class``,
        ``n_train``, ``n_test``; ``meta`` the provenance (seed, versions).

    Raises
    ------
    UnknownNameError
        Unknown layer, unknown regressor, or a layer missing from ``random_features``.
    DataError
        Mismatched shapes, infinite measure values, fewer than ``min_images`` usable images
        in a class, or a measure that is constant within a class.
    """
    reg, a = check_regressor(regressor, alpha)
    reps = check_split_options(reps, test_fraction, seed)
    floor = check_min_std(min_std)
    min_images = check_min_images(min_images)

    names = _select_layers(features, layers)
    yv = _measure_array(y, "the measure")
    n = yv.shape[0]
    labels = _labels(classes, n)
    nets: dict[str, Mapping[str, ArrayLike]] = {"model": features}
    if random_features is not None:
        for name in names:
            if name not in random_features:
                raise UnknownNameError(
                    f"layer {name!r} is missing from random_features"
                    + did_you_mean(name, random_features)
                )
        nets["random"] = random_features

    arrays: dict[str, dict[str, np.ndarray]] = {}
    usable = ~np.isnan(yv)
    bad_layers: dict[str, int] = {}
    for kind, feats in nets.items():
        arrays[kind] = {}
        for name in names:
            X = np.asarray(feats[name])
            if X.ndim != 2 or X.shape[0] != n:
                raise DataError(
                    f"{kind} features of layer {name!r} have shape {X.shape}; "
                    f"expected ({n}, d) for {n} measure values"
                )
            arrays[kind][name] = X
            finite = np.isfinite(X).all(axis=1)
            if not finite.all():
                bad_layers[f"{kind}:{name}"] = int(n - finite.sum())
            usable &= finite
    n_excluded = int(n - usable.sum())
    why = []
    if np.isnan(yv).any():
        why.append(f"{int(np.isnan(yv).sum())} with NaN measure")
    why += [f"{v} with non-finite {k} features" for k, v in bad_layers.items()]
    excluded_note = f"; {n_excluded} excluded ({', '.join(why)})" if n_excluded else ""

    groups = _make_groups(
        yv, usable, labels, reps, test_fraction, seed, shuffled, min_images, excluded_note
    )

    tasks = [(kind, name) for kind in arrays for name in names]
    # Largest layers first: a better balance between the worker threads.
    order = sorted(range(len(tasks)), key=lambda i: -arrays[tasks[i][0]][tasks[i][1]].shape[1])
    workers = n_jobs if n_jobs is not None else _n_cpus()
    workers = max(1, min(int(workers), len(tasks)))

    def run(i: int) -> _LayerRun:
        kind, name = tasks[i]
        return _probe_one(arrays[kind][name], groups, reg, a, floor, with_shuffled=kind == "model")

    # One BLAS thread per worker: small LAPACK calls scale poorly across threads, and the
    # results are then the same whatever n_jobs is.
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            done = {i: run(i) for i in order}
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {i: pool.submit(run, i) for i in order}
                done = {i: f.result() for i, f in futures.items()}

    by_class = labels is not None
    n_train = {g.name: int(g.splits[0][0].size) for g in groups}
    n_test = {g.name: int(g.splits[0][1].size) for g in groups}
    profiles: dict[str, list[LayerScore]] = {k: [] for k in arrays}
    if shuffled:
        profiles["shuffled"] = []
    chosen: dict[str, dict[str, list[float]]] = {}
    for i, (kind, name) in enumerate(tasks):
        r2s, n_const, n_floor, alphas = done[i]
        dim = int(arrays[kind][name].shape[1])
        columns = [(kind, 0)] + ([("shuffled", 1)] if kind == "model" and shuffled else [])
        for out_kind, col in columns:
            per_class = {g.name: r2[:, col] for g, r2 in zip(groups, r2s, strict=True)}
            profiles[out_kind].append(
                summarise(
                    name,
                    dim,
                    np.concatenate(list(per_class.values())),
                    n_train=n_train if by_class else n_train["all"],
                    n_test=n_test if by_class else n_test["all"],
                    r2_by_class=per_class if by_class else None,
                    n_constant=n_const,
                    n_floored=n_floor,
                )
            )
            if reg == "ridge" and a is None:
                pooled = np.concatenate([al[:, col] for al in alphas])
                chosen.setdefault(out_kind, {})[name] = [float(v) for v in pooled]

    data = {
        "n_images": int(n),
        "n_used": int(usable.sum()),
        "n_excluded_nan": n_excluded,
        "classes": [g.name for g in groups] if by_class else [],
        "n_by_class": {g.name: int(g.rows.size) for g in groups},
        "n_train": n_train,
        "n_test": n_test,
    }
    return ProfileResult(
        profiles={k: tuple(v) for k, v in profiles.items()},
        regressor=reg,
        alpha=a,
        reps=reps,
        test_fraction=float(test_fraction),
        seed=int(seed),
        min_std=floor,
        data=data,
        extra={"ridge_alpha_chosen": chosen} if chosen else {},
        meta=provenance(seed=int(seed)),
    )


class _LayerRun(NamedTuple):
    r2s: list[FloatArray]  # per group: (reps, m) test R²
    n_constant: int  # maximum over groups and repetitions
    n_floored: int  # maximum over groups and repetitions
    alphas: list[FloatArray]  # per group: (reps, m) chosen ridge alphas (NaN: none)


def _probe_one(
    X_all: np.ndarray,
    groups: list[_Group],
    regressor: str,
    alpha: float | None,
    min_std: float | None,
    *,
    with_shuffled: bool,
) -> _LayerRun:
    """All repetitions of one layer: per group an (reps, m) array of test R²."""
    r2s: list[FloatArray] = []
    alphas: list[FloatArray] = []
    n_const = n_floor = 0
    for g in groups:
        X = np.asarray(X_all[g.rows], dtype=np.float64)
        m = g.y_train[0].shape[1] if with_shuffled else 1
        r2 = np.empty((len(g.splits), m))
        al = np.full((len(g.splits), m), np.nan)
        for r, (tr, te) in enumerate(g.splits):
            pred, nc, nf, ch = fit_predictions(
                X[tr], g.y_train[r][:, :m], X[te], regressor, alpha, min_std
            )
            yt = g.y_test[r][:, :m]
            ss_res = np.sum((yt - pred) ** 2, axis=0)
            ss_tot = np.sum((yt - yt.mean(axis=0)) ** 2, axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                # Same value as stats.r2_score, vectorised over the targets.
                r2[r] = np.where(
                    ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, np.nan, -np.inf)
                )
            n_const = max(n_const, nc)
            n_floor = max(n_floor, nf)
            if ch is not None:
                al[r] = ch
        r2s.append(r2)
        alphas.append(al)
    return _LayerRun(r2s, n_const, n_floor, alphas)


def _make_groups(
    y: FloatArray,
    usable: NDArray[np.bool_],
    labels: np.ndarray | None,
    reps: int,
    test_fraction: float,
    seed: int,
    shuffled: bool,
    min_images: int,
    excluded_note: str,
) -> list[_Group]:
    members = _class_members(y, usable, labels, min_images, excluded_note)
    children = np.random.SeedSequence(seed).spawn(len(members))
    groups = []
    for (name, rows), child in zip(members, children, strict=True):
        yc = y[rows]
        split_seed, shuffle_seed = child.spawn(2)
        splits = repeated_splits(rows.size, reps, test_fraction, split_seed)
        rng = np.random.default_rng(shuffle_seed)
        y_train, y_test = [], []
        for tr, te in splits:
            cols = [yc]
            if shuffled:
                cols.append(yc[rng.permutation(rows.size)])
            Y = np.column_stack(cols)
            y_train.append(Y[tr])
            y_test.append(Y[te])
        groups.append(_Group(name, rows, splits, y_train, y_test))
    return groups


def _class_members(
    y: FloatArray,
    usable: NDArray[np.bool_],
    labels: np.ndarray | None,
    min_images: int,
    excluded_note: str,
) -> list[tuple[str, NDArray[np.intp]]]:
    """The usable rows of every class (or of all images), checked to be enough and varied."""
    if labels is None:
        members: list[tuple[str, NDArray[np.intp]]] = [("all", np.flatnonzero(usable))]
    else:
        try:
            uniq = np.unique(labels)
        except TypeError as e:
            raise DataError(f"class labels cannot be sorted: {e}") from None
        members = [(str(c), np.flatnonzero(usable & (labels == c))) for c in uniq]
        if len({name for name, _ in members}) != len(members):
            raise DataError("two class labels have the same text; use distinct labels")
    for name, rows in members:
        where = "" if labels is None else f" for class {name!r}"
        if rows.size < min_images:
            raise DataError(
                f"only {rows.size} usable images{where} (need at least {min_images})"
                + excluded_note
            )
        yc = y[rows]
        if np.ptp(yc) == 0:
            raise DataError(
                f"measure is constant (value {yc[0]:g}){where or ' over all images'}; "
                "nothing to regress"
            )
    return members


def _measure_array(y: ArrayLike, name: str) -> FloatArray:
    yv = np.asarray(y, dtype=np.float64)
    if yv.ndim != 1:
        raise DataError(f"{name} must be a 1-D array (one value per image), got {yv.shape}")
    if np.isinf(yv).any():
        rows = np.flatnonzero(np.isinf(yv))
        raise DataError(
            f"{name} is infinite for {rows.size} image(s) (first rows: {rows[:5].tolist()})"
        )
    return yv


def _labels(classes: ArrayLike | None, n: int) -> np.ndarray | None:
    if classes is None:
        return None
    labels = np.asarray(classes)
    if labels.shape != (n,):
        raise DataError(f"classes must have shape ({n},), got {labels.shape}")
    return labels


def check_names(
    wanted: Sequence[str] | str | None, available: Sequence[str], what: str, plural: str
) -> list[str]:
    """The names wanted (default: all ``available``, in order), each available, none repeated.

    Parameters
    ----------
    wanted : sequence of str, str or None
        A single name is a list of one.
    available : sequence of str
        The names there are (listed in the message of an unknown one).
    what, plural : str
        What a name names, for the messages (``"layer"``, ``"layers"``).

    Raises
    ------
    UnknownNameError
        A name that is not available.
    DataError
        An empty or repeated list.
    """
    if wanted is None:
        names = list(available)
    else:
        names = [wanted] if isinstance(wanted, str) else [str(w) for w in wanted]
    if not names:
        raise DataError(f"{plural} is empty; name at least one {what}")
    for name in names:
        if name not in available:
            raise UnknownNameError(
                f"unknown {what} {name!r}; available: {', '.join(available)}."
                + did_you_mean(name, available)
            )
    if len(set(names)) != len(names):
        raise DataError(f"{plural} are repeated: {names}; name each {what} once")
    return names


def _select_layers(features: Mapping[str, ArrayLike], layers: Sequence[str] | None) -> list[str]:
    if not features:
        raise DataError("no layers given: features is empty")
    return check_names(layers, list(features), "layer", "layers")


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


__all__ = [
    "check_measure",
    "check_min_images",
    "check_names",
    "check_split_options",
    "probe_layers",
]
