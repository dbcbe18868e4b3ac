"""Regression Concept Vectors: linear probes of one layer's features.

Every fit standardises the features on its training split (mean 0, standard deviation 1 with
``ddof=0``, like scikit-learn's ``StandardScaler``), drops columns that are constant on that
split, and regresses the measure on the remaining columns with an intercept:

``ols``
    Least squares; the minimum-norm solution when the problem is under-determined
    (``d >= n``), as statsmodels ``OLS(y, add_constant(X)).fit(method="pinv")`` gives.
``ridge``
    scikit-learn's ``Ridge`` objective ``||y - Xw - b||² + alpha ||w||²``; without ``alpha``,
    alpha is chosen among :data:`RIDGE_ALPHAS` by efficient leave-one-out, as ``RidgeCV``.
``lasso``
    scikit-learn's ``Lasso`` objective ``(1 / (2 n)) ||y - Xw - b||² + alpha ||w||_1``.

The standardisation guard ``min_std`` (off by default, as in the papers): a column that
barely varies on the training split is divided by its tiny standard deviation, so a test
image where it moves a little lands far outside the training range and one split can get a
hugely negative R². With ``min_std = m`` every kept column is divided by
``max(std_j, m * median_k std_k)`` instead, the median taken over the kept (non-constant)
columns of that training split; :func:`standardisation` computes it, and ``n_floored`` counts
the columns whose scale the floor raised. Rescaling a column does not change a full-rank
least-squares fit (``ols`` with more training images than kept columns), so there the guard
changes nothing; it acts on the minimum-norm ``ols`` fit (``d >= n``), on ``ridge`` and on
``lasso``, whose solutions depend on the scale of each column.

All three work in float64 whatever the input dtype. For ``ols`` and ``ridge`` one
factorisation of the standardised training matrix (:class:`Design`: a QR for OLS, one
symmetric eigendecomposition for ridge, :mod:`rcvlab.probe.kernels`) serves every target of a
split (the measure and its shuffled copy) and every candidate alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import lapack
from sklearn.linear_model import Lasso

from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.probe.kernels import RidgeEigen, choose_alpha

REGRESSORS: tuple[str, ...] = ("ols", "ridge", "lasso")
"""Names accepted by ``regressor``."""

RIDGE_ALPHAS: NDArray[np.float64] = np.logspace(-2, 6, 17)
"""Candidate alphas of ``ridge`` when none is given: 0.01 ... 10000, two per decade."""

CONSTANT_RTOL = 1e-6
"""A training column is constant when its std <= ``CONSTANT_RTOL`` * max|column| (or is 0)."""

LASSO_MAX_ITER = 10_000
LASSO_TOL = 1e-4

# Reciprocal condition (LAPACK trcon, 1-norm estimate) above which OLS skips the SVD: 4+
# orders of magnitude above the pinv cutoff max(n, d) * eps, which covers the 1-norm versus
# 2-norm factor (<= n) and the estimator's slack.
_FAST_RCOND = 1e-8

FloatArray = NDArray[np.float64]


def check_min_std(min_std: float | None) -> float | None:
    """Validate the standardisation guard; return it normalised (None when off).

    Parameters
    ----------
    min_std : float or None
        Floor on each column's training standard deviation, relative to the median training
        standard deviation of the layer's non-constant columns; ``None`` or 0 = off.

    Returns
    -------
    float or None

    Raises
    ------
    RcvlabError
        For a value that is not a number in [0, 1].
    """
    if min_std is None:
        return None
    if isinstance(min_std, bool):
        raise RcvlabError(f"min_std must be a number in [0, 1], got {min_std!r}")
    try:
        m = float(min_std)
    except (TypeError, ValueError):
        raise RcvlabError(f"min_std must be a number in [0, 1], got {min_std!r}") from None
    if not 0 <= m <= 1:
        raise RcvlabError(
            f"min_std must be a number in [0, 1] (a fraction of the median std), got "
            f"{min_std!r}; for example min_std=0.01, or 0 for no floor"
        )
    return m if m > 0 else None


def check_regressor(regressor: str, alpha: float | None) -> tuple[str, float | None]:
    """Validate a regressor name and its alpha; return them normalised.

    Parameters
    ----------
    regressor : str
        One of :data:`REGRESSORS` (case-insensitive).
    alpha : float or None
        Regularisation strength: not used by ``ols``; optional for ``ridge`` (None = choose
        by leave-one-out); required and > 0 for ``lasso``.

    Returns
    -------
    (str, float or None)

    Raises
    ------
    UnknownNameError
        For an unknown regressor.
    RcvlabError
        For an alpha that the regressor cannot use.
    """
    name = str(regressor).strip().lower()
    if name not in REGRESSORS:
        raise UnknownNameError(
            f"unknown regressor {regressor!r}; choose one of {', '.join(REGRESSORS)}."
            + did_you_mean(name, REGRESSORS)
        )
    if alpha is None:
        if name == "lasso":
            raise RcvlabError("regressor 'lasso' needs alpha > 0 (for example alpha=0.001)")
        return name, None
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise RcvlabError(f"alpha must be a number, got {alpha!r}") from None
    if not np.isfinite(a) or a < 0:
        raise RcvlabError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if name == "ols":
        if a != 0:
            raise RcvlabError(
                f"regressor 'ols' takes no alpha (got {alpha!r}); use regressor='ridge' "
                "or 'lasso' for a penalised fit"
            )
        return name, None
    if a == 0:
        raise RcvlabError(f"alpha=0 makes {name!r} plain least squares: use regressor='ols'")
    return name, a


@dataclass(frozen=True, eq=False)
class RCV:
    """A fitted Regression Concept Vector.

    Attributes
    ----------
    coef : ndarray of shape (d,)
        Coefficients in the standardised feature space; 0 for dropped (constant) columns.
    intercept : float
        Intercept (the training mean of ``y`` for ``ols`` and ``ridge``).
    mean_, scale_ : ndarray of shape (d,)
        Training mean and standard deviation (``ddof=0``) of every column, the latter raised
        to the ``min_std`` floor where the guard applied; ``scale_`` is 1 for dropped columns.
    keep : ndarray of bool, shape (d,)
        Columns used (not constant on the training split).
    regressor : str
        ``"ols"``, ``"ridge"`` or ``"lasso"``.
    alpha : float or None
        Penalty used (the chosen one for ``ridge`` without alpha); None for ``ols``.
    n_floored : int
        Kept columns whose scale the ``min_std`` floor raised (0 without the guard).
    """

    coef: FloatArray
    intercept: float
    mean_: FloatArray
    scale_: FloatArray
    keep: NDArray[np.bool_]
    regressor: str
    alpha: float | None = None
    n_floored: int = 0

    @property
    def dim(self) -> int:
        """Feature dimension ``d`` the RCV was fitted on."""
        return int(self.coef.shape[0])

    @property
    def n_constant(self) -> int:
        """Number of columns dropped as constant on the training split."""
        return int(np.count_nonzero(~self.keep))

    @property
    def direction(self) -> FloatArray:
        """Unit vector along ``coef`` (all zeros when ``coef`` is 0: no direction)."""
        norm = float(np.linalg.norm(self.coef))
        return self.coef / norm if norm > 0 else np.zeros_like(self.coef)

    def predict(self, X: ArrayLike) -> FloatArray:
        """Predict the measure for features ``X`` of shape (m, d).

        Parameters
        ----------
        X : array_like of shape (m, d)
            Raw (unstandardised) features; the training standardisation is applied.

        Returns
        -------
        ndarray of shape (m,)
        """
        X = _as_2d_float(X, "X")
        if X.shape[1] != self.dim:
            raise DataError(f"X has {X.shape[1]} columns, the RCV was fitted on {self.dim}")
        k = self.keep
        return ((X[:, k] - self.mean_[k]) / self.scale_[k]) @ self.coef[k] + self.intercept


class Design:
    """Standardised training matrix of one split, and the decompositions fits need.

    One ``Design`` serves every fit on the same training rows: several targets at once
    (the measure and its shuffled copies), every ridge alpha, and the leave-one-out choice of
    alpha. Let ``Z`` be the standardised, train-centred ``(n, k)`` matrix of kept columns.

    * OLS is the minimum-norm least-squares solution of ``A beta = y`` with
      ``A = [1, Z]``, i.e. ``pinv(A) @ y`` as statsmodels' ``pinv`` fit computes it. As the
      columns of ``Z`` are orthogonal to the constant column this equals
      ``intercept = ybar``, ``coef = pinv(Z) @ (y - ybar)``. It is computed from one
      Householder QR of ``A`` (of ``A^T`` when ``k + 1 >= n``) whose square triangular
      factor ``R`` has the singular values of ``A``. When ``R`` is well conditioned (LAPACK
      ``trcon`` reciprocal condition > 1e-8, four orders of magnitude above the cutoff
      below) no singular value would be cut and the solution is a triangular solve
      (``Q R^{-T} y`` or ``R^{-1} Q^T y``); otherwise ``R`` is decomposed by SVD and singular
      values ``<= max(n, k) * eps * s_max`` (numpy ``pinv``'s cutoff) are dropped. Either
      way the cost is O(n² k) for ``k > n``, and the SVD is only paid for ill-conditioned
      layers.
    * Ridge uses one symmetric eigendecomposition (:class:`rcvlab.probe.kernels.RidgeEigen`):
      of the Gram matrix ``Z Z^T`` on the complement of the constant vector when ``k >= n``,
      of ``Z^T Z`` otherwise. ``coef = (Z^T Z + alpha I)^{-1} Z^T (y - ybar)``,
      ``intercept = ybar``, for every alpha and target from the same decomposition.

    Parameters
    ----------
    X_train : array_like of shape (n, d)
        Raw training features (finite).
    min_std : float, optional
        The standardisation guard (see the module docstring); None or 0 = off.
    """

    def __init__(self, X_train: ArrayLike, min_std: float | None = None) -> None:
        X = _as_2d_float(X_train, "X_train")
        n, d = X.shape
        if n < 2:
            raise DataError(f"need at least 2 training rows, got {n}")
        Z, mean, scale, keep, n_floored = _standardise_train(X, check_min_std(min_std))
        self.n_floored: int = n_floored
        self.n, self.d = n, d
        self.mean_: FloatArray = mean
        self.scale_: FloatArray = scale
        self.keep: NDArray[np.bool_] = keep
        self.k = int(np.count_nonzero(keep))
        self.Z: FloatArray = Z
        self._eigen: RidgeEigen | None = None

    @property
    def n_constant(self) -> int:
        """Number of columns dropped as constant."""
        return self.d - self.k

    @property
    def eigen(self) -> RidgeEigen:
        """The eigendecomposition every ridge fit of this split shares (computed once)."""
        if self._eigen is None:
            self._eigen = RidgeEigen(self.Z)
        return self._eigen

    def _centre(self, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(self.n, -1) if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != self.n:
            raise DataError(f"y has shape {np.shape(y)}, X_train has {self.n} rows")
        ybar = Y.mean(axis=0)
        return Y - ybar, ybar

    # -- fits ---------------------------------------------------------------------------------

    def ols(self, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Minimum-norm least squares with intercept for each column of ``y``.

        Parameters
        ----------
        y : array_like of shape (n,) or (n, m)

        Returns
        -------
        coef : ndarray of shape (k, m)
            Coefficients on the kept standardised columns.
        intercept : ndarray of shape (m,)
        """
        Yc, ybar = self._centre(y)
        n, k = self.n, self.k
        if k == 0:
            return np.zeros((0, Yc.shape[1])), ybar
        A = np.empty((n, k + 1))
        A[:, 0] = 1.0
        A[:, 1:] = self.Z
        wide = k + 1 >= n
        # Wide: A^T = Q R, so A = R^T Q^T; tall: A = Q R. R is square either way.
        (qr, tau), R = scipy.linalg.qr(A.T if wide else A, mode="raw", check_finite=False)
        rcond, info = lapack.dtrcon(R)
        if info == 0 and rcond > _FAST_RCOND:
            if wide:
                t = scipy.linalg.solve_triangular(R, Yc, trans="T", check_finite=False)
                beta = _apply_q(qr, tau, t, k + 1)
            else:
                qty = _apply_q(qr, tau, Yc, n, trans="T")[: k + 1]
                beta = scipy.linalg.solve_triangular(R, qty, check_finite=False)
        else:
            Ur, s, Vrt = _svd(R.T if wide else R)
            keep = s > max(n, k) * np.finfo(float).eps * s[0]
            if wide:
                c = Vrt[keep].T @ ((Ur[:, keep].T @ Yc) / s[keep, None])
                beta = _apply_q(qr, tau, c, k + 1)
            else:
                qty = _apply_q(qr, tau, Yc, n, trans="T")[: k + 1]
                beta = Vrt[keep].T @ ((Ur[:, keep].T @ qty) / s[keep, None])
        return beta[1:], beta[0] + ybar

    def ridge(self, y: ArrayLike, alpha: float) -> tuple[FloatArray, FloatArray]:
        """Ridge regression (scikit-learn's ``Ridge`` objective) for each column of ``y``.

        Parameters
        ----------
        y : array_like of shape (n,) or (n, m)
        alpha : float
            Penalty (> 0).

        Returns
        -------
        coef : ndarray of shape (k, m)
        intercept : ndarray of shape (m,)
        """
        coef, intercept, _ = self.ridge_fit(y, alpha)
        return coef, intercept

    def ridge_fit(
        self, y: ArrayLike, alpha: float | None = None, alphas: ArrayLike = RIDGE_ALPHAS
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Ridge for each column of ``y``, with ``alpha`` or the leave-one-out choice.

        Parameters
        ----------
        y : array_like of shape (n,) or (n, m)
        alpha : float, optional
            Penalty (> 0) for every column; None chooses it per column among ``alphas`` by
            leave-one-out (:meth:`ridge_loo_alpha`).
        alphas : array_like
            Candidates of the leave-one-out choice.

        Returns
        -------
        coef : ndarray of shape (k, m)
        intercept : ndarray of shape (m,)
        alphas : ndarray of shape (m,)
            The alpha of every column.
        """
        Yc, ybar = self._centre(y)
        if alpha is None:
            coef, chosen = self.eigen.fit(Yc, _check_alphas(alphas), loo=True)
        else:
            coef, chosen = self.eigen.fit(Yc, [float(alpha)], loo=False)
        return coef, ybar, chosen

    def ridge_loo_alpha(self, y: ArrayLike, alphas: ArrayLike = RIDGE_ALPHAS) -> FloatArray:
        """Choose ridge's alpha per column of ``y`` by exact leave-one-out squared error.

        With the hat matrix ``H = 11^T/n + Z (Z^T Z + alpha I)^{-1} Z^T`` (unpenalised
        intercept), the leave-one-out residual is ``(y_i - yhat_i) / (1 - H_ii)``; the alpha
        with the lowest mean squared residual wins, the first one on ties, as scikit-learn's
        ``RidgeCV(alphas, fit_intercept=True)`` (its default efficient LOO) does.

        Parameters
        ----------
        y : array_like of shape (n,) or (n, m)
        alphas : array_like
            Candidate penalties (> 0), tried in order.

        Returns
        -------
        ndarray of shape (m,)
            The chosen alpha of every column.
        """
        Yc, _ = self._centre(y)
        a = _check_alphas(alphas)
        return choose_alpha(self.eigen.loo_errors(Yc, a), a)

    def standardise(self, X: ArrayLike) -> FloatArray:
        """Apply the training standardisation to ``X`` and keep the non-constant columns."""
        X = _as_2d_float(X, "X")
        if X.shape[1] != self.d:
            raise DataError(f"X has {X.shape[1]} columns, the training split has {self.d}")
        k = self.keep
        if self.k == self.d:  # no column dropped: no copy of X by the mask
            return (X - self.mean_) / self.scale_
        return (X[:, k] - self.mean_[k]) / self.scale_[k]


def fit_rcv(
    X_train: ArrayLike,
    y_train: ArrayLike,
    regressor: str = "ols",
    alpha: float | None = None,
    min_std: float | None = None,
) -> RCV:
    """Fit a Regression Concept Vector on one training split.

    Parameters
    ----------
    X_train : array_like of shape (n, d)
        Raw features of the training images (any float dtype; computed in float64).
    y_train : array_like of shape (n,)
        The measure.
    regressor : {"ols", "ridge", "lasso"}
        ``ols``: least squares with intercept, minimum-norm when ``d >= n`` (equals
        statsmodels ``OLS(y, add_constant(Z)).fit(method="pinv")`` on the standardised
        features ``Z``). ``ridge``: scikit-learn ``Ridge(alpha)``; alpha None chooses among
        :data:`RIDGE_ALPHAS` by leave-one-out like ``RidgeCV``. ``lasso``: scikit-learn
        ``Lasso(alpha, max_iter=10000, tol=1e-4)``.
    alpha : float, optional
        Penalty. For ``lasso`` it is required and follows scikit-learn's convention
        ``(1/(2n)) ||y - Zw - b||² + alpha ||w||_1``: paper 001 writes the objective as
        ``sum (y - yhat)² + alpha sum |v_i|`` without the ``1/(2n)``, but the authors'
        Python code used scikit-learn, so its alphas (e.g. 0.001) mean this convention.
    min_std : float, optional
        Standardisation guard: every kept column is divided by
        ``max(std_j, min_std * median std)`` (median over the non-constant training
        columns) instead of ``std_j``. None or 0 (the default) is the papers' plain
        standardisation.

    Returns
    -------
    RCV

    Raises
    ------
    UnknownNameError
        Unknown ``regressor``.
    RcvlabError
        An ``alpha`` the regressor cannot use (``alpha=0`` for ridge/lasso: use ``ols``), or
        a ``min_std`` outside [0, 1].
    DataError
        NaN or infinite values, mismatched shapes, fewer than 2 rows.
    """
    name, a = check_regressor(regressor, alpha)
    floor = check_min_std(min_std)
    X = _as_2d_float(X_train, "X_train")
    y = np.asarray(y_train, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(f"y_train must have shape ({X.shape[0]},), got {y.shape}")
    _check_finite(X, "X_train")
    _check_finite(y, "y_train")
    if name == "lasso" and a is not None:  # check_regressor guarantees alpha for lasso
        Z, mean, scale, keep, n_floored = _standardise_train(X, floor)
        coef, intercept = _lasso(Z, y, a)
        return make_rcv(coef, intercept, mean, scale, keep, name, a, n_floored=n_floored)
    design = Design(X, floor)
    if name == "ols":
        c, b = design.ols(y)
    else:
        c, b, chosen = design.ridge_fit(y, a)
        a = float(chosen[0])
    return make_rcv(
        c[:, 0],
        float(b[0]),
        design.mean_,
        design.scale_,
        design.keep,
        name,
        a,
        n_floored=design.n_floored,
    )


class FitPredictions(NamedTuple):
    """What :func:`fit_predictions` returns for one training split.

    Attributes
    ----------
    predictions : ndarray of shape (t, m)
        Predictions of every target on the test rows.
    n_constant : int
        Columns dropped as constant on the training split.
    n_floored : int
        Kept columns whose scale the ``min_std`` floor raised.
    alphas : ndarray of shape (m,) or None
        Alphas chosen by leave-one-out (``ridge`` without alpha), else None.
    """

    predictions: FloatArray
    n_constant: int
    n_floored: int
    alphas: FloatArray | None


def fit_predictions(
    X_train: FloatArray,
    Y_train: FloatArray,
    X_test: FloatArray,
    regressor: str,
    alpha: float | None,
    min_std: float | None = None,
) -> FitPredictions:
    """Fit one probe per column of ``Y_train`` on a shared decomposition and predict ``X_test``.

    This is :func:`fit_rcv` for several targets at once (used by
    :func:`rcvlab.probe.profile.probe_layers`): the training standardisation is computed
    once, and for ``ols`` and ``ridge`` one factorisation of the standardised training
    matrix (:class:`Design`) serves every column and every candidate alpha.

    Parameters
    ----------
    X_train : ndarray of shape (n, d), float64, finite
    Y_train : ndarray of shape (n, m)
    X_test : ndarray of shape (t, d), float64, finite
    regressor, alpha
        As validated by :func:`check_regressor`.
    min_std : float, optional
        The standardisation guard of :func:`fit_rcv` (None or 0 = off).

    Returns
    -------
    FitPredictions
        ``(predictions, n_constant, n_floored, alphas)``.
    """
    floor = check_min_std(min_std)
    if regressor == "lasso":
        if alpha is None:
            raise RcvlabError("regressor 'lasso' needs alpha > 0 (for example alpha=0.001)")
        Z, mean, scale, keep, n_floored = _standardise_train(X_train, floor)
        Zte = (X_test[:, keep] - mean[keep]) / scale[keep]
        preds = np.empty((X_test.shape[0], Y_train.shape[1]))
        for j in range(Y_train.shape[1]):
            coef, b = _lasso(Z, Y_train[:, j], alpha)
            preds[:, j] = Zte @ coef + b
        return FitPredictions(preds, int(np.count_nonzero(~keep)), n_floored, None)
    design = Design(X_train, floor)
    chosen: FloatArray | None = None
    if regressor == "ols":
        C, B = design.ols(Y_train)
    else:
        # One eigendecomposition for every target and every candidate alpha.
        C, B, ridge_alphas = design.ridge_fit(Y_train, alpha)
        chosen = ridge_alphas if alpha is None else None
    preds = design.standardise(X_test) @ C + B
    return FitPredictions(preds, design.n_constant, design.n_floored, chosen)


def fit_predict(
    X_train: FloatArray,
    Y_train: FloatArray,
    X_test: FloatArray,
    regressor: str,
    alpha: float | None,
    min_std: float | None = None,
) -> tuple[FloatArray, int, FloatArray | None]:
    """:func:`fit_predictions` without the guard's count: ``(predictions, n_constant, alphas)``.

    Parameters
    ----------
    X_train, Y_train, X_test, regressor, alpha, min_std
        As for :func:`fit_predictions`.

    Returns
    -------
    predictions : ndarray of shape (t, m)
    n_constant : int
        Columns dropped as constant.
    alphas : ndarray of shape (m,) or None
        Alphas chosen by leave-one-out (``ridge`` without alpha), else None.
    """
    out = fit_predictions(X_train, Y_train, X_test, regressor, alpha, min_std)
    return out.predictions, out.n_constant, out.alphas


def _check_alphas(alphas: ArrayLike) -> FloatArray:
    a = np.asarray(alphas, dtype=np.float64).ravel()
    if a.size == 0 or np.any(~np.isfinite(a)) or np.any(a <= 0):
        raise RcvlabError("ridge alphas must be finite numbers > 0")
    return a


def _lasso(Z: FloatArray, y: FloatArray, alpha: float) -> tuple[FloatArray, float]:
    """scikit-learn Lasso on standardised columns; (coef on those columns, intercept)."""
    if Z.shape[1] == 0:
        return np.zeros(0), float(y.mean())
    model = Lasso(alpha=alpha, max_iter=LASSO_MAX_ITER, tol=LASSO_TOL)
    model.fit(Z, y)
    return np.asarray(model.coef_, dtype=np.float64), float(model.intercept_)


def standardisation(
    X_train: ArrayLike, min_std: float | None = None
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], int]:
    """The training standardisation every fit applies: ``(mean, scale, keep, n_floored)``.

    Parameters
    ----------
    X_train : array_like of shape (n, d)
        Raw training features.
    min_std : float, optional
        The guard: kept columns get ``scale_j = max(std_j, min_std * median std)``, the
        median over the kept columns; None or 0 = off (``scale_j = std_j``).

    Returns
    -------
    mean : ndarray of shape (d,)
        Column means.
    scale : ndarray of shape (d,)
        Divisors of the kept columns (``ddof=0`` std, floored); 1 for dropped columns.
    keep : ndarray of bool, shape (d,)
        Columns that are not constant (std > 0 and > ``CONSTANT_RTOL`` * max|column|).
    n_floored : int
        Kept columns whose scale the floor raised.
    """
    X = _as_2d_float(X_train, "X_train")
    _, mean, scale, keep, n_floored = _standardise_train(X, check_min_std(min_std))
    return mean, scale, keep, n_floored


def _standardise_train(
    X: FloatArray, min_std: float | None = None
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_], int]:
    """Standardise training features; return ``(Z, mean, scale, keep, n_floored)``.

    ``Z`` (C-contiguous, a new array) holds the kept columns, centred and scaled to unit
    standard deviation (``ddof=0``), or by the ``min_std`` floor where it is larger;
    ``scale`` is 1 for dropped columns.
    """
    n, d = X.shape
    mean = X.mean(axis=0)
    Z = X - mean
    std = np.sqrt(np.einsum("ij,ij->j", Z, Z) / n)
    # Relative threshold: a random-weights network's deep features can vary by 1e-9 in
    # absolute terms and still carry the measure (METHOD.md §8, "Trap").
    # max|x_j| <= |mean_j| + sqrt(n) std_j, so a column above the threshold for that bound is
    # kept without its maximum; only the others (rare) need max|x_j| itself.
    keep = (std > 0) & (std > CONSTANT_RTOL * (np.abs(mean) + math.sqrt(n) * std))
    unsure = np.flatnonzero(~keep & (std > 0))
    if unsure.size:
        Zu = Z[:, unsure]
        amax = np.maximum(Zu.max(axis=0) + mean[unsure], -(Zu.min(axis=0) + mean[unsure]))
        keep[unsure] = std[unsure] > CONSTANT_RTOL * amax
    scale = np.where(keep, std, 1.0)
    n_floored = 0
    if min_std and keep.any():
        floor = min_std * float(np.median(std[keep]))
        low = keep & (std < floor)
        n_floored = int(np.count_nonzero(low))
        scale[low] = floor
    k = int(np.count_nonzero(keep))
    if k == d:
        Z /= scale
    else:
        Z = Z[:, keep]
        Z /= scale[keep]
    # A second centring pass: a column whose mean is large against its spread keeps a
    # rounding residue after the first, which would leave Z with a spurious singular value
    # along the constant direction. Folded into the mean so that test rows match.
    resid = Z.mean(axis=0)
    Z -= resid
    mean[keep] += resid * scale[keep]
    return Z, mean, scale, keep, n_floored


def make_rcv(
    coef_kept: FloatArray,
    intercept: float,
    mean: FloatArray,
    scale: FloatArray,
    keep: NDArray[np.bool_],
    regressor: str,
    alpha: float | None,
    *,
    n_floored: int = 0,
) -> RCV:
    """An :class:`RCV` from coefficients on the kept columns (or on all ``d``); read-only.

    Parameters
    ----------
    coef_kept : ndarray of shape (k,) or (d,)
        Coefficients of the kept standardised columns (or of all ``d``, 0 where dropped).
    intercept : float
    mean, scale, keep : ndarray of shape (d,)
        The training standardisation (:func:`standardisation`).
    regressor : str
    alpha : float or None
    n_floored : int
        Columns whose scale the ``min_std`` floor raised.

    Returns
    -------
    RCV
    """
    if coef_kept.shape[0] == keep.shape[0]:
        coef = np.array(coef_kept, dtype=np.float64)
    else:
        coef = np.zeros(keep.shape[0])
        coef[keep] = coef_kept
    arrays: list[Any] = [coef, np.array(mean), np.array(scale), np.array(keep)]
    for arr in arrays:
        arr.setflags(write=False)
    return RCV(
        arrays[0],
        float(intercept),
        arrays[1],
        arrays[2],
        arrays[3],
        regressor,
        alpha,
        int(n_floored),
    )


def _apply_q(
    qr: FloatArray, tau: FloatArray, c: FloatArray, rows: int, trans: str = "N"
) -> FloatArray:
    """Multiply ``c`` by the Householder ``Q`` (``rows`` x ``rows``) of a raw QR."""
    m = c.shape[1]
    pad = np.zeros((rows, m), order="F")
    pad[: c.shape[0]] = c
    out, _, info = lapack.dormqr("L", trans, qr, tau, pad, lwork=max(1, 64 * m))
    if info != 0:  # pragma: no cover - LAPACK argument error
        raise RuntimeError(f"LAPACK dormqr failed (info={info})")
    return out


def _svd(A: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Thin SVD by LAPACK gesdd, falling back to gesvd when gesdd fails to converge.

    gesdd is called through numpy rather than ``scipy.linalg.svd`` because numpy releases
    the GIL during the call (scipy's wrapper holds it), which lets ``probe_layers``'s worker
    threads run SVDs in parallel.
    """
    try:
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
    except np.linalg.LinAlgError:
        U, s, Vt = scipy.linalg.svd(
            A, full_matrices=False, lapack_driver="gesvd", check_finite=False
        )
    return U, s, Vt


def _as_2d_float(X: ArrayLike, name: str) -> FloatArray:
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (images x features), got shape {A.shape}")
    return A


def _check_finite(A: FloatArray, name: str) -> None:
    bad = ~np.isfinite(A)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(
            f"{name} has NaN or infinite values in {rows.size} row(s) (first: {rows[:5].tolist()})"
        )


__all__ = [
    "CONSTANT_RTOL",
    "RCV",
    "REGRESSORS",
    "RIDGE_ALPHAS",
    "Design",
    "FitPredictions",
    "check_min_std",
    "check_regressor",
    "fit_predict",
    "fit_predictions",
    "fit_rcv",
    "make_rcv",
    "standardisation",
]
