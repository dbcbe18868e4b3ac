"""Layer-wise concept profile: held-out R² of an RCV at every layer, with baselines."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.probe.fit import RIDGE_ALPHAS, check_min_std, check_regressor, fit_predictions
from rcvlab.probe.kernels import ridge_split_predictions_torch, torch_device_available
from rcvlab.probe.result import SPLITS, LayerScore, ProfileResult
from rcvlab.probe.splits import Split, repeated_splits
from rcvlab.probe.stats import summarise
from rcvlab.result import provenance

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class _Group:
    """One class (all images; one held-out class): rows, splits, targets of every split.

    Under leave-one-class-out ``rows`` are all usable images and the single split trains on
    the other classes' rows and tests on the held-out class's.
    """

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


def check_split(split: str | None, has_classes: bool) -> str:
    """Validate ``split`` (before any work) and resolve its default; return the split.

    Parameters
    ----------
    split : {"per-class", "pooled", "leave-one-class-out"} or None
        None is the historical default: ``"per-class"`` when there are class labels, else
        ``"pooled"``.
    has_classes : bool
        Whether class labels are given.

    Raises
    ------
    UnknownNameError
        An unknown split.
    RcvlabError
        ``"per-class"`` or ``"leave-one-class-out"`` without class labels.
    """
    if split is None:
        return "per-class" if has_classes else "pooled"
    if not isinstance(split, str) or split not in SPLITS:
        raise UnknownNameError(
            f"unknown split {split!r}; choose one of {', '.join(SPLITS)}"
            + (did_you_mean(split, SPLITS) if isinstance(split, str) else "")
        )
    if split != "pooled" and not has_classes:
        raise RcvlabError(
            f"split={split!r} needs class labels (classes=...); give them, or use split='pooled'"
        )
    return split


def check_fit_device(device: Any) -> None:
    """Raise one line unless ``device`` is None or a torch device usable here for the fits.

    Raises
    ------
    RcvlabError
        A device name torch does not know, or one this machine does not have.
    """
    if device is not None and not torch_device_available(device):
        raise RcvlabError(
            f"Device {str(device)!r} is not available here for the fits; use 'cpu' or leave it out."
        )


def check_measure(
    y: ArrayLike,
    classes: ArrayLike | None = None,
    *,
    min_images: int = 10,
    name: str = "the measure",
    split: str | None = None,
) -> FloatArray:
    """Check that a measure can be probed at all, before any feature is extracted.

    The same checks :func:`probe_layers` makes after extraction, on the measure alone (so
    images that later fail to load can still leave too few; that is caught then).

    Parameters
    ----------
    y : array_like, torch.Tensor or pandas.Series of shape (n,)
        The measure; NaN marks an image without a value.
    classes : array_like of shape (n,), optional
        Class labels when probing per class: every class is checked on its own.
    min_images : int
        Minimum number of images with a value (per class when ``classes`` is given).
    name : str
        How to call the measure in messages.
    split : {"per-class", "pooled", "leave-one-class-out"}, optional
        The split :func:`probe_layers` will use (default as there). ``"pooled"`` checks all
        images together, ignoring ``classes``; ``"leave-one-class-out"`` also needs two
        classes.

    Returns
    -------
    ndarray of shape (n,), float64

    Raises
    ------
    DataError
        A measure that is not numeric or not 1-D, has infinite values, has no value at all,
        has fewer than ``min_images`` values (in a class), is constant (in a class), or
        fewer than two classes for leave-one-class-out.
    """
    split = check_split(split, classes is not None)
    yv = measure_array(y, name)
    labels = _labels(classes, yv.shape[0]) if split != "pooled" else None
    usable = ~np.isnan(yv)
    if not usable.any():
        raise DataError(
            f"{name} has no value (all NaN) for the {yv.size} images; nothing to regress"
        )
    n_nan = int(yv.size - usable.sum())
    note = f"; {n_nan} excluded ({n_nan} with NaN measure)" if n_nan else ""
    members = _class_members(yv, usable, labels, check_min_images(min_images), note)
    if split == "leave-one-class-out":
        _check_two_classes(members)
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
    split: str | None = None,
    client: Any = None,
    device: Any = None,
) -> ProfileResult:
    """Probe every layer for the measure ``y`` with RCVs, scored by held-out R².

    For each layer and split an RCV (:func:`rcvlab.probe.fit.fit_rcv`) is fitted on the
    training side (features standardised on it alone) and scored by R² on the test side.
    ``split`` says how the images are divided:

    * ``"per-class"`` (the default when ``classes`` is given; the papers' protocol):
      ``reps`` random train/test splits *within* each class; a layer's R² values are pooled
      class-major. It shows how well a layer reads the measure among images of one class
      it has been fitted on.
    * ``"pooled"`` (the default without ``classes``): ``reps`` random splits of all images
      together, class labels ignored.
    * ``"leave-one-class-out"``: for every class, fit on all the *other* classes and score
      R² on the held-out class — one split per class, so ``reps`` and ``test_fraction`` are
      not used (the result records ``reps=1`` and ``test_fraction=nan``). It shows whether
      a layer reads the measure on a kind of object it was never fitted on. Needs at least
      two classes. ``r2`` holds one value per held-out class, and the 95 % interval is the
      plain Student-t interval over classes (:func:`rcvlab.probe.stats.mean_ci95` without
      the Nadeau–Bengio correction: the held-out sets are disjoint).

    The same splits serve every layer and both baselines:

    * ``"random"``: the same layers of ``random_features`` (e.g. the random-weights twin);
    * ``"shuffled"``: the model's features against ``y`` permuted within each class (over
      all images when pooled). Per class and pooled: one permutation per repetition. Leave-
      one-class-out: one seeded permutation within every class, then the same held-out
      splits; permuting within the class keeps every held-out class's own values (and so
      its ``SS_tot``), only their pairing with the images is broken.

    Parameters
    ----------
    features : mapping of str to array_like of shape (n, d_layer)
        GAP features of every layer, in network order.
    y : array_like, torch.Tensor or pandas.Series of shape (n,)
        The measure (e.g. scale ratio), numeric and 1-D; NaN marks an image without a
        value. A tensor is read with ``.detach().cpu()``, a Series by ``.to_numpy()``
        (its index is not used: values are matched to feature rows by position).
    reps : int
        Repetitions (random splits) per class (per-class, pooled).
    test_fraction : float
        Fraction of a class's images in the test side (``round(n * test_fraction)``;
        per-class, pooled).
    regressor : {"ols", "ridge", "lasso"}
    alpha : float, optional
        Penalty of ridge/lasso (see :func:`rcvlab.probe.fit.fit_rcv`); ridge without alpha
        chooses it per fit by leave-one-out (the choices are kept in
        ``result.extra["ridge_alpha_chosen"]``).
    seed : int
        Seeds the splits and the permutations (``numpy.random.SeedSequence(seed)``, one
        child per class).
    classes : array_like of shape (n,), optional
        Class labels. Per class, each class is probed separately (splits and permutations
        within the class) and a layer's R² values are pooled class-major, classes in sorted
        order; ``LayerScore.r2_by_class`` holds them per class (per held-out class under
        leave-one-class-out).
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
        results do not depend on ``n_jobs``. Not used with ``client``.
    min_std : float, optional
        Standardisation guard (:func:`rcvlab.probe.fit.fit_rcv`): each kept column is
        divided by ``max(std_j, min_std * median std)`` of its training split, so that a
        column that barely varies there cannot blow up one split's test R². None or 0 (the
        default) is the papers' plain standardisation. ``LayerScore.n_floored`` counts the
        columns it raised (maximum over repetitions and classes).
    split : {"per-class", "pooled", "leave-one-class-out"}, optional
        See above; default ``"per-class"`` with ``classes``, ``"pooled"`` without.
    client : distributed.Client, optional
        Run the layers on this Dask cluster (:mod:`rcvlab.distributed.tasks`): every
        network's layer features and the splits are scattered once to every worker, and
        each (network, layer) is one task with one BLAS thread, as here. The result equals
        the one computed here, bit for bit.
    device : str or torch.device, optional
        Run the ridge fits on this torch device (e.g. ``"cuda"``): the same kernel, batched
        over the repetitions, in float64 (:mod:`rcvlab.probe.kernels`); R² agree with the
        CPU's to about 1e-10. None (the default): NumPy/LAPACK on this CPU. OLS and Lasso
        always run on the CPU. With ``client``, every task uses this device on its worker.

    Returns
    -------
    ProfileResult
        ``profiles["model"]`` (+ ``"random"``, ``"shuffled"``) and ``split``; ``data`` holds
        the counts: ``n_images``, ``n_used``, ``n_excluded_nan`` (rows with NaN measure or
        non-finite features in any probed layer of either network), ``classes``,
        ``n_by_class``, ``n_train``, ``n_test`` (per held-out class under
        leave-one-class-out); ``meta`` the provenance (seed, versions).

    Raises
    ------
    UnknownNameError
        Unknown layer, unknown regressor, unknown split, or a layer missing from
        ``random_features``.
    RcvlabError
        ``split="per-class"`` or ``"leave-one-class-out"`` without ``classes``.
    DataError
        Mismatched shapes, a non-numeric or non-1-D measure, infinite measure values, fewer
        than ``min_images`` usable images in a class, a measure that is constant within a
        class, or fewer than two classes for leave-one-class-out.
    """
    reg, a = check_regressor(regressor, alpha)
    reps = check_split_options(reps, test_fraction, seed)
    if client is not None:
        from rcvlab.distributed.client import check_client

        check_client(client)
    check_fit_device(device)
    floor = check_min_std(min_std)
    min_images = check_min_images(min_images)
    split = check_split(split, classes is not None)

    names = _select_layers(features, layers)
    yv = measure_array(y, "the measure")
    n = yv.shape[0]
    labels = _labels(classes, n)
    if split == "pooled":
        labels = None
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

    members = _class_members(yv, usable, labels, min_images, excluded_note)
    if split == "leave-one-class-out":
        _check_two_classes(members)
        groups = _held_out_groups(yv, members, seed, shuffled)
    else:
        groups = _make_groups(yv, members, reps, test_fraction, seed, shuffled)

    tasks = [(kind, name) for kind in arrays for name in names]
    # Largest layers first: a better balance between the worker threads.
    order = sorted(range(len(tasks)), key=lambda i: -arrays[tasks[i][0]][tasks[i][1]].shape[1])
    workers = n_jobs if n_jobs is not None else _n_cpus()
    workers = max(1, min(int(workers), len(tasks)))

    def run(i: int) -> _LayerRun:
        kind, name = tasks[i]
        return _probe_one(
            arrays[kind][name], groups, reg, a, floor, with_shuffled=kind == "model", device=device
        )

    # One BLAS thread per worker: small LAPACK calls scale poorly across threads, and the
    # results are then the same whatever n_jobs is.
    if client is not None:
        from rcvlab.distributed.tasks import Call, run_tasks, shared_inputs

        shared = {task: arrays[task[0]][task[1]] for task in tasks}
        with shared_inputs(client, {**shared, "groups": groups}) as ref:
            calls = [
                Call(
                    _probe_one,
                    (ref[tasks[i]], ref["groups"], reg, a, floor),
                    {"with_shuffled": tasks[i][0] == "model", "device": device},
                )
                for i in order
            ]
            done = dict(zip(order, run_tasks(client, calls, name="rcvlab-probe"), strict=True))
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            if workers == 1:
                done = {i: run(i) for i in order}
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    futures = {i: pool.submit(run, i) for i in order}
                    done = {i: f.result() for i, f in futures.items()}

    by_class = labels is not None
    loco = split == "leave-one-class-out"
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
                    disjoint=loco,
                )
            )
            if reg == "ridge" and a is None:
                pooled = np.concatenate([al[:, col] for al in alphas])
                chosen.setdefault(out_kind, {})[name] = [float(v) for v in pooled]

    data = {
        "n_images": int(n),
        "n_used": int(usable.sum()),
        "n_excluded_nan": n_excluded,
        "classes": [c for c, _ in members] if by_class else [],
        "n_by_class": {c: int(rows.size) for c, rows in members},
        "n_train": n_train,
        "n_test": n_test,
    }
    return ProfileResult(
        profiles={k: tuple(v) for k, v in profiles.items()},
        split=split,
        regressor=reg,
        alpha=a,
        reps=1 if loco else reps,
        test_fraction=math.nan if loco else float(test_fraction),
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
    device: Any = None,
) -> _LayerRun:
    """All repetitions of one layer: per group an (reps, m) array of test R².

    ``device`` (a torch device such as ``"cuda"``; None = numpy on this CPU) runs ridge fits
    batched over each group's repetitions with
    :func:`rcvlab.probe.kernels.ridge_split_predictions_torch`; ``ols`` and ``lasso`` always
    run on the CPU.
    """
    r2s: list[FloatArray] = []
    alphas: list[FloatArray] = []
    n_const = n_floor = 0
    batched = device is not None and regressor == "ridge"
    for g in groups:
        m = g.y_train[0].shape[1] if with_shuffled else 1
        r2 = np.empty((len(g.splits), m))
        al = np.full((len(g.splits), m), np.nan)
        if batched:
            X = X_all[g.rows]
            out = ridge_split_predictions_torch(
                X,
                [tr for tr, _ in g.splits],
                [te for _, te in g.splits],
                [y[:, :m] for y in g.y_train],
                RIDGE_ALPHAS if alpha is None else [alpha],
                loo=alpha is None,
                min_std=min_std,
                device=device,
            )
            for r in range(len(g.splits)):
                r2[r] = _r2_columns(g.y_test[r][:, :m], out.predictions[r])
            n_const = max(n_const, int(out.n_constant.max()))
            n_floor = max(n_floor, int(out.n_floored.max()))
            if alpha is None:
                al[:] = out.alphas
        else:
            X = np.asarray(X_all[g.rows], dtype=np.float64)
            for r, (tr, te) in enumerate(g.splits):
                pred, nc, nf, ch = fit_predictions(
                    X[tr], g.y_train[r][:, :m], X[te], regressor, alpha, min_std
                )
                r2[r] = _r2_columns(g.y_test[r][:, :m], pred)
                n_const = max(n_const, nc)
                n_floor = max(n_floor, nf)
                if ch is not None:
                    al[r] = ch
        r2s.append(r2)
        alphas.append(al)
    return _LayerRun(r2s, n_const, n_floor, alphas)


def _r2_columns(yt: FloatArray, pred: FloatArray) -> FloatArray:
    """Test R² of every column (the value of :func:`rcvlab.probe.stats.r2_score`)."""
    ss_res = np.sum((yt - pred) ** 2, axis=0)
    ss_tot = np.sum((yt - yt.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, np.nan, -np.inf))


def _make_groups(
    y: FloatArray,
    members: list[tuple[str, NDArray[np.intp]]],
    reps: int,
    test_fraction: float,
    seed: int,
    shuffled: bool,
) -> list[_Group]:
    """Per class (or all images): ``reps`` random splits within the group's rows."""
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


