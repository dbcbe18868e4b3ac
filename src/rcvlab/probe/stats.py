"""Scores of a probe: held-out R², its normalised form, and intervals over repeated splits."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _st

from rcvlab.errors import DataError
from rcvlab.probe.result import LayerScore

NAN = float("nan")


def r2_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` on held-out data.

    ``SS_tot`` is taken around the mean of ``y_true`` itself, as in
    :func:`sklearn.metrics.r2_score`; the value is negative when the predictions are worse
    than predicting that mean, and unbounded below.

    Parameters
    ----------
    y_true, y_pred : array_like of shape (n,)

    Returns
    -------
    float
        The R². When ``y_true`` is constant (``SS_tot == 0``) R² is undefined: NaN if the
        predictions are also exact, else ``-inf`` (scikit-learn's ``force_finite=False``).
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.size} values, y_pred {p.size}")
    if t.size == 0:
        raise DataError("r2_score of an empty sample")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0:
        return NAN if ss_res == 0 else -math.inf
    return 1.0 - ss_res / ss_tot


def normalised_r2(r2: ArrayLike) -> np.ndarray | float:
    """The papers' plotting score ``exp(R² - 1)``.

    It maps R² ∈ (-inf, 1] to (0, 1]; ``1/e ≈ 0.37`` corresponds to R² = 0 (as good as
    predicting the mean).

    Parameters
    ----------
    r2 : float or array_like

    Returns
    -------
    float or ndarray
        Same shape as the input.
    """
    out = np.exp(np.asarray(r2, dtype=np.float64) - 1.0)
    return float(out) if out.ndim == 0 else out


def mean_ci95(
    values: ArrayLike, n_train: int | None = None, n_test: int | None = None
) -> tuple[float, float]:
    """Student-t 95 % interval of the mean of ``values`` (one value per repetition).

    Without ``n_train``/``n_test`` the variance of the mean is the textbook ``s² / J``
    (``J`` repetitions, ``s²`` the sample variance, ``ddof=1``). Repeated random
    train/test splits of the same images overlap, so their scores are positively
    correlated and ``s² / J`` is too small; with ``n_train`` and ``n_test`` the corrected
    resampled variance of Nadeau & Bengio (2003, *Machine Learning* 52:239)
    ``(1/J + n_test/n_train) * s²`` is used instead. Either way the half-width is
    ``t_{0.975, J-1} * sqrt(variance)``.

    Parameters
    ----------
    values : array_like of shape (J,)
    n_train, n_test : int, optional
        Training and test set sizes of every repetition (both or neither).

    Returns
    -------
    (lo, hi) : tuple of float
        ``(nan, nan)`` when the interval cannot be estimated: fewer than two values, or a
        non-finite value among them (a single repetition says nothing about the spread; no
        interval is better than a zero-width one). ``(m, m)`` when all values are equal.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    factor = _variance_factor(v.size, n_train, n_test)
    if v.size < 2 or not np.all(np.isfinite(v)):
        return (NAN, NAN)
    m = float(v.mean())
    var = factor * float(v.var(ddof=1))
    if var == 0:
        return (m, m)
    half = float(_st.t.ppf(0.975, v.size - 1)) * math.sqrt(var)
    return (m - half, m + half)


def pooled_ci95(
    groups: Sequence[ArrayLike],
    n_train: Sequence[int] | None = None,
    n_test: Sequence[int] | None = None,
) -> tuple[float, float]:
    """95 % interval of the mean over classes of per-class mean scores.

    Each class ``k`` contributes ``var_k = c_k s_k² / K²`` to the variance of the average
    of the ``K`` class means (classes are disjoint image sets, hence independent), with
    ``c_k = 1/J_k`` or the Nadeau–Bengio ``1/J_k + n_test_k/n_train_k`` as in
    :func:`mean_ci95`. The Student-t quantile uses Welch–Satterthwaite degrees of freedom
    ``(sum var_k)² / sum(var_k² / (J_k - 1))``. With one class this is :func:`mean_ci95`.

    Parameters
    ----------
    groups : sequence of array_like
        Per-class repetition scores.
    n_train, n_test : sequence of int, optional
        Per-class split sizes (both or neither).

    Returns
    -------
    (lo, hi) : tuple of float
        Same NaN conventions as :func:`mean_ci95` (any class with fewer than two values or a
        non-finite value gives ``(nan, nan)``).
    """
    vs = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    K = len(vs)
    if K == 0:
        return (NAN, NAN)
    if (n_train is None) != (n_test is None):
        raise DataError("give both n_train and n_test, or neither")
    if n_train is not None and n_test is not None and (len(n_train) != K or len(n_test) != K):
        raise DataError(f"n_train/n_test need one size per class ({K})")
    factors = [
        _variance_factor(
            v.size,
            None if n_train is None else n_train[k],
            None if n_test is None else n_test[k],
        )
        for k, v in enumerate(vs)
    ]
    if K == 1:
        return mean_ci95(
            vs[0], None if n_train is None else n_train[0], None if n_test is None else n_test[0]
        )
    if any(v.size < 2 or not np.all(np.isfinite(v)) for v in vs):
        return (NAN, NAN)
    m = float(np.mean([v.mean() for v in vs]))
    parts = np.array([f * v.var(ddof=1) / K**2 for f, v in zip(factors, vs, strict=True)])
    var = float(parts.sum())
    if var == 0:
        return (m, m)
    df = var**2 / float(np.sum(parts**2 / np.array([v.size - 1 for v in vs])))
    half = float(_st.t.ppf(0.975, df)) * math.sqrt(var)
    return (m - half, m + half)


