"""Alignment of an RCV with individual feature maps (paper 001, §4.1, Fig. 3).

Is the measure carried by a few feature maps (dimensions) or spread over many? The RCV
``v`` (coefficients in the **standardised** feature space, as fitted by
:func:`rcvlab.probe.fit.fit_rcv`) is normalised, ``v̂ = v / |v|``, its components are sorted
by decreasing ``|v̂_i|``, and the curve

``curve[d' - 1] = |v̂_(1..d')| = sqrt(sum of the d' largest v̂_i²)``,  ``d' = 1 … max_dims``

is reported. ``curve[0] = max |v̂_i|`` is the largest alignment with a single feature map;
``curve[d' - 1] = 1`` means the first ``d'`` feature maps hold the whole direction (for a
Lasso RCV with ``k`` non-zero coefficients that happens at ``d' = k``).

One call fits several regressors on the same rows (the paper compares the plain and the
Lasso RCV) and returns one :class:`AlignmentResult` holding an :class:`AlignmentCurve` per
regressor. :func:`alignment` starts from a model and images; :func:`alignment_from_arrays`
from features.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rcvlab.analyses.common import (
    ExtractOptions,
    FloatArray,
    analysis_meta,
    check_classes,
    check_max_dims,
    check_seed,
    check_test_fraction,
    check_xy,
    class_features,
    frozen_array,
)
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.probe.fit import RCV, check_regressor, fit_rcv
from rcvlab.probe.splits import repeated_splits
from rcvlab.probe.stats import r2_score
from rcvlab.result import Result, jsonable, nan_if_none

if TYPE_CHECKING:
    from typing_extensions import Unpack

LEVELS = (0.5, 0.9, 0.99, 1.0)
"""Shares of the norm whose ``dims_for`` the summary reports."""


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
class AlignmentCurve:
    """How much of one RCV's direction its largest components hold.

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
        """Scalars: counts, R², components needed for 50/90/99/100 % of the norm."""
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
        for lv in LEVELS:
            out[f"dims_for_{lv:g}"] = self.dims_for(lv) if self.defined else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (the summary, the curve and the direction)."""
        return jsonable(
            {
                **self.summary(),
                "max_dims": self.max_dims,
                "padded": self.padded,
                "curve": self.curve,
                "direction": self.direction,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlignmentCurve:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            direction=frozen_array(d["direction"]),
            regressor=str(d["regressor"]),
            alpha=None if d.get("alpha") is None else float(d["alpha"]),
            max_dims=int(d["max_dims"]),
            n_nonzero=int(d["n_nonzero"]),
            r2_train=nan_if_none(d.get("r2_train")),
            r2_test=nan_if_none(d.get("r2_test")),
            n_train=int(d.get("n_train", 0)),
            n_test=int(d.get("n_test", 0)),
        )


@dataclass(frozen=True, eq=False)
class AlignmentResult(Result):
    """The alignment curves of RCVs fitted on the same rows (paper 001, Fig. 3).

    Index it by position or regressor name (``result["lasso"]``) or iterate over it to get
    the :class:`AlignmentCurve` of each regressor.

    :meth:`to_frame` stacks the curves: one row per regressor and ``d'``, columns
    ``regressor`` (``ols``, ``ridge`` or ``lasso``), ``alpha`` (NaN for ``ols``), ``label``
    (e.g. ``lasso (alpha=0.001)``), ``d`` (``d'``, 1 … max_dims) and ``cumulative_norm``
    (``|v̂_(1..d')|``).

    Attributes
    ----------
    curves : tuple of AlignmentCurve
        One per regressor, in the order asked for.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`: command, versions, seed, data
        fingerprint) and the model, layer, measure, class, split.
    """

    kind: ClassVar[str] = "alignment"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "regressor",
        "alpha",
        "label",
        "d",
        "cumulative_norm",
    )

    curves: tuple[AlignmentCurve, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.curves:
            raise DataError("an AlignmentResult needs at least one curve")
        names = [c.regressor for c in self.curves]
        if len(set(names)) != len(names):
            raise DataError(f"an AlignmentResult holds one curve per regressor, got {names}")

    def __len__(self) -> int:
        return len(self.curves)

    def __iter__(self) -> Iterator[AlignmentCurve]:
        return iter(self.curves)

    def __getitem__(self, key: int | str) -> AlignmentCurve:
        if isinstance(key, str):
            for c in self.curves:
                if c.regressor == key.strip().lower():
                    return c
            raise UnknownNameError(
                f"no {key!r} curve in this result; it has {', '.join(self.regressors)}"
            )
        return self.curves[key]

    @property
    def regressors(self) -> tuple[str, ...]:
        """The regressor of every curve, in order."""
        return tuple(c.regressor for c in self.curves)

    @property
    def max_dims(self) -> int:
        """Length of the curves."""
        return max(c.max_dims for c in self.curves)

    def dims_for(self, level: float = 0.9) -> dict[str, int | None]:
        """:meth:`AlignmentCurve.dims_for` of every curve (None for a zero RCV), by regressor."""
        return {c.regressor: c.dims_for(level) if c.defined else None for c in self.curves}

    def to_frame(self) -> pd.DataFrame:
        """The curves stacked: ``regressor, alpha, label, d, cumulative_norm`` (``alignment.csv``).

        One row per regressor and ``d' = 1 … max_dims``; ``alpha`` is NaN for ``ols``.
        """
        return pd.concat([c.to_frame() for c in self.curves], ignore_index=True)

    def summary_frame(self) -> pd.DataFrame:
        """One row per regressor: :meth:`AlignmentCurve.summary`."""
        return pd.DataFrame([c.summary() for c in self.curves])

    def to_markdown(self) -> str:
        """``summary.md``: non-zero coefficients, R², components for 50/90/99/100 % of the norm."""
        m = self.meta
        first = self.curves[0]
        bits = ", ".join(f"{k} {m[k]}" for k in ("model", "layer", "measure") if m.get(k))
        lines = [
            "# Alignment of the RCV with individual feature maps",
            "",
            (f"{bits}; " if bits else "")
            + (f"class {m['train_class']}; " if m.get("train_class") else "")
            + f"{first.n_train} training / {first.n_test} test images. The curve is the "
            "norm of the d' largest components of the unit RCV (standardised feature space); "
            "d' for x % is the fewest components whose norm reaches x %.",
            "",
            "| RCV | non-zero | train R² | test R² | largest component | d' for 50 % | 90 % "
            "| 99 % | 100 % |",
            "|---|---|---|---|---|---|---|---|---|",
        ]

        def cell(v: object) -> str:
            return "–" if v is None else str(v)

        for c in self.curves:
            s = c.summary()
            lines.append(
                f"| {c.label} | {c.n_nonzero} of {c.dim} | {c.r2_train:.3f} | "
                f"{c.r2_test:.3f} | {s['max_component']:.3f} | {cell(s['dims_for_0.5'])} | "
                f"{cell(s['dims_for_0.9'])} | {cell(s['dims_for_0.99'])} | "
                f"{cell(s['dims_for_1'])} |"
            )
        lines += [
            "",
            "Published (paper 001, InceptionV3 mixed8, albatross): Lasso alpha = 0.001 keeps 40 "
            "of 1280 coefficients (R² 0.839); the plain fit R² 0.874.",
            "",
        ]
        if m.get("command"):
            lines += [f"Command: `{m['command']}`", ""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: ``{"curves": [...], "meta": {...}}``."""
        return jsonable({"curves": [c.to_dict() for c in self.curves], "meta": dict(self.meta)})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlignmentResult:
        """Rebuild from :meth:`to_dict`; also reads the ``{"results": [...]}`` file of
        rcvlab's earlier ``alignment`` command (one dict per regressor, each with meta)."""
        if "curves" in d:
            return cls(
                curves=tuple(AlignmentCurve.from_dict(c) for c in d["curves"]),
                meta=dict(d.get("meta", {})),
            )
        items = d["results"] if "results" in d else [d]
        return cls(
            curves=tuple(AlignmentCurve.from_dict(c) for c in items),
            meta=dict(items[0].get("meta", {})),
        )


def alignment_of(
    rcv: RCV,
    max_dims: int = 200,
    *,
    r2_train: float = math.nan,
    r2_test: float = math.nan,
    n_train: int = 0,
    n_test: int = 0,
) -> AlignmentCurve:
    """The alignment curve of an already fitted :class:`~rcvlab.probe.fit.RCV`."""
    return AlignmentCurve(
        direction=frozen_array(rcv.direction),
        regressor=rcv.regressor,
        alpha=rcv.alpha,
        max_dims=check_max_dims(max_dims),
        n_nonzero=int(np.count_nonzero(rcv.coef)),
        r2_train=float(r2_train),
        r2_test=float(r2_test),
        n_train=int(n_train),
        n_test=int(n_test),
    )


def check_regressors(
    regressors: Sequence[str] | str, alpha: float | None
) -> list[tuple[str, float | None]]:
    """Validate the regressors of one call and the alpha they share.

    ``alpha`` is the penalty of ``lasso`` (required, > 0) and of ``ridge`` (None: chosen by
    leave-one-out); ``ols`` takes none.

    Returns
    -------
    list of (name, alpha)
        Normalised names, each with the alpha it will be fitted with.
    """
    names = [regressors] if isinstance(regressors, str) else list(regressors)
    if not names:
        raise RcvlabError("regressors is empty; name at least one of ols, ridge, lasso")
    out = []
    for r in names:
        name = str(r).strip().lower()
        out.append(check_regressor(name, None if name == "ols" else alpha))
    seen = [n for n, _ in out]
    if len(set(seen)) != len(seen):
        raise RcvlabError(f"regressors are repeated: {seen}; name each once")
    return out


def alignment_from_arrays(
    X: ArrayLike,
    y: ArrayLike,
    *,
    regressors: Sequence[str] | str = ("ols", "lasso"),
    alpha: float | None = 0.001,
    max_dims: int = 200,
    test: tuple[ArrayLike, ArrayLike] | None = None,
    seed: int | None = None,
    meta: Mapping[str, Any] | None = None,
    command: str = "",
) -> AlignmentResult:
    """Fit RCVs on the same rows and measure how many feature maps hold each direction.

    Every RCV is fitted with :func:`rcvlab.probe.fit.fit_rcv` on all rows of ``X`` (pass the
    training split), so its direction lives in the feature space standardised with those
    rows' statistics.

    Parameters
    ----------
    X : array_like of shape (n, d)
        Raw features.
    y : array_like of shape (n,)
        The measure.
    regressors : sequence of {"ols", "ridge", "lasso"}
        ``ols`` is the paper's non-regularised regression ("Non-reg." in Fig. 3); the
        default compares it with the Lasso, as the paper.
    alpha : float or None
        Penalty of ``lasso`` (scikit-learn convention; the paper's 0.001) and ``ridge``
        (None: leave-one-out choice); not used by ``ols`` (stored as None).
    max_dims : int
        Length of the curves (the paper's 200), >= 1. When ``d < max_dims`` a curve is
        padded with its last value, 1.0 (see :attr:`AlignmentCurve.padded`).
    test : (X_test, y_test), optional
        Held-out rows for the reported test R².
    seed : int, optional
        Seed of the split the rows come from, recorded in ``meta``.
    meta : mapping, optional
        More provenance stored in ``result.meta`` (model, layer, class ...).
    command : str
        The command line or call, recorded in ``meta``.

    Returns
    -------
    AlignmentResult
        One :class:`AlignmentCurve` per regressor. A Lasso that keeps no coefficient gives a
        zero direction and an all-NaN curve rather than an error.
    """
    regs = check_regressors(regressors, alpha)
    max_dims = check_max_dims(max_dims)
    Xa, ya = check_xy(X, y, "X")
    Xt = yt = None
    if test is not None:
        Xt, yt = check_xy(*test, "test")
        if Xt.shape[1] != Xa.shape[1]:
            raise DataError(f"test has {Xt.shape[1]} features, X has {Xa.shape[1]}")
    curves = []
    for name, a in regs:
        rcv = fit_rcv(Xa, ya, name, a)
        r2_te, n_te = math.nan, 0
        if Xt is not None and yt is not None:
            r2_te, n_te = r2_score(yt, rcv.predict(Xt)), int(yt.size)
        curves.append(
            alignment_of(
                rcv,
                max_dims,
                r2_train=r2_score(ya, rcv.predict(Xa)),
                r2_test=r2_te,
                n_train=int(ya.size),
                n_test=n_te,
            )
        )
    return AlignmentResult(curves=tuple(curves), meta=analysis_meta(command, seed, meta))


def alignment(
    model: Any,
    data: Any,
    *,
    layer: str,
    measure: str = "scale_ratio",
    train_class: str | None = None,
    regressors: Sequence[str] | str = ("ols", "lasso"),
    alpha: float | None = 0.001,
    max_dims: int = 200,
    test_fraction: float = 0.5,
    seed: int = 0,
    command: str = "",
    **extract: Unpack[ExtractOptions],
) -> AlignmentResult:
    """Fig. 3 from a model and images: alignment of the plain and the Lasso RCV of one class.

    The class is split once (``seed``, ``test_fraction``; the paper's 220 / 220 images); each
    regressor is fitted on the training side and scored on the held-out side. Every option
    is checked before the model runs.

    Parameters
    ----------
    model : str or Model
    data : ImageSet
        Images with classes and the measure.
    layer : str
    measure : str
        Name of the measure (paper 001: ``"scale_ratio_sqrt"``).
    train_class : str, optional
        Default: the first class (sorted).
    regressors, alpha, max_dims
        As :func:`alignment_from_arrays` (the same split for all regressors).
    test_fraction : float
        Held-out share of the class, in (0, 1).
    seed : int
        Seed of the split (and of a model given by name).
    command : str
        The command line, stored in ``meta``.
    **extract
        How the layer is extracted: :class:`~rcvlab.analyses.common.ExtractOptions`.

    Returns
    -------
    AlignmentResult
        One curve per regressor, in order.
    """

    def check_options() -> None:
        check_regressors(regressors, alpha)
        check_max_dims(max_dims)
        check_test_fraction(test_fraction)

    by_class, info = class_features(
        model,
        data,
        layer=layer,
        measure=measure,
        seed=seed,
        classes=lambda d: check_classes(d, None if train_class is None else [train_class])[:1],
        check_options=check_options,
        **extract,
    )
    (train,) = by_class
    test_fraction, seed = check_test_fraction(test_fraction), check_seed(seed)
    X, y = check_xy(*by_class[train], f"class {train!r}")
    ((tr, te),) = repeated_splits(y.size, 1, test_fraction, seed)
    return alignment_from_arrays(
        X[tr],
        y[tr],
        regressors=regressors,
        alpha=alpha,
        max_dims=max_dims,
        test=(X[te], y[te]),
        seed=seed,
        meta={**info, "train_class": train, "test_fraction": test_fraction},
        command=command,
    )


__all__ = [
    "AlignmentCurve",
    "AlignmentResult",
    "alignment",
    "alignment_from_arrays",
    "alignment_of",
    "check_regressors",
    "cumulative_norm",
]