def _held_out_groups(
    y: FloatArray,
    members: list[tuple[str, NDArray[np.intp]]],
    seed: int,
    shuffled: bool,
) -> list[_Group]:
    """Leave-one-class-out: one group per held-out class, over all usable rows.

    The shuffled measure is permuted within each class with the generator the per-class
    split would use for its first repetition (same seed children), then serves every
    held-out split.
    """
    rows = np.sort(np.concatenate([r for _, r in members]))
    cols = [y[rows]]
    if shuffled:
        y_shuf = y.copy()
        children = np.random.SeedSequence(seed).spawn(len(members))
        for (_, r), child in zip(members, children, strict=True):
            rng = np.random.default_rng(child.spawn(2)[1])
            y_shuf[r] = y[r][rng.permutation(r.size)]
        cols.append(y_shuf[rows])
    Y = np.column_stack(cols)
    groups = []
    for name, held in members:
        is_test = np.isin(rows, held)
        tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        groups.append(_Group(name, rows, [(tr, te)], [Y[tr]], [Y[te]]))
    return groups


def _check_two_classes(members: list[tuple[str, NDArray[np.intp]]]) -> None:
    if len(members) < 2:
        only = ", ".join(repr(c) for c, _ in members)
        raise DataError(
            f"leave-one-class-out needs at least 2 classes, got {len(members)} ({only}); "
            "give more classes or use split='per-class'"
        )


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


