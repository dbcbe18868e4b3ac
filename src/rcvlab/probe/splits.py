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


__all__ = ["Split", "n_test_rows", "repeated_splits"]
