"""RCV relevance: sensitivity of a class logit along an RCV and the bidirectional relevance score.

From the original RCV paper (Graziani, Andrearczyk & Müller, *Regression Concept Vectors for
Bidirectional Explanations in Histopathology*, iMIMIC 2018), METHOD.md §7:

1. The RCV ``v`` of a measure is fitted on the layer's GAP features (ridge by default,
   features standardised on the training rows). Its R² is the mean held-out R² over ``reps``
   repeated random ``70/30`` splits (:func:`rcvlab.probe.probe_layers`); the direction comes
   from one fit on all usable rows, converted to the raw GAP feature space (``coef / scale`` on
   kept columns) and normalised to unit length (:func:`rcvlab.probe.sensitivity.raw_direction`).
2. The sensitivity of image ``x`` is ``S(x) = d/dt f_K(A(x) + t v)`` at ``t = 0``: the
   derivative of class ``K``'s logit when the layer's map ``A`` is shifted by ``t v`` at every
   position, the rest of the network unchanged. As ``GAP(A + t v) = GAP(A) + t v`` it is the
   directional derivative of the logit along ``v`` in GAP space,
   ``sum over positions <dF_K/dA_p, v>`` (:mod:`rcvlab.probe.sensitivity`).
3. The bidirectional relevance score is ``Br = R² x mean(S) / std(S)`` (``ddof=1``) over the
   images: its sign says whether increasing the concept raises (``> 0``) or lowers the class
   score, its size how consistently, weighted by how well the RCV predicts the measure. Also
   reported: the fraction of positive sensitivities and a one-sample t-test of ``S`` against
   0 (``scipy.stats.ttest_1samp``, two-sided).

A held-out R² can be ≤ 0 (the RCV predicts the measure no better than its mean); ``Br`` is
then not meaningful (a negative R² would even flip its sign) and the summary flags it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from rcvlab.analyses.common import check_int, row_shards
from rcvlab.data.base import ImageSet
from rcvlab.distributed.client import check_client, n_workers
from rcvlab.distributed.tasks import Call, Shared, run_calls
from rcvlab.errors import DataError, RcvlabError
from rcvlab.features.extract import as_image_set, choose_device
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model, as_model
from rcvlab.probe.fit import check_regressor, fit_rcv
from rcvlab.probe.profile import check_min_images, check_split_options, probe_layers
from rcvlab.probe.sensitivity import (
    GradientPass,
    blank_pass,
    gradient_pass,
    layer_spec,
    raw_direction,
    resolve_target_class,
)
from rcvlab.probe.splits import n_test_rows
from rcvlab.progress import progress_bar
from rcvlab.result import Result, jsonable, nan_if_none, provenance

if TYPE_CHECKING:
    from distributed import Client

FloatArray = NDArray[np.float64]
NAN = float("nan")

DEFAULT_MEASURES: tuple[str, ...] = ("scale_ratio",)
"""Measures scored when none are given: the papers' scale concept."""
DEFAULT_REGRESSOR = "ridge"
"""RCV fit (ridge, alpha by leave-one-out), as the RCV paper's."""
DEFAULT_REPS = 10
"""Repeated random splits for the RCV's held-out R²."""
DEFAULT_TEST_FRACTION = 0.3
"""Held-out share of every split (the papers' 70/30)."""
DEFAULT_MIN_IMAGES = 10
"""Fewest usable images per measure."""
DEFAULT_BATCH_SIZE = 16
"""Images per forward + backward pass (the backward keeps the activations after the layer)."""
RESIZE_MODES = ("resize", "crop")
"""Preprocessing modes (:meth:`rcvlab.models.registry.Preprocessing.__call__`)."""

_STAT_KEYS = ("sens_mean", "sens_std", "frac_positive", "br", "t_stat", "p_value")

DEFINITION = (
    "Sensitivity S(x) = d/dt logit_K(network with the layer's map A replaced by A + t v at "
    "every position) at t = 0, v the unit RCV in raw GAP feature space (= the directional "
    "derivative of the logit along v in GAP space). Bidirectional relevance Br = R² x mean(S) "
    "/ std(S) (ddof=1), R² the RCV's mean held-out R² over repeated random splits "
    "(Graziani et al. 2018)."
)