def measure_array(y: Any, name: str = "the measure") -> FloatArray:
    """The measure as a 1-D float64 array, from an array, a torch tensor or a pandas Series.

    Parameters
    ----------
    y : array_like, torch.Tensor or pandas.Series
        One value per image; a tensor is read with ``.detach().cpu()`` (any device, with or
        without gradient), a Series or Index with ``.to_numpy()`` (by position, the index is
        not used; missing values become NaN).
    name : str
        How to call the measure in messages.

    Returns
    -------
    ndarray of shape (n,), float64

    Raises
    ------
    DataError
        Non-numeric values (strings, dates, complex numbers), a shape other than (n,), or
        an infinite value.
    """
    if callable(getattr(y, "detach", None)) and callable(getattr(y, "cpu", None)):
        t = y.detach().cpu()
        # bfloat16 and friends have no numpy dtype; every real dtype converts to float64.
        y = (t if t.is_complex() else t.double()).numpy()
    elif callable(getattr(y, "to_numpy", None)):
        try:
            if getattr(y.dtype, "kind", "O") not in "biufO":  # dates would convert to floats
                raise TypeError
            y = y.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            y = y.to_numpy()
    raw = y if isinstance(y, np.ndarray) else np.asarray(y)
    kind = raw.dtype.kind
    try:
        if kind not in "biufO":
            raise TypeError
        yv = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        first = raw.ravel()[:3].tolist() if raw.size else []
        raise DataError(
            f"{name} must be numeric (one number per image), got dtype {raw.dtype} "
            f"(first values {first}); convert it to numbers first"
        ) from None
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
    "SPLITS",
    "check_fit_device",
    "check_measure",
    "check_min_images",
    "check_names",
    "check_split",
    "check_split_options",
    "measure_array",
    "probe_layers",
]
