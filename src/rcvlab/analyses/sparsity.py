"""Sparsity of a concept's encoding: the Lasso path of RCVs (paper 001, §4.2, §5.1, Figs 4-5).

How many feature maps does a layer need to carry the measure (object scale)? For every
repetition, the training class is split at random (:func:`rcvlab.probe.splits.repeated_splits`),
the features are standardised with the **training split's** statistics only (the same
standardisation and constant-column rule as :func:`rcvlab.probe.fit.fit_rcv`), and RCVs are
fitted for every alpha of a grid:

* ``alpha = 0`` is the plain fit (``plain="ols"``: minimum-norm least squares, as the paper's
  "non-regularised" regression; or ``"ridge"`` with its leave-one-out alpha);
* ``alpha > 0`` is scikit-learn's Lasso objective ``(1/(2n)) ||y - Zw - b||² + alpha ||w||_1``
  on the standardised features ``Z`` with an intercept, solved exactly for all alphas at once
  by following the piecewise-linear solution path (the homotopy, or LARS-Lasso, algorithm:
  :func:`rcvlab.probe.kernels.lasso_homotopy`) on the centred measure. Every solution is
  then held to scikit-learn's own stopping rule with the tolerance of
  :func:`~rcvlab.probe.fit.fit_rcv` (duality gap ``<= tol * ||y_c||²``) and, should it fail
  (or the path be degenerate, as with duplicated columns), computed by scikit-learn's
  coordinate descent with fit_rcv's tolerance and iteration limit
  (:func:`rcvlab.probe.kernels.lasso_path_certified`). Every solution so meets the stopping
  rule a ``Lasso(alpha)`` refit meets, and is typically equal to the exact minimiser to
  ~1e-10 (scikit-learn's warm-started :func:`sklearn.linear_model.lasso_path`: ~1e-3 at its
  default tolerance), at about its speed (1.3x on the development VM, ``bench/sparsity.py``).

Each fit is scored by its number of non-zero coefficients (exact zeros), its training R²,
and its held-out R² (:func:`rcvlab.probe.stats.r2_score`) on the held-out side of the training
class (``"same"``) and on every other class given in ``test_sets`` (the whole class,
standardised with the training split's statistics).

:func:`sparsity` starts from a model and images; :func:`sparsity_from_arrays` from features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from rcvlab.analyses.common import (
    ExtractOptions,
    FloatArray,
    analysis_meta,
    array_from_json,
    check_classes,
    check_plain,
    check_reps,
    check_seed,
    check_test_fraction,
    check_xy,
    class_features,
    frozen_array,
)
from rcvlab.errors import DataError, RcvlabError
from rcvlab.probe import fit as fit_module
from rcvlab.probe.fit import RCV, Design, make_rcv
from rcvlab.probe.kernels import lasso_path_certified
from rcvlab.probe.splits import repeated_splits
from rcvlab.probe.stats import mean_ci95, r2_score
from rcvlab.result import Result, jsonable

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_ALPHAS: NDArray[np.float64] = np.linspace(0.0, 0.01, 21)
"""The paper's grid: alpha from 0 (plain fit) to 0.01 in 21 steps."""

SAME = "same"
"""Name of the held-out side of the training class among the test sets."""


def default_table_alphas(alphas: Sequence[float]) -> list[float]:
    """Alphas of Table 1: the plain fit (0) when in the grid, and the non-zero alpha of the
    grid closest (in ratio) to the paper's 0.001."""
    grid = np.asarray(alphas, dtype=float)
    out = [0.0] if np.isclose(grid, 0.0).any() else []
    nonzero = grid[~np.isclose(grid, 0.0)]
    if nonzero.size:
        out.append(float(nonzero[np.argmin(np.abs(np.log(nonzero / 0.001)))]))
    return out


