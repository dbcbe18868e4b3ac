"""Ridge kernels near the arithmetic limit: one eigendecomposition per training split.

A probe fits many ridge models that share a design: every candidate alpha of the
leave-one-out choice and every target of a split (the measure and its shuffled copy). All of
them come from one symmetric eigendecomposition of the standardised, centred training matrix
``Z`` (``n`` rows, ``k`` kept columns):

* ``k >= n`` (wide layers): the Gram matrix ``Z Z^T`` restricted to the ``n - 1``
  dimensional complement of the constant vector (the unpenalised intercept; a Householder
  reflection maps it out exactly, so no eigenvector has to be recognised as "the intercept
  one"). With ``Z Z^T = U diag(lam) U^T`` there, the dual coefficients of every alpha are
  ``c = U diag(1 / (lam + alpha)) U^T y_c``, the leave-one-out residuals ``c_i / Ginv_ii``
  with ``Ginv_ii = sum_j U_ij² / (lam_j + alpha)`` (scikit-learn's ``RidgeCV`` formula for
  its ``eigen`` mode), and ``coef = Z^T c``: the ``k``-dimensional side is touched only by
  two matrix products.
* ``k < n`` (tall layers): the primal ``Z^T Z = V diag(lam) V^T`` and ``P = Z V``; the hat
  matrix is ``1/n + P diag(1 / (lam + alpha)) P^T``, the leave-one-out residuals
  ``(y_i - yhat_i) / (1 - h_ii)`` and ``coef = V diag(1 / (lam + alpha)) P^T y_c``. No
  division by ``lam`` anywhere: a rank-deficient ``Z`` (a zero eigenvalue) is harmless.

``lam`` are the squared singular values of ``Z``. The leave-one-out errors of all alphas and
all targets are computed at once; each target takes the alpha with the smallest mean squared
leave-one-out residual, the first one on ties, as ``RidgeCV(alphas)`` does per target.

:class:`RidgeEigen` is the CPU kernel (numpy / LAPACK ``syevd``), used by
:class:`rcvlab.probe.fit.Design` for every ridge fit. :func:`ridge_split_predictions_torch`
runs the same arithmetic batched over the repetitions of a probe, in float64 with ``torch``,
on any device (a GPU when there is one).

The Lasso path of the sparsity analysis (many alphas, one design) is solved exactly by the
homotopy algorithm (:func:`lasso_homotopy`), each solution held to scikit-learn's duality-gap
stopping rule (:func:`lasso_duality_gaps`) with coordinate descent as the fallback
(:func:`lasso_path_certified`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def _householder(n: int) -> tuple[FloatArray, float]:
    """``(w, beta)`` of the reflection ``H = I - beta w w^T`` mapping ``1/sqrt(n)`` to ``e_0``.

    ``H`` is symmetric and orthogonal, so ``H[:, 1:]`` is an orthonormal basis of the
    complement of the constant vector.
    """
    w = np.full(n, 1.0 / math.sqrt(n))
    w[0] -= 1.0
    return w, 2.0 / float(w @ w)


def choose_alpha(err: FloatArray, alphas: FloatArray) -> FloatArray:
    """Alpha of the smallest leave-one-out error per target, the first on ties.

    Parameters
    ----------
    err : ndarray of shape (p, m)
        Mean squared leave-one-out residual of each candidate (rows) and target (columns);
        NaN (a row with leverage 1) never wins.
    alphas : ndarray of shape (p,)

    Returns
    -------
    ndarray of shape (m,)
    """
    e = np.where(np.isnan(err), np.inf, err)
    return alphas[np.argmin(e, axis=0)]


class RidgeEigen:
    """The eigendecomposition of one standardised training matrix, shared by all ridge fits.

    Parameters
    ----------
    Z : ndarray of shape (n, k)
        Standardised training features, every column centred (mean 0); ``n >= 2``.
    """

    def __init__(self, Z: FloatArray) -> None:
        n, k = Z.shape
        self.n, self.k = int(n), int(k)
        self.Z = Z
        self.dual = k >= n
        if k == 0:
            self.lam: FloatArray = np.zeros(0)
            self.basis: FloatArray = np.zeros((n, 0))
            self.V: FloatArray | None = np.zeros((0, 0))
        elif self.dual:
            w, beta = _householder(n)
            G = Z @ Z.T
            # H G H without forming H: G - w q^T - q w^T; its first row and column are the
            # constant direction, dropped. w[1:] is the constant 1/sqrt(n).
            p = G @ w
            q = beta * p - (0.5 * beta * beta * float(w @ p)) * w
            G2 = G[1:, 1:]
            c = w[1]
            G2 -= c * q[None, 1:]
            G2 -= c * q[1:, None]
            lam, W = np.linalg.eigh(G2)
            # Back to row space: H[:, 1:] W = [0; W] - beta w (w[1:]^T W).
            t = (beta * c) * W.sum(axis=0)
            U = np.empty((n, n - 1))
            U[0] = -w[0] * t
            np.subtract(W, c * t, out=U[1:])
            self.lam = np.maximum(lam, 0.0)
            self.basis = U
            self.V = None
        else:
            lam, V = np.linalg.eigh(Z.T @ Z)
            self.lam = np.maximum(lam, 0.0)
            self.V = V
            self.basis = Z @ V

    def fit(
        self, Yc: FloatArray, alphas: ArrayLike, *, loo: bool = True
    ) -> tuple[FloatArray, FloatArray]:
        """Ridge coefficients of every centred target, alpha chosen by leave-one-out.

        Parameters
        ----------
        Yc : ndarray of shape (n, m)
            Targets, each centred on its training mean.
        alphas : array_like of shape (p,)
            Candidate penalties (> 0), tried in order; with ``loo=False`` it must hold one
            alpha, used for every target.
        loo : bool
            Choose among ``alphas`` by exact leave-one-out squared error.

        Returns
        -------
        coef : ndarray of shape (k, m)
        chosen : ndarray of shape (m,)
            The alpha of every target.
        """
        a = np.asarray(alphas, dtype=np.float64).ravel()
        m = Yc.shape[1]
        if loo and a.size > 1:
            chosen = choose_alpha(self.loo_errors(Yc, a), a)
        else:
            chosen = np.full(m, a[0])
        if self.k == 0:
            return np.zeros((0, m)), chosen
        B = self.basis
        proj = B.T @ Yc
        scaled = proj / (self.lam[:, None] + chosen[None, :])
        if self.V is None:  # dual: coef = Z^T c
            return self.Z.T @ (B @ scaled), chosen
        return self.V @ scaled, chosen

    def loo_errors(self, Yc: FloatArray, alphas: FloatArray) -> FloatArray:
        """Mean squared leave-one-out residual of every alpha (rows) and target (columns).

        Parameters
        ----------
        Yc : ndarray of shape (n, m)
            Centred targets.
        alphas : ndarray of shape (p,)

        Returns
        -------
        ndarray of shape (p, m)
        """
        n, m = Yc.shape
        p = alphas.size
        B = self.basis
        r = self.lam.size
        g = 1.0 / (self.lam[:, None] + alphas[None, :])  # (r, p)
        proj = B.T @ Yc  # (r, m)
        fitted = (B @ (g[:, :, None] * proj[:, None, :]).reshape(r, p * m)).reshape(n, p, m)
        diag = (B * B) @ g  # (n, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.dual:
                # Leave-one-out residual c_i / Ginv_ii (the dual coefficients divided by the
                # diagonal of (K + alpha)^-1 on the complement of the constant): no
                # cancellation even when the fit nearly interpolates.
                resid = fitted / diag[:, :, None]
            else:
                resid = (Yc[:, None, :] - fitted) / (1.0 - 1.0 / n - diag)[:, :, None]
            return np.mean(resid * resid, axis=0)


class SplitPredictions(NamedTuple):
    """What :func:`ridge_split_predictions_torch` returns for ``R`` training splits.

    Attributes
    ----------
    predictions : ndarray of shape (R, t, m)
        Predictions of every target on every split's test rows.
    alphas : ndarray of shape (R, m)
        The alpha of every split and target (the given one without leave-one-out).
    n_constant : ndarray of int, shape (R,)
        Columns dropped as constant on each training split.
    n_floored : ndarray of int, shape (R,)
        Kept columns whose scale the ``min_std`` floor raised.
    """

    predictions: FloatArray
    alphas: FloatArray
    n_constant: NDArray[np.int64]
    n_floored: NDArray[np.int64]


def ridge_split_predictions_torch(
    X: ArrayLike,
    train: Sequence[ArrayLike],
    test: Sequence[ArrayLike],
    Y_train: Sequence[ArrayLike],
    alphas: ArrayLike,
    *,
    loo: bool = True,
    min_std: float | None = None,
    device: Any = "cpu",
    max_bytes: int = 1 << 30,
) -> SplitPredictions:
    """Ridge probes of many training splits at once, in float64 with ``torch``.

    The arithmetic of :class:`RidgeEigen` (and the standardisation of
    :func:`rcvlab.probe.fit.fit_rcv`: training mean and ``ddof=0`` standard deviation,
    constant columns dropped, the ``min_std`` floor), batched over the splits with
    ``torch.linalg.eigh``: the GPU path of a ridge profile. Dropped columns are zeroed rather
    than removed, so that all splits keep one shape; that changes no fit.

    Parameters
    ----------
    X : array_like of shape (N, d)
        Raw features of all rows the splits index.
    train, test : sequence of R integer arrays
        Row indices of every split's training side (all of one length ``n >= 2``) and test
        side (all of one length ``t``).
    Y_train : sequence of R arrays of shape (n, m)
        The targets of every split's training rows.
    alphas : array_like of shape (p,)
        Candidate penalties (> 0); one alpha with ``loo=False``.
    loo : bool
        Choose the alpha per split and target by leave-one-out (as ``RidgeCV``).
    min_std : float, optional
        The standardisation guard (None or 0 = off).
    device : str or torch.device
        Where to compute (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
    max_bytes : int
        Splits are processed in chunks whose training stack stays under this size.

    Returns
    -------
    SplitPredictions
    """
    import torch

    from rcvlab.probe.fit import CONSTANT_RTOL

    dev = torch.device(device)
    f64 = torch.float64
    Xd = torch.as_tensor(np.asarray(X, dtype=np.float64), device=dev)
    tr = np.stack([np.asarray(i, dtype=np.int64) for i in train])
    te = np.stack([np.asarray(i, dtype=np.int64) for i in test])
    Y = np.stack([np.asarray(y, dtype=np.float64) for y in Y_train])
    R, n = tr.shape
    t, d, m = te.shape[1], Xd.shape[1], Y.shape[2]
    a = torch.as_tensor(np.asarray(alphas, dtype=np.float64).ravel(), device=dev)
    dual = d >= n
    side = n if dual else d
    per_split = 8 * (3 * n * d + 3 * side * side + n * side * (a.numel() * m + 2))
    chunk = max(1, min(R, int(max_bytes // max(per_split, 1))))
    w_np, beta = _householder(n)
    w = torch.as_tensor(w_np, device=dev)

    preds = np.empty((R, t, m))
    chosen_all = np.empty((R, m))
    n_const = np.empty(R, dtype=np.int64)
    n_floor = np.zeros(R, dtype=np.int64)
    for s in range(0, R, chunk):
        sl = slice(s, min(R, s + chunk))
        ti = torch.as_tensor(tr[sl], device=dev)
        Xtr = Xd[ti]  # (b, n, d)
        Yt = torch.as_tensor(Y[sl], device=dev)
        mean = Xtr.mean(dim=1)
        Z = Xtr - mean[:, None, :]
        std = torch.sqrt((Z * Z).sum(dim=1) / n)
        amax = torch.maximum(Xtr.amax(dim=1), -Xtr.amin(dim=1))
        del Xtr
        keep = (std > 0) & (std > CONSTANT_RTOL * amax)
        scale = torch.where(keep, std, torch.ones_like(std))
        if min_std:
            med = torch.nanquantile(torch.where(keep, std, torch.nan), 0.5, dim=1)
            low = keep & (std < (min_std * med)[:, None])
            scale = torch.where(low, (min_std * med)[:, None].expand_as(std), scale)
            n_floor[sl] = low.sum(dim=1).cpu().numpy()
        Z = torch.where(
            keep[:, None, :], Z / scale[:, None, :], torch.zeros((), dtype=f64, device=dev)
        )
        resid = Z.mean(dim=1)
        Z = Z - resid[:, None, :]
        mean = mean + torch.where(keep, resid * scale, torch.zeros((), dtype=f64, device=dev))
        n_const[sl] = (~keep).sum(dim=1).cpu().numpy()

        ybar = Yt.mean(dim=1)
        Yc = Yt - ybar[:, None, :]
        if dual:
            G = Z @ Z.transpose(1, 2)
            p = G @ w
            q = beta * p - (0.5 * beta * beta * (p @ w))[:, None] * w
            G2 = (
                G[:, 1:, 1:]
                - w[None, 1:, None] * q[:, None, 1:]
                - q[:, 1:, None] * w[None, None, 1:]
            )
            lam, W = torch.linalg.eigh(G2)
            B = torch.cat([torch.zeros_like(W[:, :1]), W], dim=1)
            B = B - (beta * w)[None, :, None] * (w[1:] @ W)[:, None, :]
            V = None
        else:
            lam, V = torch.linalg.eigh(Z.transpose(1, 2) @ Z)
            B = Z @ V
        lam = lam.clamp_min(0.0)
        proj = B.transpose(1, 2) @ Yc  # (b, r, m)
        if loo and a.numel() > 1:
            g = 1.0 / (lam[:, :, None] + a[None, None, :])  # (b, r, p)
            b_, r = lam.shape
            fitted = (B @ (g[:, :, :, None] * proj[:, :, None, :]).reshape(b_, r, -1)).reshape(
                b_, n, a.numel(), m
            )
            diag = (B * B) @ g  # (b, n, p)
            if dual:
                res = fitted / diag[..., None]
            else:
                res = (Yc[:, :, None, :] - fitted) / (1.0 - 1.0 / n - diag)[..., None]
            err = (res * res).mean(dim=1).cpu().numpy()  # (b, p, m)
            a_np = a.cpu().numpy()
            ch = np.stack([choose_alpha(e, a_np) for e in err])
        else:
            ch = np.full((sl.stop - sl.start, m), float(a[0]))
        chosen_all[sl] = ch
        cht = torch.as_tensor(ch, device=dev)
        scaled = proj / (lam[:, :, None] + cht[:, None, :])
        if V is None:  # dual: coef = Z^T c
            coef = Z.transpose(1, 2) @ (B @ scaled)
        else:
            coef = V @ scaled
        Xte = Xd[torch.as_tensor(te[sl], device=dev)]
        Zte = torch.where(
            keep[:, None, :],
            (Xte - mean[:, None, :]) / scale[:, None, :],
            torch.zeros((), dtype=f64, device=dev),
        )
        preds[sl] = (Zte @ coef + ybar[:, None, :]).cpu().numpy()
    return SplitPredictions(preds, chosen_all, n_const, n_floor)


def lasso_duality_gaps(
    Z: FloatArray, yc: FloatArray, coefs: FloatArray, alphas: FloatArray
) -> FloatArray:
    """Duality gaps of Lasso solutions, as scikit-learn's coordinate descent measures them.

    For ``(1/(2n)) ||y_c - Z w||² + alpha ||w||_1`` scaled by ``n`` (scikit-learn's
    ``enet_coordinate_descent`` works on ``P(w) = ||r||²/2 + n alpha ||w||_1``), with the dual
    point ``r`` rescaled into the feasible set ``||Z^T v||_inf <= n alpha``. A fit has
    converged in scikit-learn's sense when its gap is ``<= tol * ||y_c||²``.

    Parameters
    ----------
    Z : ndarray of shape (n, k)
    yc : ndarray of shape (n,)
        Centred target.
    coefs : ndarray of shape (k, p)
    alphas : ndarray of shape (p,)

    Returns
    -------
    ndarray of shape (p,)
    """
    n = Z.shape[0]
    R = yc[:, None] - Z @ coefs
    dual_norm = np.max(np.abs(Z.T @ R), axis=0) if Z.shape[1] else np.zeros(alphas.size)
    na = n * alphas
    r2 = np.einsum("ij,ij->j", R, R)
    scale = np.where(dual_norm > na, na / np.where(dual_norm > 0, dual_norm, 1.0), 1.0)
    primal = 0.5 * r2 + na * np.abs(coefs).sum(axis=0)
    dual = -0.5 * scale**2 * r2 + scale * (R.T @ yc)
    return np.asarray(primal - dual, dtype=np.float64)


class _Degenerate(Exception):
    """The homotopy cannot go on (a joining column in the span of the active ones)."""


def lasso_homotopy(
    Z: FloatArray, yc: FloatArray, alphas: FloatArray, *, max_steps: int | None = None
) -> FloatArray:
    """Exact Lasso solutions at ``alphas`` by the homotopy (LARS-Lasso) algorithm.

    Minimises ``(1/(2n)) ||y_c - Z w||² + alpha ||w||_1`` (scikit-learn's ``Lasso`` without
    intercept, on centred data) for every alpha: the solution path is piecewise linear in
    alpha, and the homotopy follows it from ``max |Z^T y_c| / n`` (where ``w = 0``) down
    through every kink (a column joining the active set, or leaving it when its coefficient
    crosses zero, the Lasso modification of LARS), reading the solutions at the requested
    alphas off the linear pieces. A step costs one product with ``Z^T`` and O(m²) updates of
    the inverse Gram matrix of the ``m`` active columns (recomputed from scratch every 100
    steps, as the residual and correlations every 25, so that rounding does not build up).

    Parameters
    ----------
    Z : ndarray of shape (n, k)
        Centred columns (standardised or not).
    yc : ndarray of shape (n,)
        Centred target.
    alphas : ndarray of shape (p,)
        Penalties > 0, in any order.
    max_steps : int, optional
        Give up after this many kinks (default ``10 * min(n, k) + 100``).

    Returns
    -------
    ndarray of shape (k, p)
        Coefficients, in the order of ``alphas``.

    Raises
    ------
    ArithmeticError
        When the path is degenerate here (a column joining in the span of the active
        columns, as with duplicated columns) or takes more than ``max_steps`` kinks; the
        caller falls back to coordinate descent.
    """
    from scipy.linalg import blas, lapack

    n, k = Z.shape
    a = np.asarray(alphas, dtype=np.float64)
    out = np.zeros((k, a.size))
    if k == 0 or a.size == 0:
        return out
    order = np.argsort(-a, kind="stable")
    targets = a[order]
    steps_left = 10 * min(n, k) + 100 if max_steps is None else max_steps
    Zf = np.asfortranarray(Z)
    # Z in float32 is half the memory (a 220 x 1280 layer fits a core's L2 cache, in
    # float64 it does not), and the product with Z^T, once per kink, is what a step costs.
    # It only screens: the columns whose joining step it puts near the smallest are
    # recomputed in float64 from the exact residual, and the correlations of all columns
    # are recomputed in float64 every 25 steps.
    Z32 = Zf.astype(np.float32)
    norms = np.einsum("ij,ij->j", Zf, Zf)
    r = np.array(yc, dtype=np.float64)
    c = Zf.T @ r / n
    alpha = float(np.max(np.abs(c)))
    t = int(np.count_nonzero(targets >= alpha))  # their solutions are 0
    if t == a.size:
        return out
    cap = min(n, k) + 1
    ZA = np.empty((n, cap), order="F")
    # The inverse Gram matrix of the active columns: Fortran-ordered, so that BLAS dger
    # updates it in place (numpy's strided outer-product update is ~8x slower).
    Ginv = np.zeros((0, 0), order="F")
    s = np.empty(cap)
    w = np.empty(cap)
    act = np.empty(cap, dtype=np.intp)
    m = 0
    d1, d2 = np.empty(k), np.empty(k)

    def add(j: int, sign: float) -> None:
        nonlocal m, Ginv
        if m + 1 >= cap:
            raise _Degenerate
        zj = Zf[:, j]
        if m:
            b = ZA[:, :m].T @ zj
            g = Ginv @ b
            schur = norms[j] - float(b @ g)
        else:
            schur = float(norms[j])
        # A joining column (nearly) in the span of the active ones: the path is not unique.
        if not schur > 1e-10 * norms[j]:
            raise _Degenerate
        grown = np.empty((m + 1, m + 1), order="F")
        if m:
            grown[:m, :m] = blas.dger(1.0 / schur, g, g, a=Ginv, overwrite_a=1)
            grown[:m, m] = grown[m, :m] = -g / schur
        grown[m, m] = 1.0 / schur
        Ginv = grown
        ZA[:, m] = zj
        s[m], w[m], act[m] = sign, 0.0, j
        m += 1

    def drop(p: int) -> None:
        nonlocal m, Ginv
        col = np.concatenate([Ginv[:p, p], Ginv[p + 1 : m, p]])
        gpp = Ginv[p, p]
        shrunk = np.empty((m - 1, m - 1), order="F")
        shrunk[:p, :p] = Ginv[:p, :p]
        shrunk[:p, p:] = Ginv[:p, p + 1 :]
        shrunk[p:, :p] = Ginv[p + 1 :, :p]
        shrunk[p:, p:] = Ginv[p + 1 :, p + 1 :]
        Ginv = blas.dger(-1.0 / gpp, col, col, a=shrunk, overwrite_a=1)
        ZA[:, p : m - 1] = ZA[:, p + 1 : m]
        s[p : m - 1], w[p : m - 1], act[p : m - 1] = s[p + 1 : m], w[p + 1 : m], act[p + 1 : m]
        m -= 1

    def joins(
        alpha: float, c: FloatArray, av: FloatArray, d1: FloatArray, d2: FloatArray
    ) -> FloatArray:
        """Step at which each column's correlation reaches +-alpha (inf: never); in d1.

        The numerators ``alpha -+ c_j`` are >= 0 up to rounding for inactive columns, so a
        step is valid exactly when its denominator is > 0; a rounding-negative one is a
        column already at the boundary (step 0).
        """
        den = 1.0 - av
        np.divide(alpha - c, den, out=d1)
        np.copyto(d1, np.inf, where=den <= 0)
        np.add(av, 1.0, out=den)
        np.divide(alpha + c, den, out=d2)
        np.copyto(d2, np.inf, where=den <= 0)
        np.minimum(d1, d2, out=d1)
        np.maximum(d1, 0.0, out=d1)
        return d1

    def refresh() -> None:
        nonlocal Ginv
        L, info = lapack.dpotrf(ZA[:, :m].T @ ZA[:, :m], lower=1)
        if info == 0:
            inv, info = lapack.dpotri(L, lower=1)
        if info != 0:
            raise _Degenerate
        low = np.tril(inv)
        Ginv = np.asfortranarray(low + np.tril(low, -1).T)

    blocked = np.zeros(k)  # +inf on the active columns: they cannot join
    with np.errstate(divide="ignore", invalid="ignore"):
        try:
            j0 = int(np.argmax(np.abs(c)))
            add(j0, float(np.sign(c[j0])))
            blocked[j0] = np.inf
            just_added, just_dropped = j0, -1
            steps = 0
            while True:
                steps += 1
                if steps > steps_left:
                    raise _Degenerate
                direction = Ginv @ s[:m]
                u = ZA[:, :m] @ direction
                av = (Z32.T @ u.astype(np.float32)).astype(np.float64)
                # The largest step along the current piece before a kink: a column joining
                # (|c_j - step a_j| = alpha - step) or an active coefficient reaching 0.
                step, event, who = alpha, 0, -1
                joins(alpha, c, av, d1, d2)
                d1 += blocked
                if just_dropped >= 0:
                    d1[just_dropped] = np.inf
                p = int(np.argmin(d1))
                if d1[p] < step:
                    # The columns within 0.1 % of the smallest screened step, exactly.
                    near = np.flatnonzero(d1 <= d1[p] * 1.001)
                    if near.size == 1:  # the usual case, in scalars
                        zp = Zf[:, p]
                        cp = float(zp @ r) / n
                        ap = float(zp @ u)
                        c[p], av[p] = cp, ap
                        dp = min(
                            (alpha - cp) / (1.0 - ap) if ap < 1.0 else np.inf,
                            (alpha + cp) / (1.0 + ap) if ap > -1.0 else np.inf,
                        )
                        if max(dp, 0.0) < step:
                            step, event, who = max(dp, 0.0), 1, p
                    else:
                        zn = Zf[:, near]
                        c[near] = zn.T @ r / n
                        av[near] = zn.T @ u
                        dn = joins(
                            alpha, c[near], av[near], np.empty(near.size), np.empty(near.size)
                        )
                        dn += blocked[near]
                        if just_dropped >= 0:
                            dn[near == just_dropped] = np.inf
                        q = int(np.argmin(dn))
                        if dn[q] < step:
                            step, event, who = float(dn[q]), 1, int(near[q])
                dd = -w[:m] / (n * direction)
                np.copyto(dd, np.inf, where=~(dd > 0))
                if act[m - 1] == just_added:
                    dd[m - 1] = np.inf
                p = int(np.argmin(dd))
                if dd[p] < step:
                    step, event, who = float(dd[p]), 2, p
                # Solutions at the targets this piece passes.
                while t < a.size and targets[t] >= alpha - step:
                    out[act[:m], order[t]] = w[:m] + (alpha - targets[t]) * n * direction
                    t += 1
                if t == a.size:
                    break
                w[:m] += step * n * direction
                r -= (step * n) * u
                c -= step * av
                alpha -= step
                just_added = just_dropped = -1
                if event == 1:
                    add(who, 1.0 if c[who] >= 0 else -1.0)
                    blocked[who] = np.inf
                    just_added = who
                elif event == 2:
                    just_dropped = int(act[who])
                    blocked[just_dropped] = 0.0
                    drop(who)
                if steps % 100 == 0:  # the inverse Gram matrix afresh
                    refresh()
                if steps % 25 == 0:  # the residual and correlations afresh
                    r = yc - ZA[:, :m] @ w[:m]
                    c = Zf.T @ r / n
        except (_Degenerate, np.linalg.LinAlgError):
            raise ArithmeticError("the Lasso homotopy is degenerate here") from None
    return out


def lasso_path_certified(
    Z: FloatArray, yc: FloatArray, alphas: ArrayLike, *, tol: float, max_iter: int
) -> FloatArray:
    """Lasso solutions at ``alphas``: exact by homotopy, each checked by its duality gap.

    :func:`lasso_homotopy` computes the solutions; every one of them is then held to
    scikit-learn's own stopping rule (duality gap ``<= tol * ||y_c||²``,
    :func:`lasso_duality_gaps`). A solution that fails it, or all of them when the homotopy
    is degenerate (e.g. duplicated columns), is computed by scikit-learn's coordinate descent
    (:func:`sklearn.linear_model.lasso_path` with ``tol`` and ``max_iter``), warm-started
    from the homotopy's. Either way every returned solution meets the criterion a
    scikit-learn ``Lasso(alpha, tol=tol)`` fit meets, and typically equals the exact
    minimiser to ~1e-10.

    Parameters
    ----------
    Z : ndarray of shape (n, k)
        Centred columns.
    yc : ndarray of shape (n,)
        Centred target.
    alphas : array_like of shape (p,)
        Penalties > 0, in any order.
    tol, max_iter : float, int
        scikit-learn's tolerance and iteration limit.

    Returns
    -------
    ndarray of shape (k, p)
    """
    from sklearn.linear_model import lasso_path

    a = np.asarray(alphas, dtype=np.float64).ravel()
    k = Z.shape[1]
    if k == 0 or a.size == 0:
        return np.zeros((k, a.size))
    Zf = np.asfortranarray(Z)  # one copy, for the homotopy and coordinate descent alike
    try:
        C = lasso_homotopy(Zf, yc, a)
        todo = np.flatnonzero(~(lasso_duality_gaps(Zf, yc, C, a) <= tol * float(yc @ yc)))
    except ArithmeticError:
        order = np.argsort(-a, kind="stable")
        C = np.zeros((k, a.size))
        _, C[:, order], _ = lasso_path(Zf, yc, alphas=a[order], max_iter=max_iter, tol=tol)
        return C
    for j in todo:
        _, cj, _ = lasso_path(
            Zf, yc, alphas=a[j : j + 1], coef_init=C[:, j], max_iter=max_iter, tol=tol
        )
        C[:, j] = cj[:, 0]
    return C


def torch_device_available(device: Any) -> bool:
    """Whether ``torch`` can compute on ``device`` here (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Parameters
    ----------
    device : str or torch.device

    Returns
    -------
    bool
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # not a device name at all
        return False
    if dev.type == "cpu":
        return True
    if dev.type == "cuda":
        return bool(torch.cuda.is_available()) and (
            dev.index is None or dev.index < torch.cuda.device_count()
        )
    return False


__all__ = [
    "RidgeEigen",
    "SplitPredictions",
    "choose_alpha",
    "lasso_duality_gaps",
    "lasso_homotopy",
    "lasso_path_certified",
    "ridge_split_predictions_torch",
    "torch_device_available",
]
