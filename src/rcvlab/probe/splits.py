"""Repeated random train/test splits, reproducible from a seed."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rcvlab.errors import DataError

Split = tuple[NDArray[np.intp], NDArray[np.intp]]


def n_test_rows(n: int, test_fraction: float) -> int:
    """Number of test rows: ``n * test_fraction`` rounded half up (441 x 0.3 -> 132)."""
    return math.floor(n * test_fraction + 0.5)


def repeated_splits(
    n: int,
    reps: int,
    test_fraction: float,
    seed: int | np.random.SeedSequence,
    groups: ArrayLike | None = None,
) -> list[Split]:
    """Draw ``reps`` random train/test splits of ``n`` rows.

    One generator, ``numpy.random.default_rng(seed)``, draws every repetition in turn, so
    the same seed gives the same splits.

    Parameters
    ----------
    n : int
        Number of rows.
    reps : int
        Number of repetitions (>= 1).
    test_fraction : float
        Fraction of rows (of groups, with ``groups``) in the test side, in (0, 1).
    seed : int or numpy.random.SeedSequence
    groups : array_like of shape (n,), optional
        Group label of every row (e.g. source image). Splits are then group-disjoint: the
        groups are shuffled and ``round(G * test_fraction)`` of the ``G`` groups (at least
        one, at most ``G - 1``) form the test side, as scikit-learn's ``GroupShuffleSplit``
        does; test sizes then vary between repetitions.

    Returns
    -------
    list of (train_idx, test_idx)
        Sorted integer index arrays, disjoint, together covering ``range(n)``.

    Raises
    ------
    DataError
        When a side would have fewer than 2 rows, or fewer than 2 groups are given.
    """
    n = int(n)
    if reps < 1:
        raise DataError(f"reps must be >= 1, got {reps}")
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    if groups is None:
        n_test = n_test_rows(n, test_fraction)
        if n_test < 2 or n - n_test < 2:
            raise DataError(
                f"cannot split {n} images with test_fraction={test_fraction}: "
                f"{n - n_test} train / {n_test} test, need at least 2 on each side"
            )
        out = []
        for _ in range(reps):
            perm = rng.permutation(n)
            out.append((np.sort(perm[n_test:]), np.sort(perm[:n_test])))
        return out

    g = np.asarray(groups)
    if g.shape != (n,):
        raise DataError(f"groups must have shape ({n},), got {g.shape}")
    uniq, inverse = np.unique(g, return_inverse=True)
    G = uniq.size
    if G < 2:
        raise DataError(f"group-disjoint splits need at least 2 groups, got {G}")
    n_test_groups = min(max(n_test_rows(G, test_fraction), 1), G - 1)
    out = []
    for r in range(reps):
        test_groups = rng.permutation(G)[:n_test_groups]
        is_test = np.isin(inverse, test_groups)
        test_idx = np.flatnonzero(is_test)
        train_idx = np.flatnonzero(~is_test)
        if test_idx.size < 2 or train_idx.size < 2:
            raise DataError(
                f"group split {r} has {train_idx.size} train / {test_idx.size} test images; "
                "need at least 2 on each side (too few groups or very unequal groups)"
            )
        out.append((train_idx, test_idx))
    return out


def group_split(
    groups: ArrayLike,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Train / validation / test indices with every group on one side only.

    The groups (e.g. source slides) are shuffled with ``seed``; in that order, each split
    with a share above zero first receives one group (so none is empty), then every next
    group goes to the split furthest below its target number of *items*
    (``fractions * n``). Different seeds thus give different splits, whatever the group
    sizes; the item shares come close to ``fractions`` when there are many groups, and can
    be far from them with a few unequal groups (a group is never cut).

    Parameters
    ----------
    groups : array_like of shape (n,)
        Group label of every item.
    fractions : (float, float, float)
        Target shares of train, validation and test; each >= 0, summing to 1.
    seed : int
        Seed of the group shuffle (``numpy.random.default_rng(seed)``).

    Returns
    -------
    train, val, test : ndarray of int
        Sorted indices, disjoint, together covering ``range(n)``.

    Raises
    ------
    DataError
        Empty or non-1-D ``groups``, invalid ``fractions``, or fewer groups than splits
        with a share above zero.
    """
    g = np.asarray(groups)
    if g.ndim != 1 or g.size == 0:
        raise DataError("group_split needs a non-empty 1-D array of groups.")
    f = np.asarray(fractions, dtype=np.float64)
    if (
        f.shape != (3,)
        or not np.isfinite(f).all()
        or (f < 0).any()
        or not math.isclose(f.sum(), 1.0, abs_tol=1e-9)
    ):
        raise DataError(
            f"fractions must be three shares >= 0 summing to 1 (train, val, test), got {fractions}."
        )
    names, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    n_splits = int((f > 0).sum())
    if len(names) < n_splits:
        raise DataError(
            f"Only {len(names)} groups for {n_splits} non-empty splits; splits by group need "
            "at least one group per split."
        )
    order = np.random.default_rng(seed).permutation(len(names))
    side = np.empty(len(names), dtype=np.intp)
    filled = np.zeros(3)
    target = f * counts.sum()
    for k in order:
        empty = (filled == 0) & (f > 0)
        if empty.any():
            j = int(np.flatnonzero(empty)[0])
        else:
            need = np.where(f > 0, target - filled, -np.inf)
            j = int(np.argmax(need))
        side[k] = j
        filled[j] += counts[k]
    item_side = side[inverse]
    return tuple(np.flatnonzero(item_side == j) for j in range(3))  # type: ignore[return-value]


__all__ = ["Split", "group_split", "n_test_rows", "repeated_splits"]