def check_alphas(alphas: ArrayLike) -> tuple[float, ...]:
    """Validate an alpha grid: finite, >= 0, distinct, at least one value."""
    try:
        a = np.asarray(alphas, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise RcvlabError(f"alphas must be numbers >= 0, got {alphas!r}") from None
    if a.size == 0:
        raise RcvlabError("alphas is empty; give at least one value (0 = plain fit)")
    bad = a[~np.isfinite(a) | (a < 0)]
    if bad.size:
        raise RcvlabError(
            f"alpha must be a finite number >= 0, got {bad[0]!r}; Lasso's penalty is "
            "non-negative (0 = the plain fit)"
        )
    if np.unique(a).size != a.size:
        raise RcvlabError(f"alphas must be distinct, got {a.tolist()}")
    return tuple(float(x) for x in a)


def check_sparsity_options(
    alphas: ArrayLike, plain: str, reps: Any, seed: Any, test_fraction: Any
) -> tuple[tuple[float, ...], str, int, int, float]:
    """The options of :func:`sparsity` and :func:`sparsity_from_arrays`, checked and
    normalised: ``(alphas, plain, reps, seed, test_fraction)``."""
    return (
        check_alphas(alphas),
        check_plain(plain),
        check_reps(reps),
        check_seed(seed),
        check_test_fraction(test_fraction),
    )


# -- the path -----------------------------------------------------------------------------


def _plain_fit(design: Design, y: FloatArray, plain: str) -> tuple[FloatArray, float]:
    if plain == "ols":
        c, b = design.ols(y)
    else:
        a = float(design.ridge_loo_alpha(y)[0])
        c, b = design.ridge(y, a)
    return c[:, 0], float(b[0])


def _path(
    design: Design, y: FloatArray, alphas: Sequence[float], plain: str
) -> tuple[FloatArray, FloatArray]:
    """Coefficients (k, m) on the kept standardised columns and intercepts (m,), alphas' order."""
    m = len(alphas)
    C = np.zeros((design.k, m))
    b = np.full(m, float(y.mean()))
    a = np.asarray(alphas, dtype=np.float64)
    pos = np.flatnonzero(a > 0)
    if design.k and pos.size:
        Z = design.Z
        yc = y - y.mean()
        # Exact solutions by homotopy, each certified by fit_rcv's tolerance (read at call
        # time, so that both follow any change of rcvlab.probe.fit.LASSO_TOL / LASSO_MAX_ITER)
        # and computed by coordinate descent where the certificate fails.
        coefs = lasso_path_certified(
            Z, yc, a[pos], tol=fit_module.LASSO_TOL, max_iter=fit_module.LASSO_MAX_ITER
        )
        C[:, pos] = coefs
        # As scikit-learn's Lasso: intercept = ybar - mean(Z) @ w (mean(Z) is ~1e-17).
        b[pos] = y.mean() - Z.mean(axis=0) @ coefs
    for j in np.flatnonzero(a == 0):
        C[:, j], b[j] = _plain_fit(design, y, plain)
    return C, b


def rcv_path(
    X_train: ArrayLike,
    y_train: ArrayLike,
    alphas: ArrayLike = DEFAULT_ALPHAS,
    plain: str = "ols",
) -> list[RCV]:
    """RCVs for every alpha of a grid from one Lasso path.

    The result equals ``fit_rcv(X_train, y_train, "lasso", alpha)`` for every ``alpha > 0``
    (up to the solver's tolerance) and ``fit_rcv(X_train, y_train, plain)`` for ``alpha = 0``,
    but the Lasso fits share one standardisation and one exact homotopy path.

    Parameters
    ----------
    X_train : array_like of shape (n, d)
        Raw training features.
    y_train : array_like of shape (n,)
    alphas : array_like
        Penalties >= 0 in any order (0 = the plain fit).
    plain : {"ols", "ridge"}
        The fit used for ``alpha = 0``.

    Returns
    -------
    list of RCV
        In the order of ``alphas``; ``regressor`` is ``"lasso"`` or ``plain``.
    """
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if X.ndim != 2 or y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(f"X_train {X.shape} and y_train {y.shape} do not match")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise DataError("X_train and y_train must be finite (no NaN or infinite values)")
    a = check_alphas(alphas)
    plain = check_plain(plain)
    design = Design(X)
    C, b = _path(design, y, a, plain)
    return [
        make_rcv(
            C[:, j],
            float(b[j]),
            design.mean_,
            design.scale_,
            design.keep,
            "lasso" if aj > 0 else plain,
            aj if aj > 0 else None,
        )
        for j, aj in enumerate(a)
    ]


# -- the result ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SparsityResult(Result):
    """Non-zero counts and R² along a Lasso path, per repetition and test set.

    :meth:`to_frame` has one row per (test set, alpha) with the columns ``test_set, alpha,
    regressor, n_nonzero_mean, n_nonzero_std, n_nonzero_ci95_low, n_nonzero_ci95_high,
    r2_train_mean, r2_train_ci95_low, r2_train_ci95_high, r2_test_mean, r2_test_std,
    r2_test_ci95_low, r2_test_ci95_high, n_train, n_test, reps`` (see there).

    Attributes
    ----------
    alphas : tuple of float
        The grid as given (0 = the plain fit).
    test_sets : tuple of str
        ``"same"`` (held-out side of the training class) first, then the other classes.
    n_nonzero : ndarray of int, shape (n_alphas, reps)
        Non-zero coefficients of every fit (exact zeros).
    r2_train : ndarray of shape (n_alphas, reps)
        R² on the training split.
    r2_test : ndarray of shape (n_test_sets, n_alphas, reps)
        Held-out R² per test set.
    selection_counts : ndarray of int, shape (n_alphas, d)
        In how many repetitions each feature had a non-zero coefficient.
    n_train : int
        Training rows per repetition.
    n_test : dict of str to int
        Test rows per test set (``"same"``: the held-out split; others: the whole class).
    dim : int
        Feature dimension ``d``.
    n_constant : int
        Most columns dropped as constant on a training split (over repetitions).
    reps, seed, test_fraction, plain
        Options as given.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`: command, versions, seed, data
        fingerprint) and the model, layer, measure, training and test classes.
    """

    kind: ClassVar[str] = "sparsity"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "test_set",
        "alpha",
        "regressor",
        "n_nonzero_mean",
        "n_nonzero_std",
        "n_nonzero_ci95_low",
        "n_nonzero_ci95_high",
        "r2_train_mean",
        "r2_train_ci95_low",
        "r2_train_ci95_high",
        "r2_test_mean",
        "r2_test_std",
        "r2_test_ci95_low",
        "r2_test_ci95_high",
        "n_train",
        "n_test",
        "reps",
    )

    alphas: tuple[float, ...]
    test_sets: tuple[str, ...]
    n_nonzero: NDArray[np.int64]
    r2_train: FloatArray
    r2_test: FloatArray
    selection_counts: NDArray[np.int64]
    n_train: int
    n_test: dict[str, int]
    dim: int
    n_constant: int = 0
    reps: int = 10
    seed: int = 0
    test_fraction: float = 0.5
    plain: str = "ols"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, t = len(self.alphas), len(self.test_sets)
        shapes = {
            "n_nonzero": (self.n_nonzero.shape, (m, self.reps)),
            "r2_train": (self.r2_train.shape, (m, self.reps)),
            "r2_test": (self.r2_test.shape, (t, m, self.reps)),
            "selection_counts": (self.selection_counts.shape, (m, self.dim)),
        }
        for name, (got, want) in shapes.items():
            if tuple(got) != want:
                raise DataError(f"SparsityResult.{name} has shape {tuple(got)}, expected {want}")

    def regressor(self, alpha: float) -> str:
        """``"lasso"`` for alpha > 0, else the plain regressor."""
        return "lasso" if alpha > 0 else self.plain

    def _ci(self, values: ArrayLike) -> tuple[float, float]:
        # Nadeau-Bengio: repetitions share training rows (and the same-class test rows).
        n_test_same = self.n_test.get(SAME, 0)
        if n_test_same > 0 and self.n_train > 0:
            return mean_ci95(values, self.n_train, n_test_same)
        return mean_ci95(values)

    def to_frame(self) -> pd.DataFrame:
        """One row per (test set, alpha) with means, standard deviations and 95 % intervals.

        Columns: ``test_set, alpha, regressor, n_nonzero_mean, n_nonzero_std,
        n_nonzero_ci95_low, n_nonzero_ci95_high, r2_train_mean, r2_train_ci95_low,
        r2_train_ci95_high, r2_test_mean, r2_test_std, r2_test_ci95_low, r2_test_ci95_high,
        n_train, n_test, reps``. Intervals are Student-t with the Nadeau-Bengio correction
        for the training class's split sizes (:func:`rcvlab.probe.stats.mean_ci95`); the
        repetitions of an other-class test set share its rows and overlapping training
        splits, so the same correction is applied to them. Standard deviations use
        ``ddof=1``.
        """
        rows = []
        for s, name in enumerate(self.test_sets):
            for j, a in enumerate(self.alphas):
                nz = self.n_nonzero[j].astype(float)
                tr = self.r2_train[j]
                te = self.r2_test[s, j]
                nz_ci, tr_ci, te_ci = self._ci(nz), self._ci(tr), self._ci(te)
                rows.append(
                    {
                        "test_set": name,
                        "alpha": a,
                        "regressor": self.regressor(a),
                        "n_nonzero_mean": float(nz.mean()),
                        "n_nonzero_std": _std(nz),
                        "n_nonzero_ci95_low": nz_ci[0],
                        "n_nonzero_ci95_high": nz_ci[1],
                        "r2_train_mean": float(tr.mean()),
                        "r2_train_ci95_low": tr_ci[0],
                        "r2_train_ci95_high": tr_ci[1],
                        "r2_test_mean": float(te.mean()),
                        "r2_test_std": _std(te),
                        "r2_test_ci95_low": te_ci[0],
                        "r2_test_ci95_high": te_ci[1],
                        "n_train": self.n_train,
                        "n_test": self.n_test[name],
                        "reps": self.reps,
                    }
                )
        return pd.DataFrame(rows)

    def runs_frame(self) -> pd.DataFrame:
        """One row per (test set, alpha, repetition): ``n_nonzero, r2_train, r2_test``."""
        rows = [
            {
                "test_set": name,
                "alpha": a,
                "rep": r,
                "n_nonzero": int(self.n_nonzero[j, r]),
                "r2_train": float(self.r2_train[j, r]),
                "r2_test": float(self.r2_test[s, j, r]),
            }
            for s, name in enumerate(self.test_sets)
            for j, a in enumerate(self.alphas)
            for r in range(self.n_nonzero.shape[1])
        ]
        return pd.DataFrame(rows)

    def _alpha_index(self, alpha: float) -> int:
        a = np.asarray(self.alphas)
        hit = np.flatnonzero(np.isclose(a, float(alpha), rtol=1e-9, atol=1e-15))
        if hit.size == 0:
            raise RcvlabError(
                f"alpha {alpha!r} is not in this result's grid; choose one of "
                f"{', '.join(f'{x:g}' for x in self.alphas)}"
            )
        return int(hit[0])

    def cross_class_table(self, alphas: Sequence[float] | None = None) -> pd.DataFrame:
        """The paper's Table 1: test R² per test set for chosen alphas (mean, std over reps).

        Parameters
        ----------
        alphas : sequence of float, optional
            Alphas of the grid to report (0 = the plain fit). Default: the plain fit and the
            paper's Lasso alpha 0.001, or the grid's non-zero alpha closest to it
            (:func:`default_table_alphas`).

        Returns
        -------
        pandas.DataFrame
            Columns ``test_set, alpha, regressor, n_nonzero_mean, r2_mean, r2_std,
            r2_ci95_low, r2_ci95_high, n_test``; one row per (test set, alpha).
        """
        if alphas is None:
            alphas = default_table_alphas(self.alphas)
        idx = [self._alpha_index(a) for a in alphas]
        f = self.to_frame()
        rows = []
        for name in self.test_sets:
            for j in idx:
                a = self.alphas[j]
                r = f[(f.test_set == name) & (f.alpha == a)].iloc[0]
                rows.append(
                    {
                        "test_set": name,
                        "alpha": a,
                        "regressor": self.regressor(a),
                        "n_nonzero_mean": r.n_nonzero_mean,
                        "r2_mean": r.r2_test_mean,
                        "r2_std": r.r2_test_std,
                        "r2_ci95_low": r.r2_test_ci95_low,
                        "r2_ci95_high": r.r2_test_ci95_high,
                        "n_test": r.n_test,
                    }
                )
        return pd.DataFrame(rows)

    def to_markdown(self, alphas: Sequence[float] | None = None) -> str:
        """``summary.md``: Table 1 (for ``alphas``, default :func:`default_table_alphas`) and
        the path at a glance."""
        t = self.cross_class_table(alphas)
        m = self.meta
        what = ", ".join(f"{k} {m[k]}" for k in ("model", "layer", "measure") if m.get(k))
        train = m.get("train_class", "the training class")
        lines = [
            "# Sparsity of the encoding (Lasso path)",
            "",
            f"RCVs trained on {train}" + (f" ({what})" if what else "") + f": {self.n_train} "
            f"training images per repetition, {self.reps} repetitions (seed {self.seed}), "
            f"d = {self.dim}; plain fit = {self.plain}. Test sets: "
            + ", ".join(f"{s} ({self.n_test[s]} images)" for s in self.test_sets)
            + ".",
            "",
            "## Table 1: test R² within and across classes (mean ± std over repetitions)",
            "",
            "| test set | alpha | regressor | non-zero | R² mean ± std | 95 % CI |",
            "|---|---|---|---|---|---|",
        ]
        for r in t.itertuples():
            lines.append(
                f"| {r.test_set} | {r.alpha:g} | {r.regressor} | {r.n_nonzero_mean:.1f} | "
                f"{r.r2_mean:.3f} ± {r.r2_std:.3f} | [{r.r2_ci95_low:.3f}, "
                f"{r.r2_ci95_high:.3f}] |"
            )
        lines += [
            "",
            "## The path",
            "",
            "| alpha | non-zero | train R² | " + " | ".join(self.test_sets) + " |",
            "|---|---|---|" + "---|" * len(self.test_sets),
        ]
        for j, a in enumerate(self.alphas):
            cells = " | ".join(
                f"{self.r2_test[s, j].mean():.3f}" for s in range(len(self.test_sets))
            )
            lines.append(
                f"| {a:g} | {self.n_nonzero[j].mean():.1f} | {self.r2_train[j].mean():.3f} "
                f"| {cells} |"
            )
        lines += [
            "",
            "Intervals: Student t with the Nadeau-Bengio correction for the training class's "
            "split sizes; an other-class test set is the whole class, the same in every "
            "repetition.",
            "",
        ]
        if m.get("command"):
            lines += [f"Command: `{m['command']}`", ""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (arrays as nested lists, NaN as None)."""
        return jsonable(
            {
                "alphas": list(self.alphas),
                "test_sets": list(self.test_sets),
                "n_nonzero": self.n_nonzero,
                "r2_train": self.r2_train,
                "r2_test": self.r2_test,
                "selection_counts": self.selection_counts,
                "n_train": self.n_train,
                "n_test": dict(self.n_test),
                "dim": self.dim,
                "n_constant": self.n_constant,
                "reps": self.reps,
                "seed": self.seed,
                "test_fraction": self.test_fraction,
                "plain": self.plain,
                "meta": dict(self.meta),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SparsityResult:
        """Rebuild from :meth:`to_dict` (also reads ``sparsity.json`` of earlier rcvlab)."""
        return cls(
            alphas=tuple(float(a) for a in d["alphas"]),
            test_sets=tuple(str(s) for s in d["test_sets"]),
            n_nonzero=frozen_array(d["n_nonzero"], np.int64),
            r2_train=array_from_json(d["r2_train"]),
            r2_test=array_from_json(d["r2_test"]),
            selection_counts=frozen_array(d["selection_counts"], np.int64),
            n_train=int(d["n_train"]),
            n_test={str(k): int(v) for k, v in d["n_test"].items()},
            dim=int(d["dim"]),
            n_constant=int(d.get("n_constant", 0)),
            reps=int(d["reps"]),
            seed=int(d["seed"]),
            test_fraction=float(d["test_fraction"]),
            plain=str(d["plain"]),
            meta=dict(d.get("meta", {})),
        )


def _std(v: NDArray[Any]) -> float:
    return float(np.std(v, ddof=1)) if v.size > 1 else math.nan


# -- the analysis -------------------------------------------------------------------------


def sparsity_from_arrays(
    X: ArrayLike,
    y: ArrayLike,
    *,
    alphas: ArrayLike = DEFAULT_ALPHAS,
    reps: int = 10,
    seed: int = 0,
    test_fraction: float = 0.5,
    test_sets: Mapping[str, tuple[ArrayLike, ArrayLike]] | None = None,
    plain: str = "ols",
    meta: Mapping[str, Any] | None = None,
    command: str = "",
) -> SparsityResult:
    """Non-zero coefficients versus R² along the Lasso path, within and across classes.

    For each of ``reps`` seeded random splits of the training class, the training side is
    standardised with its own statistics only, RCVs are fitted for every alpha (one exact
    Lasso path, :func:`rcvlab.probe.kernels.lasso_path_certified`, for the alphas > 0; the
    ``plain`` fit for alpha 0) and every fit is scored on the held-out side (``"same"``) and
    on each class of
    ``test_sets`` (all its rows, standardised with the **training split's** mean and
    standard deviation, never its own).

    Parameters
    ----------
    X : array_like of shape (n, d)
        Raw features of the training class (one row per image).
    y : array_like of shape (n,)
        The measure (e.g. ``scale_ratio_sqrt``, as paper 001).
    alphas : array_like
        Lasso penalties >= 0 in scikit-learn's convention
        ``(1/(2n)) ||y - Zw - b||² + alpha ||w||_1``; 0 is the plain fit. Default: 0 to 0.01
        in 21 steps, as the paper.
    reps : int
        Repetitions (random splits), >= 1.
    seed : int
        Seed of the splits (:func:`rcvlab.probe.splits.repeated_splits`).
    test_fraction : float
        Held-out share of the training class, in (0, 1) (0.5: the paper's 220 / 220 images).
    test_sets : mapping of str to (X, y), optional
        Other classes to evaluate on, e.g. ``{"kite": (X2, y2)}``; same ``d``.
    plain : {"ols", "ridge"}
        The alpha-0 fit: minimum-norm least squares (the paper's non-regularised
        regression) or ridge with leave-one-out alpha.
    meta : mapping, optional
        More provenance stored in ``result.meta`` (model, layer, measure, class names ...)
        beside the command, versions and seed.
    command : str
        The command line or call, recorded in ``meta``.

    Returns
    -------
    SparsityResult

    Raises
    ------
    DataError
        Bad features or measure (see :func:`rcvlab.analyses.common.check_xy`), mismatched
        feature dimensions.
    RcvlabError
        Negative, non-finite or repeated alphas; ``reps < 1``; ``test_fraction`` outside
        (0, 1); a test set called ``"same"``.
    """
    grid, plain, reps, seed, test_fraction = check_sparsity_options(
        alphas, plain, reps, seed, test_fraction
    )
    Xa, ya = check_xy(X, y, "training class")
    n, d = Xa.shape
    others: dict[str, tuple[FloatArray, FloatArray]] = {}
    for name, pair in (test_sets or {}).items():
        if str(name) == SAME:
            raise RcvlabError(f"test set name {SAME!r} is reserved for the held-out split")
        try:
            Xo, yo = pair
        except (TypeError, ValueError):
            raise DataError(f"test set {name!r} must be a pair (X, y)") from None
        Xo, yo = check_xy(Xo, yo, f"test set {name!r}")
        if Xo.shape[1] != d:
            raise DataError(
                f"test set {name!r} has {Xo.shape[1]} features, the training class has {d}"
            )
        others[str(name)] = (Xo, yo)
    splits = repeated_splits(n, reps, test_fraction, seed)
    names = (SAME, *others)
    m = len(grid)
    n_nonzero = np.zeros((m, reps), dtype=np.int64)
    r2_train = np.zeros((m, reps))
    r2_test = np.zeros((len(names), m, reps))
    counts = np.zeros((m, d), dtype=np.int64)
    n_constant = 0
    for r, (tr, te) in enumerate(splits):
        design = Design(Xa[tr])
        C, b = _path(design, ya[tr], grid, plain)
        n_constant = max(n_constant, design.n_constant)
        nz = C != 0
        n_nonzero[:, r] = nz.sum(axis=0)
        counts[:, design.keep] += nz.T
        pred = design.Z @ C + b
        r2_train[:, r] = [r2_score(ya[tr], pred[:, j]) for j in range(m)]
        evals = [(Xa[te], ya[te]), *others.values()]
        for s, (Xt, yt) in enumerate(evals):
            pred = design.standardise(Xt) @ C + b
            r2_test[s, :, r] = [r2_score(yt, pred[:, j]) for j in range(m)]
    n_test = {SAME: int(splits[0][1].size), **{k: int(v[0].shape[0]) for k, v in others.items()}}
    return SparsityResult(
        alphas=grid,
        test_sets=names,
        n_nonzero=frozen_array(n_nonzero, np.int64),
        r2_train=frozen_array(r2_train),
        r2_test=frozen_array(r2_test),
        selection_counts=frozen_array(counts, np.int64),
        n_train=int(splits[0][0].size),
        n_test=n_test,
        dim=d,
        n_constant=n_constant,
        reps=reps,
        seed=seed,
        test_fraction=test_fraction,
        plain=plain,
        meta=analysis_meta(command, seed, meta),
    )


def sparsity(
    model: Any,
    data: Any,
    *,
    layer: str,
    measure: str = "scale_ratio",
    train_class: str,
    test_classes: Sequence[str] | None = None,
    alphas: ArrayLike = DEFAULT_ALPHAS,
    reps: int = 10,
    seed: int = 0,
    test_fraction: float = 0.5,
    plain: str = "ols",
    command: str = "",
    **extract: Unpack[ExtractOptions],
) -> SparsityResult:
    """The Lasso path of a model's layer: non-zero coefficients vs R², same and other classes.

    One feature extraction of ``layer`` (read from the all-layers cache entry of ``rcvlab
    probe`` when ``cache_dir`` holds one), split by ``data.classes``, then
    :func:`sparsity_from_arrays` on ``train_class`` with ``test_classes`` as test sets.
    Every option is checked before the model runs.

    Parameters
    ----------
    model : str or Model
        A registry name (loaded with ``weights`` and ``seed``) or a loaded model.
    data : ImageSet
        Images with classes (``data.classes``) and the measure.
    layer : str
        The layer (e.g. ``"mixed8"``).
    measure : str
        Name of the measure (paper 001: ``"scale_ratio_sqrt"``).
    train_class : str
        Class the RCVs are trained on.
    test_classes : sequence of str, optional
        Other classes to evaluate on (default: every other class).
    alphas, reps, seed, test_fraction, plain
        As :func:`sparsity_from_arrays`.
    command : str
        The command line, stored in ``meta``.
    **extract
        How the layer is extracted: :class:`~rcvlab.analyses.common.ExtractOptions`.

    Returns
    -------
    SparsityResult
        ``meta`` holds the provenance (command, versions, seed, data fingerprint) and the
        model, layer, measure, class names, counts and skipped items.

    Raises
    ------
    RcvlabError
        A bad option; the training class among ``test_classes``; a class the data does not
        have (:class:`~rcvlab.errors.UnknownNameError`).
    """

    def wanted(image_set: Any) -> list[str]:
        (train,) = check_classes(image_set, [train_class])
        if test_classes is None:
            tests = [c for c in check_classes(image_set, None) if c != train]
        else:
            tests = check_classes(image_set, test_classes) if len(test_classes) else []
        if train in tests:
            raise RcvlabError(
                f"{train!r} is the training class; its held-out split is always evaluated "
                "('same'), leave it out of test_classes"
            )
        return [train, *tests]

    by_class, info = class_features(
        model,
        data,
        layer=layer,
        measure=measure,
        seed=seed,
        classes=wanted,
        check_options=lambda: check_sparsity_options(alphas, plain, reps, seed, test_fraction),
        **extract,
    )
    train, *tests = by_class
    X, y = check_xy(*by_class[train], f"class {train!r}")
    return sparsity_from_arrays(
        X,
        y,
        alphas=alphas,
        reps=reps,
        seed=seed,
        test_fraction=test_fraction,
        test_sets={c: by_class[c] for c in tests},
        plain=plain,
        meta={**info, "train_class": train, "test_classes": tests},
        command=command,
    )


__all__ = [
    "DEFAULT_ALPHAS",
    "SAME",
    "SparsityResult",
    "check_alphas",
    "check_sparsity_options",
    "default_table_alphas",
    "rcv_path",
    "sparsity",
    "sparsity_from_arrays",
]