def summarise(
    layer: str,
    dim: int,
    r2_values: ArrayLike,
    *,
    n_train: int | Mapping[str, int] | None = None,
    n_test: int | Mapping[str, int] | None = None,
    r2_by_class: Mapping[str, ArrayLike] | None = None,
    n_constant: int = 0,
    n_floored: int = 0,
    disjoint: bool = False,
) -> LayerScore:
    """Summarise one layer's repetitions into a :class:`LayerScore`.

    Parameters
    ----------
    layer : str
    dim : int
        Feature dimension of the layer.
    r2_values : array_like
        Test R² of every repetition (class-major when probing per class).
    n_train, n_test : int or mapping of class to int, optional
        Split sizes for the corrected interval (:func:`mean_ci95`); per class when
        ``r2_by_class`` has several classes.
    r2_by_class : mapping of str to array_like, optional
        Per-class repetitions; with two or more classes the interval is
        :func:`pooled_ci95` over the classes.
    n_constant : int
        Columns dropped as constant (maximum over repetitions).
    n_floored : int
        Columns whose scale the ``min_std`` guard raised (maximum over repetitions).
    disjoint : bool
        The values come from disjoint test sets (leave-one-class-out: one value per held-out
        class): the interval is the plain Student-t interval :func:`mean_ci95` over all
        values, without the Nadeau–Bengio correction (``n_train``/``n_test`` are not used
        for it) and without per-class pooling.

    Returns
    -------
    LayerScore
        ``r2_mean`` and ``r2_std`` (``ddof=1``; NaN with one value) over all values
        (``r2_median`` is derived from them), ``r2_norm_mean`` the mean of ``exp(R² - 1)``.
    """
    r2 = np.asarray(r2_values, dtype=np.float64).ravel()
    if r2.size == 0:
        raise DataError(f"no R² values for layer {layer!r}")
    by_class = {
        str(k): tuple(float(x) for x in np.ravel(v)) for k, v in (r2_by_class or {}).items()
    }
    if disjoint:
        ci = mean_ci95(r2)
    elif len(by_class) >= 2:
        names = list(by_class)
        ci = pooled_ci95(
            [by_class[c] for c in names],
            None if n_train is None else [_per_class(n_train, c) for c in names],
            None if n_test is None else [_per_class(n_test, c) for c in names],
        )
    else:
        only = next(iter(by_class), None)
        ci = mean_ci95(
            r2,
            None if n_train is None else _per_class(n_train, only),
            None if n_test is None else _per_class(n_test, only),
        )
    with np.errstate(invalid="ignore"):
        mean = float(r2.mean())
        std = float(r2.std(ddof=1)) if r2.size > 1 else NAN
        norm_mean = float(np.mean(np.exp(r2 - 1.0)))
    return LayerScore(
        layer=str(layer),
        dim=int(dim),
        r2=tuple(float(x) for x in r2),
        r2_mean=mean,
        r2_std=std,
        r2_ci95=(float(ci[0]), float(ci[1])),
        r2_norm_mean=norm_mean,
        r2_by_class=by_class,
        n_constant=int(n_constant),
        n_floored=int(n_floored),
    )


def _per_class(n: int | Mapping[str, int], cls: str | None) -> int:
    if isinstance(n, Mapping):
        if cls is None and len(n) == 1:
            return int(next(iter(n.values())))
        if cls is None or cls not in n:
            raise DataError(f"no split size for class {cls!r}")
        return int(n[cls])
    return int(n)


def _variance_factor(J: int, n_train: int | None, n_test: int | None) -> float:
    if (n_train is None) != (n_test is None):
        raise DataError("give both n_train and n_test, or neither")
    if J == 0:
        return NAN
    if n_train is None or n_test is None:
        return 1.0 / J
    if n_train <= 0 or n_test <= 0:
        raise DataError(f"split sizes must be positive, got n_train={n_train}, n_test={n_test}")
    return 1.0 / J + n_test / n_train


__all__ = ["mean_ci95", "normalised_r2", "pooled_ci95", "r2_score", "summarise"]
