"""In-sample R² of an ordinary least-squares fit on all images: paper 004's texture score.

The code of paper 004 (``RCVs_analysis.ipynb``) scores a concept at a layer by
``statsmodels.OLS(y, add_constant(X)).fit().rsquared``: ordinary least squares with an
intercept on **all** images, no split. statsmodels solves it with the pseudo-inverse (the
minimum-norm solution), so when the features and the intercept span every image
(``rank + 1 >= n``; generically ``d + 1 >= n``) the fit interpolates the measure and R² is 1
whatever the features are. This module computes the same number without statsmodels, and
says when it saturated. It is an in-sample goodness of fit, not a held-out score: rcvlab's
probes (:func:`rcvlab.probe.probe_layers`) report held-out R² over repeated splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from rcvlab.errors import DataError


@dataclass(frozen=True)
class InsampleFit:
    """The in-sample OLS fit of a measure on one layer's features.

    Attributes
    ----------
    r2 : float
        ``1 - RSS / TSS`` of the least-squares fit with intercept on all images (TSS about
        the mean); 1 exactly when :attr:`saturated`.
    saturated : bool
        The intercept and the features span all ``n`` images (``rank + 1 >= n``): the fit
        interpolates any measure, so ``r2`` is 1 and says nothing about the layer.
    rank : int
        Numerical rank of the mean-centred features.
    n_images : int
        Rows fitted.
    dim : int
        Feature columns.
    """

    r2: float
    saturated: bool
    rank: int
    n_images: int
    dim: int


def insample_fit(X: ArrayLike, y: ArrayLike) -> InsampleFit:
    """Paper 004's in-sample R² with intercept on all rows, and whether it saturated.

    Equal to ``statsmodels.api.OLS(y, statsmodels.api.add_constant(X)).fit().rsquared``
    (tested to 1e-8): the intercept is removed by centring ``X`` and ``y``, and the fitted
    values are the projection of ``y`` on the column space of the centred ``X``, found
    from its thin SVD (singular values below ``max(n, d) * eps * s_max`` dropped, as
    :func:`numpy.linalg.matrix_rank` does) — stable also for the nearly collinear GAP
    features of a random network.

    Parameters
    ----------
    X : array_like of shape (n, d)
        Features, one row per image.
    y : array_like of shape (n,)
        The measure.

    Returns
    -------
    InsampleFit

    Raises
    ------
    DataError
        Wrong shapes, non-finite values, fewer than 3 rows, or a constant measure.
    """
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if Xa.ndim != 2:
        raise DataError(f"features must be a 2-D array (images x features), got {Xa.shape}")
    n, d = Xa.shape
    if ya.shape != (n,):
        raise DataError(f"the measure must have shape ({n},) to match the features, got {ya.shape}")
    if not (np.isfinite(Xa).all() and np.isfinite(ya).all()):
        raise DataError("features or measure have NaN or infinite values; drop those rows first")
    if n < 3:
        raise DataError(f"{n} images: an in-sample R² needs at least 3")
    yc = ya - ya.mean()
    tss = float(yc @ yc)
    if tss == 0.0:
        raise DataError(f"the measure is constant ({ya[0]:g}); a regression needs it to vary")
    Xc = Xa - Xa.mean(axis=0)
    if d == 0:
        return InsampleFit(0.0, False, 0, n, 0)
    U, s, _ = scipy.linalg.svd(Xc, full_matrices=False, check_finite=False)
    tol = s[0] * max(n, d) * np.finfo(np.float64).eps if s.size else 0.0
    rank = int((s > tol).sum()) if s.size and s[0] > 0 else 0
    if rank + 1 >= n:
        # the centred columns span every centred vector: the fit interpolates y
        return InsampleFit(1.0, True, rank, n, d)
    proj = U[:, :rank].T @ yc
    rss = max(tss - float(proj @ proj), 0.0)
    return InsampleFit(1.0 - rss / tss, False, rank, n, d)


def insample_r2(X: ArrayLike, y: ArrayLike) -> float:
    """``statsmodels`` OLS in-sample R² with intercept on all rows (paper 004's score).

    See :func:`insample_fit`, which also says whether the fit saturated (``rank + 1 >= n``,
    where R² is 1 for any measure).

    Parameters
    ----------
    X : array_like of shape (n, d)
    y : array_like of shape (n,)

    Returns
    -------
    float
    """
    return insample_fit(X, y).r2


__all__ = ["InsampleFit", "insample_fit", "insample_r2"]