SENS_CONSTANT_RTOL = 1e-6
"""Sensitivities whose std is at most this times ``max|S|`` count as constant (rounding
noise of a float32 network that is linear after the layer would otherwise give Br ~ 1e7)."""


def sensitivity_stats(sensitivities: ArrayLike, r2: float) -> dict[str, float]:
    """Summary of one measure's sensitivities and its bidirectional relevance score.

    Parameters
    ----------
    sensitivities : array_like of shape (n,)
        Finite sensitivities ``S`` of the images.
    r2 : float
        The RCV's (mean held-out) R².

    Returns
    -------
    dict
        ``sens_mean``, ``sens_std`` (``ddof=1``), ``frac_positive`` (share of ``S > 0``),
        ``br`` = ``r2 * sens_mean / sens_std``, ``t_stat`` and ``p_value`` of the two-sided
        one-sample t-test of ``S`` against 0. When ``S`` is constant (``std = 0``, e.g. a
        network that is linear after the layer) ``br`` is ``±inf`` (NaN if the mean is 0
        too) and the t-test is undefined (NaN); a std up to :data:`SENS_CONSTANT_RTOL` times
        ``max|S|`` is rounding noise and counts as 0 (the reported ``sens_std`` is the
        computed one). With fewer than 2 values std, ``br`` and the test are NaN.
    """
    s = np.asarray(sensitivities, dtype=np.float64).ravel()
    if s.size == 0:
        raise DataError("no sensitivities to summarise")
    mean = float(s.mean())
    frac = float(np.mean(s > 0))
    if s.size < 2:
        return {
            "sens_mean": mean,
            "sens_std": NAN,
            "frac_positive": frac,
            "br": NAN,
            "t_stat": NAN,
            "p_value": NAN,
        }
    std = float(s.std(ddof=1))
    if std > SENS_CONSTANT_RTOL * float(np.abs(s).max()):
        ratio = mean / std
        t = stats.ttest_1samp(s, 0.0)
        t_stat, p = float(t.statistic), float(t.pvalue)
    else:
        ratio = math.copysign(math.inf, mean) if mean != 0 else NAN
        t_stat, p = NAN, NAN
    with np.errstate(invalid="ignore"):
        br = float(r2 * ratio) if math.isfinite(r2) else NAN
    return {
        "sens_mean": mean,
        "sens_std": std,
        "frac_positive": frac,
        "br": br,
        "t_stat": t_stat,
        "p_value": p,
    }


@dataclass(frozen=True)
class MeasureRelevance:
    """Relevance of one concept measure at one layer for one class.

    Attributes
    ----------
    measure : str
    n : int
        Images used (finite measure, features and gradient).
    r2 : tuple of float
        Held-out R² of every repetition.
    r2_mean, r2_std : float
        Mean and standard deviation (``ddof=1``) of ``r2``.
    r2_ci95 : (float, float)
        95 % interval of the mean (Nadeau–Bengio corrected, :func:`rcvlab.probe.mean_ci95`).
    alpha : float or None
        Penalty of the all-rows RCV (chosen by leave-one-out for ridge without alpha).
    n_constant : int
        Feature columns dropped as constant by the all-rows fit.
    sens_mean, sens_std, frac_positive, br, t_stat, p_value : float
        See :func:`sensitivity_stats`.
    """

    measure: str
    n: int
    r2: tuple[float, ...]
    r2_mean: float
    r2_std: float
    r2_ci95: tuple[float, float]
    alpha: float | None
    n_constant: int
    sens_mean: float
    sens_std: float
    frac_positive: float
    br: float
    t_stat: float
    p_value: float


