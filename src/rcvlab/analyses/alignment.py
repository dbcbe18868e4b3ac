"""Alignment of an RCV with individual feature maps (paper 001, §4.1, Fig. 3).

Is the measure carried by a few feature maps (dimensions) or spread over many? The RCV
``v`` (coefficients in the **standardised** feature space, as fitted by
:func:`rcvlab.probe.fit.fit_rcv`) is normalised, ``v̂ = v / |v|``, its components are sorted
by decreasing ``|v̂_i|``, and the curve

``curve[d' - 1] = |v̂_(1..d')| = sqrt(sum of the d' largest v̂_i²)``,  ``d' = 1 … max_dims``

is reported. ``curve[0] = max |v̂_i|`` is the largest alignment with a single feature map;
``curve[d' - 1] = 1`` means the first ``d'`` feature maps hold the whole direction (for a
Lasso RCV with ``k`` non-zero coefficients that happens at ``d' = k``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from rcvlab.analyses.sparsity import (
    _none_to_nan,
    _ro,
    check_xy,
    dump_json,
    features_by_class,
)
from rcvlab.errors import DataError, RcvlabError
from rcvlab.probe.fit import RCV, check_regressor, fit_rcv
from rcvlab.probe.splits import repeated_splits
from rcvlab.probe.stats import r2_score

FloatArray = NDArray[np.float64]


def cumulative_norm(direction: ArrayLike) -> FloatArray:
    """``sqrt(cumsum(sorted v̂²))`` of a vector, over all its ``d`` components.

    Parameters
    ----------
    direction : array_like of shape (d,)
        Any vector; it is normalised first.

    Returns
    -------
    ndarray of shape (d,)
        Non-decreasing, last value 1; all NaN for a zero vector (no direction).
    """
    v = np.asarray(direction, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(v))
    if norm == 0 or not math.isfinite(norm):
        return np.full(v.size, np.nan)
    w = np.sort(np.abs(v / norm))[::-1]
    out = np.sqrt(np.cumsum(w**2))
    return np.minimum(out, 1.0)


@dataclass(frozen=True, eq=False)
class AlignmentResult:
    """How much of an RCV's direction its largest components hold.

    Attributes
    ----------
    direction : ndarray of shape (d,)
        The unit RCV ``v̂`` in the standardised feature space (zeros when the fit kept no
        coefficient).
    regressor : str
        ``"ols"``, ``"ridge"`` or ``"lasso"``.
    alpha : float or None
        The penalty used (None for ``ols``).
    max_dims : int
        Length of :attr:`curve`.
    n_nonzero : int
        Non-zero coefficients of the RCV.
    r2_train : float
        R² on the rows it was fitted on.
    r2_test : float
        R² on held-out rows (NaN when none were given).
    n_train, n_test : int
    meta : dict
        Provenance (model, layer, measure, class ...).
    """

    direction: FloatArray
    regressor: str
    alpha: float | None
    max_dims: int
    n_nonzero: int
    r2_train: float
    r2_test: float = math.nan
    n_train: int = 0
    n_test: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Feature dimension ``d``."""
        return int(self.direction.size)

    @property
    def defined(self) -> bool:
        """False when the RCV is the zero vector (e.g. Lasso kept no coefficient)."""
        return bool(np.any(self.direction != 0))

    @property
    def padded(self) -> bool:
        """True when ``d < max_dims``: :attr:`curve` is padded with its last value, 1.0."""
        return self.dim < self.max_dims

    @property
    def label(self) -> str:
        """``"lasso (alpha=0.001)"``, ``"ols"`` ..."""
        return self.regressor if self.alpha is None else f"{self.regressor} (alpha={self.alpha:g})"

    @property
    def cumulative(self) -> FloatArray:
        """The cumulative norm over all ``d`` sorted components (see :func:`cumulative_norm`)."""
        return cumulative_norm(self.direction)

    @property
    def curve(self) -> FloatArray:
        """``curve[d' - 1] = |v̂_(1..d')|`` for ``d' = 1 … max_dims``.

        When ``d < max_dims`` the values past ``d`` repeat the last one (1.0); all NaN when
        the RCV is the zero vector.
        """
        c = self.cumulative
        out = np.empty(self.max_dims)
        m = min(self.max_dims, c.size)
        out[:m] = c[:m]
        out[m:] = c[-1] if c.size else math.nan
        return out

    def dims_for(self, level: float = 0.9) -> int:
        """Fewest components whose norm reaches ``level`` (over all ``d``, not only max_dims).

        Parameters
        ----------
        level : float
            In (0, 1].

        Returns
        -------
        int
            The smallest ``d'`` with ``|v̂_(1..d')| >= level`` (a relative slack of 1e-12
            absorbs rounding, so ``level=1`` gives the number of non-zero components).

        Raises
        ------
        RcvlabError
            ``level`` outside (0, 1], or an RCV without direction (zero vector).
        """
        if not 0 < level <= 1:
            raise RcvlabError(f"level must be in (0, 1], got {level!r}")
        if not self.defined:
            raise RcvlabError(
                f"the {self.label} RCV is the zero vector (no non-zero coefficient): it has "
                "no direction; use a smaller alpha"
            )
        c = self.cumulative
        return int(np.searchsorted(c, level * (1 - 1e-12), side="left")) + 1

    def top_features(self, n: int = 10) -> list[tuple[int, float]]:
        """The ``n`` feature indices with the largest ``|v̂_i|``, with their signed ``v̂_i``."""
        order = np.argsort(-np.abs(self.direction), kind="stable")[:n]
        return [(int(i), float(self.direction[i])) for i in order if self.direction[i] != 0]

    def to_frame(self) -> pd.DataFrame:
        """One row per ``d'``: ``regressor, alpha, label, d, cumulative_norm``."""
        return pd.DataFrame(
            {
                "regressor": self.regressor,
                "alpha": np.nan if self.alpha is None else self.alpha,
                "label": self.label,
                "d": np.arange(1, self.max_dims + 1),
                "cumulative_norm": self.curve,
            }
        )

    def summary(self) -> dict[str, Any]:
        """Scalars of the result: counts, R², components needed for 50/90/99/100 % of the norm."""
        out: dict[str, Any] = {
            "regressor": self.regressor,
            "alpha": self.alpha,
            "label": self.label,
            "dim": self.dim,
            "n_nonzero": self.n_nonzero,
            "r2_train": self.r2_train,
            "r2_test": self.r2_test,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "max_component": float(self.curve[0]) if self.defined else math.nan,
        }
        for lv in (0.5, 0.9, 0.99, 1.0):
            out[f"dims_for_{lv:g}"] = self.dims_for(lv) if self.defined else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {
            "analysis": "alignment",
            **self.summary(),
            "max_dims": self.max_dims,
            "padded": self.padded,
            "curve": self.curve.tolist(),
            "direction": self.direction.tolist(),
            "meta": dict(self.meta),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """JSON text (NaN as null); written atomically to ``path`` if given."""
        return dump_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlignmentResult:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            direction=_ro(d["direction"], np.float64),
            regressor=str(d["regressor"]),
            alpha=None if d.get("alpha") is None else float(d["alpha"]),
            max_dims=int(d["max_dims"]),
            n_nonzero=int(d["n_nonzero"]),
            r2_train=float(_none_to_nan([d.get("r2_train")])[0]),
            r2_test=float(_none_to_nan([d.get("r2_test")])[0]),
            n_train=int(d.get("n_train", 0)),
            n_test=int(d.get("n_test", 0)),
            meta=dict(d.get("meta", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> AlignmentResult:
        """Rebuild from :meth:`to_json`'s text."""
        return cls.from_dict(json.loads(text))


def alignment_of(
    rcv: RCV,
    max_dims: int = 200,
    *,
    r2_train: float = math.nan,
    r2_test: float = math.nan,
    n_train: int = 0,
    n_test: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> AlignmentResult:
    """The alignment curve of an already fitted :class:`~rcvlab.probe.fit.RCV`."""
    if int(max_dims) < 1:
        raise RcvlabError(f"max_dims must be >= 1, got {max_dims!r}")
    return AlignmentResult(
        direction=_ro(rcv.direction, np.float64),
        regressor=rcv.regressor,
        alpha=rcv.alpha,
        max_dims=int(max_dims),
        n_nonzero=int(np.count_nonzero(rcv.coef)),
        r2_train=float(r2_train),
        r2_test=float(r2_test),
        n_train=int(n_train),
        n_test=int(n_test),
        meta=dict(meta or {}),
    )


def alignment(
    X: ArrayLike,
    y: ArrayLike,
    regressor: str = "lasso",
    alpha: float | None = 0.001,
    max_dims: int = 200,
    test: tuple[ArrayLike, ArrayLike] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> AlignmentResult:
    """Fit one RCV and measure how many feature maps hold its direction.

    The RCV is fitted with :func:`rcvlab.probe.fit.fit_rcv` on all rows of ``X`` (pass the
    training split), so its direction lives in the feature space standardised with those
    rows' statistics.

    Parameters
    ----------
    X : array_like of shape (n, d)
        Raw features.
    y : array_like of shape (n,)
        The measure.
    regressor : {"ols", "ridge", "lasso"}
        ``ols`` is the paper's non-regularised regression ("Non-reg." in Fig. 3).
    alpha : float or None
        Penalty of ``lasso`` (scikit-learn convention; the paper's 0.001) and ``ridge``
        (None: leave-one-out choice); ignored for ``ols`` (stored as None).
    max_dims : int
        Length of the curve (the paper's 200). When ``d < max_dims`` the curve is padded
        with its last value, 1.0 (see :attr:`AlignmentResult.padded`).
    test : (X_test, y_test), optional
        Held-out rows for the reported test R².
    meta : mapping, optional
        Provenance stored in the result.

    Returns
    -------
    AlignmentResult
        ``curve`` (``max_dims``,), ``dims_for(level)``, ``n_nonzero``. A Lasso that keeps no
        coefficient gives a zero direction and an all-NaN curve rather than an error.
    """
    Xa, ya = check_xy(X, y, "X")
    name = str(regressor).strip().lower()
    name, a = check_regressor(name, None if name == "ols" else alpha)
    rcv = fit_rcv(Xa, ya, name, a)
    r2_te, n_te = math.nan, 0
    if test is not None:
        Xt, yt = check_xy(*test, "test")
        if Xt.shape[1] != Xa.shape[1]:
            raise DataError(f"test has {Xt.shape[1]} features, X has {Xa.shape[1]}")
        r2_te, n_te = r2_score(yt, rcv.predict(Xt)), int(yt.size)
    return alignment_of(
        rcv,
        max_dims,
        r2_train=r2_score(ya, rcv.predict(Xa)),
        r2_test=r2_te,
        n_train=int(ya.size),
        n_test=n_te,
        meta=meta,
    )


def alignment_on_data(
    model: Any,
    data: Any,
    layer: str,
    measure: str = "scale_ratio_sqrt",
    train_class: str | None = None,
    regressors: Sequence[str] = ("ols", "lasso"),
    alpha: float = 0.001,
    max_dims: int = 200,
    *,
    test_fraction: float = 0.5,
    seed: int = 0,
    weights: str = "imagenet",
    batch_size: int = 32,
    pooling: str = "gap",
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
    command: str = "",
) -> list[AlignmentResult]:
    """Fig. 3 from a model and images: alignment of the plain and the Lasso RCV of one class.

    The class is split once (``seed``, ``test_fraction``; the paper's 220 / 220 images); each
    regressor is fitted on the training side and scored on the held-out side.

    Parameters
    ----------
    model : str or Model
    data : ImageSet
    layer, measure : str
    train_class : str, optional
        Default: the first class (sorted).
    regressors : sequence of str
        Fits to compare (the same split for all).
    alpha : float
        Penalty for ``lasso`` (and ``ridge``).

    Other parameters are those of :func:`alignment` and
    :func:`rcvlab.analyses.sparsity.features_by_class`.

    Returns
    -------
    list of AlignmentResult
        One per regressor, in order.
    """
    by_class, info = features_by_class(
        model,
        data,
        layer,
        measure,
        None if train_class is None else [train_class],
        weights=weights,
        seed=seed,
        batch_size=batch_size,
        pooling=pooling,
        cache_dir=cache_dir,
        device=device,
        progress=progress,
    )
    train = next(iter(by_class)) if train_class is None else str(train_class)
    X, y = check_xy(*by_class[train], f"class {train!r}")
    ((tr, te),) = repeated_splits(y.size, 1, test_fraction, seed)
    meta = {**info, "train_class": train, "seed": seed, "command": command}
    return [
        alignment(X[tr], y[tr], r, alpha, max_dims, test=(X[te], y[te]), meta=meta)
        for r in regressors
    ]


def alignment_frame(results: Sequence[AlignmentResult]) -> pd.DataFrame:
    """The curves of several results stacked (``alignment.csv``)."""
    return pd.concat([r.to_frame() for r in results], ignore_index=True)


__all__ = [
    "AlignmentResult",
    "alignment",
    "alignment_frame",
    "alignment_of",
    "alignment_on_data",
    "cumulative_norm",
]
