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

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch.nn as nn
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from rcvlab import __version__
from rcvlab.data.base import ImageSet
from rcvlab.errors import DataError, RcvlabError
from rcvlab.features.extract import as_image_set
from rcvlab.models.registry import Model, as_model
from rcvlab.probe.fit import check_regressor, fit_rcv
from rcvlab.probe.profile import check_split_options, probe_layers
from rcvlab.probe.result import _jsonable
from rcvlab.probe.sensitivity import (
    gradient_pass,
    layer_output_shape,
    layer_spec,
    raw_direction,
    resolve_target_class,
)

FloatArray = NDArray[np.float64]
NAN = float("nan")

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
class RelevanceResult:
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
        Per measure, the unit RCV in raw GAP feature space (not written to JSON).
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
    seed : int
    data : dict
        Source, counts and skipped images.
    command, rcvlab_version : str
    extra : dict
    """

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
    regressor: str = "ridge"
    alpha: float | None = None
    reps: int = 10
    test_fraction: float = 0.3
    seed: int = 0
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    command: str = ""
    rcvlab_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

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

    def with_meta(self, **kw: Any) -> RelevanceResult:
        """A copy with metadata fields replaced."""
        return replace(self, **kw)

    def to_frame(self) -> pd.DataFrame:
        """One row per measure: measure, layer, target_class, n, R² (mean, std, interval),
        alpha, sensitivity mean / std, fraction positive, Br, t statistic and p-value."""
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
        return pd.DataFrame(rows)

    def per_image_frame(self) -> pd.DataFrame:
        """One row per (measure, used image): measure, index, image id, class, value,
        sensitivity."""
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
        """Everything but the per-image arrays and directions (strict-JSON ready)."""
        d = {
            "kind": "relevance",
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
            "seed": self.seed,
            "measures": [asdict(s) for s in self.scores],
            "data": self.data,
            "command": self.command,
            "rcvlab_version": self.rcvlab_version,
            "extra": self.extra,
        }
        return _jsonable(d)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The ``relevance.json`` text; written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            from rcvlab.runio import write_text

            write_text(path, text + "\n")
        return text

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
        if self.command:
            lines.append(f"Command: `{self.command}`")
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
    regressor: str = "ridge",
    alpha: float | None = None,
    reps: int = 10,
    test_fraction: float = 0.3,
    seed: int = 0,
    min_images: int = 10,
    ids: Sequence[str] = (),
    classes: Sequence[str] | None = None,
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

    Returns
    -------
    RelevanceResult

    Raises
    ------
    DataError
        Mismatched shapes, a constant measure, fewer than ``min_images`` usable images, an
        RCV without direction.
    """
    reg, a = check_regressor(regressor, alpha)
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
        seed=int(seed),
    )


def relevance(
    model: str | Model | nn.Module,
    data: ImageSet,
    layer: str,
    measures: Sequence[str] | str = ("scale_ratio",),
    target_class: int | str = 0,
    *,
    weights: str = "imagenet",
    regressor: str = "ridge",
    alpha: float | None = None,
    reps: int = 10,
    test_fraction: float = 0.3,
    seed: int = 0,
    min_images: int = 10,
    batch_size: int = 16,
    resize: str = "resize",
    device: str | None = None,
    strict: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    command: str = "",
) -> RelevanceResult:
    """Sensitivity and bidirectional relevance of concept measures at ``layer`` for a class.

    One forward + backward pass per batch over the images used by some measure
    (:func:`rcvlab.probe.sensitivity.gradient_pass`) gives both the layer's GAP features, on
    which the RCVs are fitted, and the gradients; images are preprocessed as
    :func:`rcvlab.features.extract_features` does. The method is in the module docstring.

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
    measures : str or sequence of str
    target_class : int or str
        Index of the class logit (or a category name of the model, e.g. ``"tabby"``).
    weights : str
        Weights of a model given by name.
    regressor, alpha, reps, test_fraction, seed, min_images
        As in :func:`relevance_from_arrays`.
    batch_size : int
        Batch size of the pass (it keeps the activations after the layer for the backward).
    resize, device, strict, progress
        As in :func:`rcvlab.features.extract_features`.
    command : str
        The command line, recorded in the result.

    Returns
    -------
    RelevanceResult

    Raises
    ------
    UnknownNameError
        Unknown model, layer, measure or class name.
    RcvlabError
        A softmax or vector layer (logits), a target class out of range.
    DataError
        Constant measure, too few usable images.
    """
    model = as_model(model, weights, seed)
    check_regressor(regressor, alpha)
    check_split_options(reps, test_fraction, seed)  # before the images are read
    names = [measures] if isinstance(measures, str) else list(measures)
    if not names:
        raise RcvlabError("no measures given")
    if len(set(names)) != len(names):
        raise RcvlabError(f"duplicate measures in {names}")
    data = as_image_set(data)
    spec = layer_spec(model, layer)
    k = resolve_target_class(model, target_class)
    shape = layer_output_shape(model, spec)  # a vector layer fails here, in a second
    ys = {m: data.measure(m) for m in names}
    for m, y in ys.items():
        fin = y[np.isfinite(y)]
        if fin.size and np.ptp(fin) == 0:
            raise DataError(f"measure {m!r} is constant (value {fin[0]:g}); nothing to regress")

    n = len(data)
    rows = np.flatnonzero(np.any([np.isfinite(y) for y in ys.values()], axis=0))
    if rows.size == 0:
        raise DataError(f"no image has a value of {', '.join(names)}")
    p = gradient_pass(
        model,
        data.subset(rows),
        spec,
        k,
        batch_size=batch_size,
        device=device,
        resize=resize,
        strict=strict,
        progress=progress,
    )
    d = p.features.shape[1]
    X, G = np.full((n, d), np.nan), np.full((n, d), np.nan)
    X[rows], G[rows] = p.features, p.gradients
    res = relevance_from_arrays(
        X,
        G,
        ys,
        layer=spec.name,
        target_class=k,
        regressor=regressor,
        alpha=alpha,
        reps=reps,
        test_fraction=test_fraction,
        seed=seed,
        min_images=min_images,
        ids=data.ids,
        classes=None if data.classes is None else data.classes.tolist(),
    )
    skipped = [(s.path, s.reason) for s in data.skipped]
    skipped += [(s.path, s.reason) for _, s in sorted(p.skipped.items())]
    info = {
        "source": data.source,
        "fingerprint": data.fingerprint(),
        "n_images": len(data),
        "n_without_measure": int(n - rows.size),
        "n_readable": int(p.valid.sum()),  # of those with a measure (the others are not read)
        "n_used": {s.measure: s.n for s in res.scores},
        "n_skipped": len(skipped),
        "classes": sorted(set(data.classes.tolist())) if data.classes is not None else [],
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
    cats = model.categories
    return res.with_meta(
        target_name=cats[k] if k < len(cats) else "",
        model=model.name,
        weights=model.weights,
        layer_kind=spec.kind,
        data=info,
        command=command,
        rcvlab_version=__version__,
        extra={
            "weights_id": model.weights_id,
            "layer_module": spec.module,
            "layer_shape": list(shape[1:]),
            "preprocessing": {**model.preprocessing.key(), "mode": resize},
        },
    )


__all__ = [
    "DEFINITION",
    "SENS_CONSTANT_RTOL",
    "MeasureRelevance",
    "RelevanceResult",
    "relevance",
    "relevance_from_arrays",
    "sensitivity_stats",
]