@dataclass(frozen=True, eq=False)
class RelevanceResult(Result):
    """Sensitivities and bidirectional relevance scores of concept measures at one layer.

    Attributes
    ----------
    layer : str
    target_class : int
        Index of the logit ``K``.
    scores : tuple of MeasureRelevance
        One per measure, in the order requested.
    sensitivities : dict of str to ndarray
        Per measure, the sensitivity ``S`` of every used image.
    rows : dict of str to ndarray of int
        Per measure, the used images' indices in the data set (aligned with
        ``sensitivities``).
    values : dict of str to ndarray
        Per measure, the measure values of the used images.
    directions : dict of str to ndarray
        Per measure, the unit RCV in raw GAP feature space.
    ids : tuple of str
        Identifiers of all images of the data set (empty when unknown).
    classes : tuple of str
        Class label of every image (empty when the data has none).
    target_name : str
        The class's name when the model knows it.
    model, weights, layer_kind : str
    regressor : str
    alpha : float or None
        Penalty requested (None: ridge chooses by leave-one-out).
    reps : int
    test_fraction : float
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`): command, versions, seed, the data's
        fingerprint and source, ``weights_id``, the layer's module and shape, the
        preprocessing, the image counts (``n_images``, ``n_without_measure``, ``n_readable``,
        ``n_used``, ``n_skipped``, ``classes``) and ``skipped`` (path and reason of every
        unreadable image).

    ``to_frame()`` has one row per measure with the columns ``measure``, ``layer``,
    ``target_class``, ``target_name``, ``n`` (images used), ``r2_mean``, ``r2_std`` and
    ``r2_ci95_low`` / ``r2_ci95_high`` (the RCV's held-out R² over the repeated splits),
    ``alpha`` (of the all-rows RCV), ``sens_mean``, ``sens_std`` (``ddof=1``),
    ``frac_positive`` (share of ``S > 0``), ``br`` (``R² x mean(S) / std(S)``), ``t_stat``
    and ``p_value`` (two-sided one-sample t-test of ``S`` against 0).
    """

    kind: ClassVar[str] = "relevance"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "measure",
        "layer",
        "target_class",
        "target_name",
        "n",
        "r2_mean",
        "r2_std",
        "r2_ci95_low",
        "r2_ci95_high",
        "alpha",
        "sens_mean",
        "sens_std",
        "frac_positive",
        "br",
        "t_stat",
        "p_value",
    )

    layer: str
    target_class: int
    scores: tuple[MeasureRelevance, ...]
    sensitivities: dict[str, FloatArray] = field(repr=False)
    rows: dict[str, NDArray[np.intp]] = field(repr=False)
    values: dict[str, FloatArray] = field(repr=False)
    directions: dict[str, FloatArray] = field(default_factory=dict, repr=False)
    ids: tuple[str, ...] = field(default=(), repr=False)
    classes: tuple[str, ...] = field(default=(), repr=False)
    target_name: str = ""
    model: str = ""
    weights: str = ""
    layer_kind: str = "output"
    regressor: str = DEFAULT_REGRESSOR
    alpha: float | None = None
    reps: int = DEFAULT_REPS
    test_fraction: float = DEFAULT_TEST_FRACTION
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def seed(self) -> int | None:
        """The seed of the repeated splits (``meta["seed"]``)."""
        return self.meta.get("seed")

    @property
    def measures(self) -> list[str]:
        """Measure names, in order."""
        return [s.measure for s in self.scores]

    def score(self, measure: str) -> MeasureRelevance:
        """The :class:`MeasureRelevance` of ``measure``."""
        for s in self.scores:
            if s.measure == measure:
                return s
        raise KeyError(f"no measure {measure!r} in this result; have {self.measures}")

    @property
    def br(self) -> dict[str, float]:
        """Bidirectional relevance score of every measure."""
        return {s.measure: s.br for s in self.scores}

    def to_frame(self) -> pd.DataFrame:
        """One row per measure (columns: see the class docstring)."""
        rows = []
        for s in self.scores:
            rows.append(
                {
                    "measure": s.measure,
                    "layer": self.layer,
                    "target_class": self.target_class,
                    "target_name": self.target_name,
                    "n": s.n,
                    "r2_mean": s.r2_mean,
                    "r2_std": s.r2_std,
                    "r2_ci95_low": s.r2_ci95[0],
                    "r2_ci95_high": s.r2_ci95[1],
                    "alpha": NAN if s.alpha is None else s.alpha,
                    "sens_mean": s.sens_mean,
                    "sens_std": s.sens_std,
                    "frac_positive": s.frac_positive,
                    "br": s.br,
                    "t_stat": s.t_stat,
                    "p_value": s.p_value,
                }
            )
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def per_image_frame(self) -> pd.DataFrame:
        """One row per (measure, used image): ``measure``, ``index`` (in the data set),
        ``id``, ``class`` (when the data has classes), ``value`` (of the measure) and
        ``sensitivity``."""
        parts = []
        for m in self.measures:
            idx = np.asarray(self.rows[m], dtype=np.intp)
            d: dict[str, Any] = {
                "measure": m,
                "index": idx,
                "id": [self.ids[i] for i in idx] if self.ids else [""] * idx.size,
            }
            if self.classes:
                d["class"] = [self.classes[i] for i in idx]
            d["value"] = self.values[m]
            d["sensitivity"] = self.sensitivities[m]
            parts.append(pd.DataFrame(d))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        """Settings, the scores, and per measure the used rows, their values and
        sensitivities and the RCV's direction (everything :meth:`from_dict` needs)."""
        return jsonable(
            {
                "definition": DEFINITION,
                "model": self.model,
                "weights": self.weights,
                "layer": self.layer,
                "layer_kind": self.layer_kind,
                "target_class": self.target_class,
                "target_name": self.target_name,
                "regressor": self.regressor,
                "alpha": self.alpha,
                "reps": self.reps,
                "test_fraction": self.test_fraction,
                "measures": [asdict(s) for s in self.scores],
                "meta": self.meta,
                "ids": list(self.ids),
                "classes": list(self.classes),
                "per_image": {
                    m: {
                        "rows": self.rows[m],
                        "values": self.values[m],
                        "sensitivities": self.sensitivities[m],
                    }
                    for m in self.measures
                },
                "directions": {m: v for m, v in self.directions.items()},
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RelevanceResult:
        """Rebuild from :meth:`to_dict`."""
        scores = []
        for s in d["measures"]:
            alpha = s.get("alpha")
            scores.append(
                MeasureRelevance(
                    measure=str(s["measure"]),
                    n=int(s["n"]),
                    r2=tuple(nan_if_none(v) for v in s["r2"]),
                    r2_mean=nan_if_none(s["r2_mean"]),
                    r2_std=nan_if_none(s["r2_std"]),
                    r2_ci95=(nan_if_none(s["r2_ci95"][0]), nan_if_none(s["r2_ci95"][1])),
                    alpha=None if alpha is None else float(alpha),
                    n_constant=int(s["n_constant"]),
                    **{k: nan_if_none(s[k]) for k in _STAT_KEYS},
                )
            )
        per_image = d["per_image"]

        def floats(v: Any) -> FloatArray:
            return np.array([nan_if_none(x) for x in v], dtype=np.float64)

        alpha = d.get("alpha")
        return cls(
            layer=str(d["layer"]),
            target_class=int(d["target_class"]),
            scores=tuple(scores),
            sensitivities={m: floats(v["sensitivities"]) for m, v in per_image.items()},
            rows={m: np.asarray(v["rows"], dtype=np.intp) for m, v in per_image.items()},
            values={m: floats(v["values"]) for m, v in per_image.items()},
            directions={m: floats(v) for m, v in d.get("directions", {}).items()},
            ids=tuple(str(i) for i in d.get("ids", ())),
            classes=tuple(str(c) for c in d.get("classes", ())),
            target_name=str(d.get("target_name", "")),
            model=str(d.get("model", "")),
            weights=str(d.get("weights", "")),
            layer_kind=str(d.get("layer_kind", "output")),
            regressor=str(d["regressor"]),
            alpha=None if alpha is None else float(alpha),
            reps=int(d["reps"]),
            test_fraction=float(d["test_fraction"]),
            meta=dict(d["meta"]),
        )

    def to_markdown(self) -> str:
        """``summary.md``: the Br table, the definition and the run's settings."""
        target = f"{self.target_class}" + (f" ({self.target_name})" if self.target_name else "")
        lines = [
            f"# RCV relevance: {self.model or 'model'} ({self.weights or '?'}), layer "
            f"{self.layer}, class {target}",
            "",
            "| measure | n | R² mean [95 % CI] | mean S | std S | S > 0 | Br | t-test p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        flagged = []
        for s in self.scores:
            lines.append(
                f"| {s.measure} | {s.n} | {_fmt(s.r2_mean)} [{_fmt(s.r2_ci95[0])}, "
                f"{_fmt(s.r2_ci95[1])}] | {_fmt(s.sens_mean)} | {_fmt(s.sens_std)} | "
                f"{s.frac_positive:.0%} | **{_fmt(s.br)}** | {_fmt(s.p_value)} |"
            )
            if not s.r2_mean > 0:
                flagged.append(s.measure)
        lines += ["", DEFINITION, ""]
        if flagged:
            lines += [
                f"R² ≤ 0 for {', '.join(flagged)}: the RCV does not predict the measure on "
                "held-out images, so its Br is not meaningful.",
                "",
            ]
        alpha = "leave-one-out" if self.alpha is None and self.regressor == "ridge" else self.alpha
        lines += [
            f"RCVs: {self.regressor} (alpha {alpha}), {self.reps} random splits with "
            f"{self.test_fraction:.0%} test images, seed {self.seed}; the direction is the fit on "
            "all used images. Sensitivities are per unit length of the RCV in raw GAP space.",
        ]
        if self.meta.get("command"):
            lines.append(f"Command: `{self.meta['command']}`")
        lines.append("")
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{x:.3g}"


def relevance_from_arrays(
    features: ArrayLike,
    gradients: ArrayLike,
    measures: Mapping[str, ArrayLike],
    *,
    layer: str = "",
    target_class: int = 0,
    regressor: str = DEFAULT_REGRESSOR,
    alpha: float | None = None,
    reps: int = DEFAULT_REPS,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    min_images: int = DEFAULT_MIN_IMAGES,
    ids: Sequence[str] = (),
    classes: Sequence[str] | None = None,
    command: str = "",
) -> RelevanceResult:
    """Relevance of each measure from GAP features and GAP-space logit gradients.

    Parameters
    ----------
    features : array_like of shape (n, d)
        GAP features of the layer (NaN rows: unreadable images).
    gradients : array_like of shape (n, d)
        Gradient of the class logit with respect to a GAP-space shift of the layer, per image
        (:func:`rcvlab.probe.sensitivity.gap_gradient`); the sensitivity along a unit RCV
        ``v`` is ``gradients @ v``.
    measures : mapping of str to array_like of shape (n,)
        Concept measures; NaN marks images without a value.
    layer : str
    target_class : int
    regressor : {"ridge", "ols", "lasso"}
    alpha : float, optional
        Penalty (ridge without alpha chooses it by leave-one-out per fit).
    reps, test_fraction, seed
        Repeated random splits for the R² (:func:`rcvlab.probe.probe_layers`).
    min_images : int
        Minimum usable images per measure.
    ids : sequence of str
        Image identifiers (for the per-image table).
    classes : sequence of str, optional
        Class of every image (for the per-image table).
    command : str
        Recorded in ``meta``.

    Returns
    -------
    RelevanceResult

    Raises
    ------
    RcvlabError
        A bad option (regressor, alpha, reps, test_fraction, seed, min_images).
    DataError
        Mismatched shapes, a constant or infinite measure, fewer than ``min_images`` usable
        images, an RCV without direction.
    """
    reg, a = check_regressor(regressor, alpha)
    check_split_options(reps, test_fraction, seed)
    check_min_images(min_images)
    X = np.asarray(features, dtype=np.float64)
    G = np.asarray(gradients, dtype=np.float64)
    if X.ndim != 2 or G.shape != X.shape:
        raise DataError(f"features {X.shape} and gradients {G.shape} must both have shape (n, d)")
    if not measures:
        raise RcvlabError("no measures given")
    n = X.shape[0]
    finite_rows = np.isfinite(X).all(axis=1) & np.isfinite(G).all(axis=1)
    scores, sens, rows_of, values, dirs = [], {}, {}, {}, {}
    for name, y_in in measures.items():
        y = np.asarray(y_in, dtype=np.float64)
        if y.shape != (n,):
            raise DataError(f"measure {name!r} has shape {y.shape}, expected ({n},)")
        check_measure_values(str(name), y, min_images, test_fraction)
        usable = finite_rows & np.isfinite(y)
        rows = np.flatnonzero(usable)
        if rows.size < min_images:
            raise DataError(
                f"measure {name!r}: only {rows.size} usable images (need at least {min_images}; "
                f"{int((~np.isfinite(y)).sum())} without a value, {int((~finite_rows).sum())} "
                "unreadable)"
            )
        yu, Xu = y[rows], X[rows]
        if np.ptp(yu) == 0:
            raise DataError(
                f"measure {name!r} is constant (value {yu[0]:g}) over the {rows.size} usable "
                "images; nothing to regress"
            )
        prof = probe_layers(
            {layer or "layer": Xu},
            yu,
            reps=reps,
            test_fraction=test_fraction,
            regressor=reg,
            alpha=a,
            seed=seed,
            shuffled=False,
            min_images=min_images,
            n_jobs=1,
        )
        ls = prof.profiles["model"][0]
        rcv = fit_rcv(Xu, yu, reg, a)
        v = raw_direction(rcv)
        s = G[rows] @ v
        st = sensitivity_stats(s, ls.r2_mean)
        scores.append(
            MeasureRelevance(
                measure=str(name),
                n=int(rows.size),
                r2=tuple(ls.r2),
                r2_mean=ls.r2_mean,
                r2_std=ls.r2_std,
                r2_ci95=ls.r2_ci95,
                alpha=rcv.alpha,
                n_constant=rcv.n_constant,
                **st,
            )
        )
        sens[name], rows_of[name], values[name], dirs[name] = s, rows, yu, v
    return RelevanceResult(
        layer=layer,
        target_class=int(target_class),
        scores=tuple(scores),
        sensitivities=sens,
        rows=rows_of,
        values=values,
        directions=dirs,
        ids=tuple(str(i) for i in ids),
        classes=() if classes is None else tuple(str(c) for c in classes),
        regressor=reg,
        alpha=a,
        reps=int(reps),
        test_fraction=float(test_fraction),
        meta=provenance(command=command, seed=int(seed)),
    )


def check_measure_values(name: str, y: ArrayLike, min_images: int, test_fraction: float) -> None:
    """Check a measure before any image is run: no infinite value, at least ``min_images``
    finite values that vary, and enough of them for a train/test split.

    NaN marks an image without a value (left out); ``±inf`` is an error.

    Raises
    ------
    DataError
        One line naming the measure and what is wrong.
    """
    v = np.asarray(y, dtype=np.float64).ravel()
    n_inf = int(np.isinf(v).sum())
    if n_inf:
        first = int(np.flatnonzero(np.isinf(v))[0])
        raise DataError(
            f"measure {name!r} has {n_inf} infinite value(s) (first at image {first}); fix "
            "them or set them to NaN (no value) to leave those images out"
        )
    fin = v[np.isfinite(v)]
    if fin.size < min_images:
        raise DataError(
            f"measure {name!r}: only {fin.size} images have a value (need at least "
            f"{min_images}); add images or lower min_images"
        )
    if np.ptp(fin) == 0:
        raise DataError(
            f"measure {name!r} is constant (value {fin[0]:g}) over the {fin.size} images with "
            "a value; nothing to regress"
        )
    n_test = n_test_rows(fin.size, test_fraction)
    if n_test < 2 or fin.size - n_test < 2:
        raise DataError(
            f"measure {name!r}: {fin.size} images with test_fraction={test_fraction} give "
            f"{fin.size - n_test} train / {n_test} test; need at least 2 on each side"
        )


# A worker running several tasks at once in threads holds one copy of the scattered model:
# its shards take turns with it (the pass hooks the module and borrows it).
_PASS_LOCK = threading.Lock()


def gradient_shard(
    model: Model,
    data: ImageSet,
    spec: LayerSpec,
    target_class: int,
    start: int,
    stop: int,
    *,
    batch_size: int,
    device: str | torch.device | None,
    resize: str,
    strict: bool,
    progress: bool | Callable[[int, int], None] = False,
) -> GradientPass:
    """The forward + backward pass of :func:`relevance` over the images ``[start, stop)``.

    :func:`rcvlab.probe.sensitivity.gradient_pass` with ``shard=(start, stop)``, here (one
    shard, all images) or as a task on a Dask worker (one shard each), one shard at a
    time per process.

    Parameters
    ----------
    model : Model
    data : ImageSet
        The images some measure has a value for.
    spec : LayerSpec
        The layer (:func:`rcvlab.probe.sensitivity.layer_spec`).
    target_class : int
        Index of the logit.
    start, stop : int
        The shard's rows (``start`` on a batch boundary of the whole pass).
    batch_size, device, resize, strict, progress
        As in :func:`rcvlab.probe.sensitivity.gradient_pass`.

    Returns
    -------
    GradientPass
        ``stop - start`` rows; arrays without columns when none of them could be read.
    """
    with _PASS_LOCK:
        return gradient_pass(
            model,
            data,
            spec,
            target_class,
            batch_size=batch_size,
            device=device,
            resize=resize,
            strict=strict,
            progress=progress,
            shard=(start, stop),
        )


def relevance(
    model: str | Model | nn.Module,
    data: ImageSet,
    *,
    layer: str,
    target_class: int | str,
    measures: Sequence[str] | str = DEFAULT_MEASURES,
    weights: str | None = None,
    regressor: str = DEFAULT_REGRESSOR,
    alpha: float | None = None,
    reps: int = DEFAULT_REPS,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    min_images: int = DEFAULT_MIN_IMAGES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resize: str = "resize",
    device: str | torch.device | None = None,
    strict: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    command: str = "",
    client: Client | None = None,
) -> RelevanceResult:
    """Sensitivity and bidirectional relevance of concept measures at ``layer`` for a class.

    One forward + backward pass per batch over the images used by some measure
    (:func:`rcvlab.probe.sensitivity.gradient_pass`) gives both the layer's GAP features, on
    which the RCVs are fitted, and the gradients; images are preprocessed as
    :func:`rcvlab.features.extract_features` does. The method is in the module docstring.
    There is no feature cache: the backward pass needs the forward pass anyway, and that
    pass gives the features.

    Parameters
    ----------
    model : str, Model or torch.nn.Module
        A registry name (loaded with ``weights`` and ``seed``) or a loaded :class:`Model`.
    data : ImageSet
        Images with the measures (``rcvlab.data.open_data``); any name that
        :meth:`ImageSet.measure` knows, including computed ones of :mod:`rcvlab.measures`.
    layer : str
        A layer with a spatial map (kind ``output`` or ``residual_sum``), not the logits or
        the softmax.
    target_class : int or str
        Index of the class logit (or a category name of the model, e.g. ``"tabby"``).
    measures : str or sequence of str
        Default :data:`DEFAULT_MEASURES`.
    weights : str, optional
        ``imagenet`` (default), ``random`` or a state-dict path; only with a model name.
    regressor, alpha, reps, test_fraction, seed, min_images
        As in :func:`relevance_from_arrays`.
    batch_size : int
        Batch size of the pass (it keeps the activations after the layer for the backward).
    resize : {"resize", "crop"}
        Preprocessing mode.
    device, strict, progress
        As in :func:`rcvlab.features.extract_features`.
    command : str
        The command line, recorded in ``meta``.
    client : distributed.Client, optional
        Run the pass on this Dask cluster (:func:`rcvlab.distributed.open_client`). Every
        check runs here first; then the images are cut into shards of whole batches, the
        model and the image set are scattered once to every worker, and each shard is one
        task (:func:`rcvlab.probe.sensitivity.gradient_pass` with ``shard=``, one torch
        thread) that returns only its rows' features, gradients and validity. The RCVs
        are fitted here, as without a client. The images must be readable by the workers
        (on other machines, a shared folder). The result equals a run here under
        ``torch.set_num_threads(1)``; ``device`` None lets every worker choose its own.

    Returns
    -------
    RelevanceResult

    Raises
    ------
    UnknownNameError
        Unknown model, layer, measure, regressor or class name.
    RcvlabError
        A bad option, ``weights`` with a loaded model, an unknown device, a softmax or vector
        layer (logits), a target class out of range.
    DataError
        A constant or infinite measure, too few images with a value (all before the pass);
        too few readable images (after it).
    """
    reg, a = check_regressor(regressor, alpha)
    check_split_options(reps, test_fraction, seed)
    check_min_images(min_images)
    check_int("batch_size", batch_size, 1)
    check_client(client)
    if resize not in RESIZE_MODES:
        raise RcvlabError(f"Unknown resize mode {resize!r}; use {' or '.join(RESIZE_MODES)}.")
    names = [measures] if isinstance(measures, str) else list(measures)
    if not names:
        raise RcvlabError("no measures given; name at least one (e.g. scale_ratio)")
    if len(set(names)) != len(names):
        raise RcvlabError(f"duplicate measures in {names}; list each once")
    if weights is not None and not isinstance(model, str):
        raise RcvlabError(
            f"weights={weights!r} applies to a model name only; this model is loaded with "
            "its weights already (drop weights, or pass the name)."
        )
    choose_device(device)  # an unknown device fails here, not after the model is loaded
    data = as_image_set(data)
    # the measures, before the model is loaded and any image is run
    ys = {m: np.asarray(data.measure(m), dtype=np.float64) for m in names}
    for m, y in ys.items():
        check_measure_values(m, y, min_images, test_fraction)
    model = as_model(model, "imagenet" if weights is None else weights, seed)
    spec = layer_spec(model, layer)
    k = resolve_target_class(model, target_class)
    # a vector layer, or a class beyond the logits, fails here in one image's time
    shape, n_logits = blank_pass(model, spec)
    if k >= n_logits:
        raise RcvlabError(
            f"target class {k} is out of range: the network has {n_logits} outputs "
            f"(0-{n_logits - 1})."
        )

    n = len(data)
    rows = np.flatnonzero(np.any([np.isfinite(y) for y in ys.values()], axis=0))
    used = data.subset(rows)  # only the images some measure has a value for are read
    m = len(used)
    opts = dict(batch_size=batch_size, device=device, resize=resize, strict=strict)
    if client is None:  # one shard: all the images
        shards = [(0, m)]
        parts = [gradient_shard(model, used, spec, k, 0, m, **opts, progress=progress)]
    else:  # batch-aligned shards, one task each; the progress ticks as they come back
        shards = row_shards(client, m, batch_size)
        calls = [
            Call(gradient_shard, (Shared("model"), Shared("data"), spec, k, i0, i1), opts)
            for i0, i1 in shards
        ]
        with progress_bar(progress, m, "gradients") as tick:
            work = [i1 - i0 for i0, i1 in shards]
            parts = run_calls(
                client,
                calls,
                {"model": model, "data": used},
                name="rcvlab-relevance",
                on_done=lambda i: tick(work[i]),
            )
    d = max(p.features.shape[1] for p in parts)  # 0 in a shard without a readable image
    if d == 0:
        raise DataError("No image could be read.")
    X, G = np.full((n, d), np.nan), np.full((n, d), np.nan)
    for (i0, i1), p in zip(shards, parts, strict=True):
        if p.features.shape[1]:
            X[rows[i0:i1]], G[rows[i0:i1]] = p.features, p.gradients
    n_readable = int(sum(int(p.valid.sum()) for p in parts))
    res = relevance_from_arrays(
        X,
        G,
        ys,
        layer=spec.name,
        target_class=k,
        regressor=reg,
        alpha=a,
        reps=reps,
        test_fraction=test_fraction,
        seed=seed,
        min_images=min_images,
        ids=data.ids,
        classes=None if data.classes is None else data.classes.tolist(),
    )
    skipped = [(s.path, s.reason) for s in data.skipped]
    skipped += [(s.path, s.reason) for p in parts for _, s in sorted(p.skipped.items())]
    cats = model.categories
    return replace(
        res,
        target_name=cats[k] if k < len(cats) else "",
        model=model.name,
        weights=model.weights,
        layer_kind=spec.kind,
        meta=provenance(
            command=command,
            seed=int(seed),
            data=data,
            weights_id=model.weights_id,
            layer_module=spec.module,
            layer_shape=list(shape[1:]),
            preprocessing={**model.preprocessing.key(), "mode": resize},
            device=(
                str(choose_device(device))
                if client is None or device is not None
                else "workers' default"
            ),
            workers=1 if client is None else n_workers(client),
            n_images=len(data),
            n_without_measure=int(n - rows.size),
            n_readable=n_readable,  # of those with a measure (the others are not read)
            n_used={s.measure: s.n for s in res.scores},
            n_skipped=len(skipped),
            classes=sorted(set(data.classes.tolist())) if data.classes is not None else [],
            skipped=[{"path": path, "reason": why} for path, why in skipped],
        ),
    )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MEASURES",
    "DEFAULT_MIN_IMAGES",
    "DEFAULT_REGRESSOR",
    "DEFAULT_REPS",
    "DEFAULT_TEST_FRACTION",
    "DEFINITION",
    "RESIZE_MODES",
    "SENS_CONSTANT_RTOL",
    "MeasureRelevance",
    "RelevanceResult",
    "check_measure_values",
    "gradient_shard",
    "relevance",
    "relevance_from_arrays",
    "sensitivity_stats",
]
