"""Consistency of RCV directions across splits and classes (paper 001, §5.2, Table 2).

Does one direction mean "larger" for every class? RCVs are fitted on disjoint halves of each
class and compared by their angle and cosine similarity. Every direction is the RCV's
coefficient vector in its own **standardised** feature space (each fit standardises with its
own training rows, as :func:`rcvlab.probe.fit.fit_rcv` does; the paper compares the same
vectors), so the comparison is between weights on the same feature maps.

For each class and repetition ``r`` the class is split at random into two sides
(:func:`rcvlab.probe.splits.repeated_splits`, ``test_fraction`` = 0.5: two halves), and three
RCVs are fitted: ``v1`` on the first side, ``v2`` on the second side, and ``vs`` on the second
side with the measure permuted. The pairs are

* ``same`` (``a == b``): ``angle(v1_a, v2_a)``, the paper's albatross-albatross baseline;
* ``cross`` (``a != b``): ``angle(v1_a, v1_b)``, RCVs of two classes from equally many images;
* ``shuffled`` (``b = "a (shuffled)"``): ``angle(v1_a, vs_a)``, the chance level (≈ 90° in
  high dimension);

for the plain regressor and, when ``alpha`` is given, for the Lasso.

:func:`consistency` starts from a model and images; :func:`consistency_from_arrays` from the
features of every class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rcvlab.analyses.common import (
    ExtractOptions,
    FloatArray,
    analysis_meta,
    check_classes,
    check_plain,
    check_reps,
    check_seed,
    check_test_fraction,
    check_xy,
    class_features,
)
from rcvlab.errors import DataError
from rcvlab.probe.fit import RCV, check_regressor, fit_rcv
from rcvlab.probe.splits import repeated_splits
from rcvlab.result import Result, jsonable, nan_if_none

if TYPE_CHECKING:
    from typing_extensions import Unpack

ZERO_VECTOR = "zero vector: the fit kept no non-zero coefficient (use a smaller alpha)"


def angle_between(u: ArrayLike | RCV, v: ArrayLike | RCV) -> tuple[float, float]:
    """Angle (degrees) and cosine similarity of two vectors.

    ``cos = u·v / (|u| |v|)``, clipped to [-1, 1], and ``angle = degrees(arccos(cos))``:
    identical directions give ``(0, 1)``, orthogonal ones ``(90, 0)``, opposite ones
    ``(180, -1)``. The sign is kept (paper 001 quotes angles in [0°, 90°]; a negative cosine
    means the RCVs point to opposite ends of the measure, which is worth seeing).

    Parameters
    ----------
    u, v : array_like of shape (d,) or RCV
        For an RCV its ``coef`` (the standardised feature space) is used.

    Returns
    -------
    (angle_degrees, cosine) : tuple of float
        ``(nan, nan)`` when either vector is zero (e.g. a Lasso that kept no coefficient):
        a zero vector has no direction.

    Raises
    ------
    DataError
        Vectors of different lengths or with non-finite values.
    """
    a = np.asarray(u.coef if isinstance(u, RCV) else u, dtype=np.float64).ravel()
    b = np.asarray(v.coef if isinstance(v, RCV) else v, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"vectors have different lengths: {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("vectors must be finite (no NaN or infinite values)")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return (math.nan, math.nan)
    cos = float(np.clip((a / na) @ (b / nb), -1.0, 1.0))
    return (math.degrees(math.acos(cos)), cos)


@dataclass(frozen=True)
class PairAngles:
    """Angles and cosines of one pair of RCVs over the repetitions.

    Attributes
    ----------
    a, b : str
        Class names (``b`` is ``"<a> (shuffled)"`` for the shuffled baseline).
    kind : {"same", "cross", "shuffled"}
    regressor : str
    alpha : float or None
    angles, cosines : tuple of float
        One value per repetition; NaN where a vector was zero.
    note : str
        Why some values are NaN ('' when none are).
    """

    a: str
    b: str
    kind: str
    regressor: str
    alpha: float | None
    angles: tuple[float, ...]
    cosines: tuple[float, ...]
    note: str = ""


@dataclass(frozen=True)
class ConsistencyResult(Result):
    """Every compared pair, with the options used.

    :meth:`to_frame` has one row per pair and regressor with the columns ``a, b, kind,
    regressor, alpha, angle_mean, angle_std, cos_mean, cos_std, n, n_undefined, note``
    (see there).

    Attributes
    ----------
    pairs : tuple of PairAngles
    classes : tuple of str
    n_per_class : dict of str to int
        Rows of each class; each RCV is fitted on one side of a split of them.
    n_fit : dict of str to int
        Rows each RCV of a class is fitted on (the first side of the split).
    dim : int
    reps, seed, alpha, plain, test_fraction
        Options as given.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`: command, versions, seed, data
        fingerprint) and the model, layer, measure.
    """

    kind: ClassVar[str] = "consistency"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "a",
        "b",
        "kind",
        "regressor",
        "alpha",
        "angle_mean",
        "angle_std",
        "cos_mean",
        "cos_std",
        "n",
        "n_undefined",
        "note",
    )

    pairs: tuple[PairAngles, ...]
    classes: tuple[str, ...]
    n_per_class: dict[str, int]
    n_fit: dict[str, int]
    dim: int
    reps: int = 10
    seed: int = 0
    alpha: float | None = 0.001
    plain: str = "ols"
    test_fraction: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per pair and regressor.

        Columns: ``a`` and ``b`` (the classes compared; ``b`` is ``"<a> (shuffled)"`` for
        the shuffled baseline), ``kind`` (``same``, ``cross`` or ``shuffled``),
        ``regressor``, ``alpha`` (NaN for the plain fit), ``angle_mean``, ``angle_std``
        (degrees), ``cos_mean``, ``cos_std``, ``n`` (repetitions where both vectors were
        non-zero: the means and standard deviations, ``ddof=1``, are over those),
        ``n_undefined`` (the others) and ``note`` (why some are undefined).
        """
        rows = []
        for p in self.pairs:
            ang = np.asarray(p.angles, dtype=float)
            cos = np.asarray(p.cosines, dtype=float)
            ok = np.isfinite(ang)
            n = int(ok.sum())
            rows.append(
                {
                    "a": p.a,
                    "b": p.b,
                    "kind": p.kind,
                    "regressor": p.regressor,
                    "alpha": math.nan if p.alpha is None else p.alpha,
                    "angle_mean": float(ang[ok].mean()) if n else math.nan,
                    "angle_std": float(ang[ok].std(ddof=1)) if n > 1 else math.nan,
                    "cos_mean": float(cos[ok].mean()) if n else math.nan,
                    "cos_std": float(cos[ok].std(ddof=1)) if n > 1 else math.nan,
                    "n": n,
                    "n_undefined": int(ang.size - n),
                    "note": p.note,
                }
            )
        return pd.DataFrame(rows)

    def runs_frame(self) -> pd.DataFrame:
        """One row per pair, regressor and repetition: ``angle, cos``."""
        return pd.DataFrame(
            [
                {
                    "a": p.a,
                    "b": p.b,
                    "kind": p.kind,
                    "regressor": p.regressor,
                    "rep": r,
                    "angle": ang,
                    "cos": cos,
                }
                for p in self.pairs
                for r, (ang, cos) in enumerate(zip(p.angles, p.cosines, strict=True))
            ]
        )

    def to_markdown(self) -> str:
        """``summary.md``: Table 2 style (angle and cosine, plain and Lasso, mean ± std)."""
        f = self.to_frame()
        regs = list(dict.fromkeys(f.regressor))
        m = self.meta
        what = ", ".join(f"{k} {m[k]}" for k in ("model", "layer", "measure") if m.get(k))
        lines = [
            "# Consistency of RCV directions (angle and cosine similarity)",
            "",
            ("" if not what else f"{what}. ")
            + f"{self.reps} repetitions (seed {self.seed}), d = {self.dim}; each RCV is fitted "
            "on one side of a random split of its class ("
            + ", ".join(
                f"{c}: {self.n_fit[c]} of {self.n_per_class[c]} images" for c in self.classes
            )
            + "). Directions are the RCVs' coefficients in their standardised feature spaces.",
            "",
            "| a | b | " + " | ".join(f"{r} angle | {r} cos" for r in regs) + " |",
            "|---|---|" + "---|---|" * len(regs),
        ]
        for (a, b), g in f.groupby(["a", "b"], sort=False):
            cells = []
            for r in regs:
                row = g[g.regressor == r]
                if row.empty:
                    cells += ["", ""]
                    continue
                x = row.iloc[0]
                cells += [
                    f"{x.angle_mean:.1f}° ± {x.angle_std:.1f}",
                    f"{x.cos_mean:.3f} ± {x.cos_std:.3f}",
                ]
            lines.append(f"| {a} | {b} | " + " | ".join(cells) + " |")
        notes = sorted({p.note for p in self.pairs if p.note})
        lines += [
            "",
            "Published (paper 001, InceptionV3 mixed8): albatross–albatross 67.7° / "
            "0.410 plain, 46.2° / 0.66 Lasso; shuffled ≈ 90° / 0.",
            "",
        ]
        lines += [f"Note: {n}" for n in notes]
        if m.get("command"):
            lines += ["", f"Command: `{m['command']}`"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (NaN as None)."""
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConsistencyResult:
        """Rebuild from :meth:`to_dict` (also reads ``consistency.json`` of earlier rcvlab)."""
        pairs = tuple(
            PairAngles(
                a=str(p["a"]),
                b=str(p["b"]),
                kind=str(p["kind"]),
                regressor=str(p["regressor"]),
                alpha=None if p.get("alpha") is None else float(p["alpha"]),
                angles=tuple(nan_if_none(x) for x in p["angles"]),
                cosines=tuple(nan_if_none(x) for x in p["cosines"]),
                note=str(p.get("note", "")),
            )
            for p in d["pairs"]
        )
        return cls(
            pairs=pairs,
            classes=tuple(str(c) for c in d["classes"]),
            n_per_class={str(k): int(v) for k, v in d["n_per_class"].items()},
            n_fit={str(k): int(v) for k, v in d["n_fit"].items()},
            dim=int(d["dim"]),
            reps=int(d["reps"]),
            seed=int(d["seed"]),
            alpha=None if d.get("alpha") is None else float(d["alpha"]),
            plain=str(d["plain"]),
            test_fraction=float(d["test_fraction"]),
            meta=dict(d.get("meta", {})),
        )


def check_consistency_options(
    plain: str, alpha: float | None, reps: Any, seed: Any, test_fraction: Any
) -> tuple[list[tuple[str, float | None]], int, int, float]:
    """The options of :func:`consistency` and :func:`consistency_from_arrays`, checked and
    normalised: ``(regressors, reps, seed, test_fraction)``, where ``regressors`` is
    ``[(plain, None)]`` followed by ``("lasso", alpha)`` when ``alpha`` is given."""
    regs: list[tuple[str, float | None]] = [(check_plain(plain), None)]
    if alpha is not None:
        regs.append(check_regressor("lasso", alpha))
    return regs, check_reps(reps), check_seed(seed), check_test_fraction(test_fraction)


def consistency_from_arrays(
    by_class: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    reps: int = 10,
    seed: int = 0,
    alpha: float | None = 0.001,
    plain: str = "ols",
    test_fraction: float = 0.5,
    shuffled: bool = True,
    meta: Mapping[str, Any] | None = None,
    command: str = "",
) -> ConsistencyResult:
    """Angles and cosines between RCVs of disjoint splits, of classes, and of shuffled measures.

    Parameters
    ----------
    by_class : mapping of str to (X, y)
        Features (n_c, d) and measure (n_c,) of every class, e.g.
        ``{"albatross": (X, y), "kite": (X2, y2)}``; the same ``d`` for all.
    reps : int
        Repetitions (random splits per class), >= 1.
    seed : int
        Seeds the splits and the shuffles; class ``i`` uses the ``i``-th child of
        ``numpy.random.SeedSequence(seed)``, so a class's splits do not depend on the
        classes after it.
    alpha : float or None
        Lasso penalty (scikit-learn convention, the paper's 0.001); None compares the plain
        RCVs only.
    plain : {"ols", "ridge"}
        The non-regularised regressor (ridge: leave-one-out alpha).
    test_fraction : float
        Share of the second side of every split, in (0, 1) (0.5: two halves).
    shuffled : bool
        Add the shuffled-measure baseline of every class.
    meta : mapping, optional
        More provenance stored in ``result.meta`` (model, layer, measure ...) beside the
        command, versions and seed.
    command : str
        The command line or call, recorded in ``meta``.

    Returns
    -------
    ConsistencyResult
        Pairs in the order: for each class its ``same`` pair, then its ``shuffled`` one,
        then every ``cross`` pair (classes in the given order), each for the plain regressor
        and then the Lasso. Zero RCVs (a Lasso that kept nothing) give NaN with a note.
    """
    regs, reps, seed, test_fraction = check_consistency_options(
        plain, alpha, reps, seed, test_fraction
    )
    plain = regs[0][0]
    if not by_class:
        raise DataError("no classes given; pass {'class name': (X, y), ...}")
    classes = [str(c) for c in by_class]
    checked = {str(c): check_xy(X, y, f"class {c!r}") for c, (X, y) in by_class.items()}
    dims = {c: v[0].shape[1] for c, v in checked.items()}
    if len(set(dims.values())) > 1:
        raise DataError(f"classes have different feature dimensions: {dims}")
    d = next(iter(dims.values()))
    children = np.random.SeedSequence(seed).spawn(len(classes))
    # fits[c][reg] = (v1, v2, vs) lists over repetitions
    fits: dict[str, dict[str, list[list[FloatArray]]]] = {}
    n_fit = {}
    for c, child in zip(classes, children, strict=True):
        X, y = checked[c]
        split_seed, shuffle_seed = child.spawn(2)
        splits = repeated_splits(y.size, reps, test_fraction, split_seed)
        rng = np.random.default_rng(shuffle_seed)
        n_fit[c] = int(splits[0][0].size)
        per: dict[str, list[list[FloatArray]]] = {name: [[], [], []] for name, _ in regs}
        for tr, te in splits:
            y_shuf = rng.permutation(y[te])
            for name, a in regs:
                per[name][0].append(fit_rcv(X[tr], y[tr], name, a).coef)
                per[name][1].append(fit_rcv(X[te], y[te], name, a).coef)
                if shuffled:
                    per[name][2].append(fit_rcv(X[te], y_shuf, name, a).coef)
        fits[c] = per

    def pair(a: str, b: str, kind: str, name: str, alpha_: float | None, us, vs) -> PairAngles:
        res = [angle_between(u, v) for u, v in zip(us, vs, strict=True)]
        ang = tuple(r[0] for r in res)
        note = ""
        if any(math.isnan(x) for x in ang):
            k = sum(math.isnan(x) for x in ang)
            note = f"{name}: {k} of {len(ang)} repetitions undefined ({ZERO_VECTOR})"
        return PairAngles(a, b, kind, name, alpha_, ang, tuple(r[1] for r in res), note)

    pairs = []
    for c in classes:
        for name, a in regs:
            v1, v2, _ = fits[c][name]
            pairs.append(pair(c, c, "same", name, a, v1, v2))
        if shuffled:
            for name, a in regs:
                v1, _, vs = fits[c][name]
                pairs.append(pair(c, f"{c} (shuffled)", "shuffled", name, a, v1, vs))
    for i, ca in enumerate(classes):
        for cb in classes[i + 1 :]:
            for name, a in regs:
                pairs.append(pair(ca, cb, "cross", name, a, fits[ca][name][0], fits[cb][name][0]))
    return ConsistencyResult(
        pairs=tuple(pairs),
        classes=tuple(classes),
        n_per_class={c: int(checked[c][1].size) for c in classes},
        n_fit=n_fit,
        dim=int(d),
        reps=reps,
        seed=seed,
        alpha=None if alpha is None else float(alpha),
        plain=plain,
        test_fraction=test_fraction,
        meta=analysis_meta(command, seed, meta),
    )


def consistency(
    model: Any,
    data: Any,
    *,
    layer: str,
    measure: str = "scale_ratio",
    classes: Sequence[str] | None = None,
    reps: int = 10,
    seed: int = 0,
    alpha: float | None = 0.001,
    plain: str = "ols",
    test_fraction: float = 0.5,
    shuffled: bool = True,
    command: str = "",
    **extract: Unpack[ExtractOptions],
) -> ConsistencyResult:
    """Table 2 from a model and images: angles between RCVs of splits, classes, shuffles.

    One feature extraction of ``layer``, split by ``data.classes``, then
    :func:`consistency_from_arrays`. Every option is checked before the model runs.

    Parameters
    ----------
    model : str or Model
    data : ImageSet
        Images with classes and the measure.
    layer : str
    measure : str
        Name of the measure (paper 001: ``"scale_ratio_sqrt"``).
    classes : sequence of str, optional
        Classes to compare, in this order (default: all, sorted).
    reps, seed, alpha, plain, test_fraction, shuffled
        As :func:`consistency_from_arrays`.
    command : str
        The command line, stored in ``meta``.
    **extract
        How the layer is extracted: :class:`~rcvlab.analyses.common.ExtractOptions`.

    Returns
    -------
    ConsistencyResult
    """
    by_class, info = class_features(
        model,
        data,
        layer=layer,
        measure=measure,
        seed=seed,
        classes=lambda d: check_classes(d, classes),
        check_options=lambda: check_consistency_options(plain, alpha, reps, seed, test_fraction),
        **extract,
    )
    return consistency_from_arrays(
        by_class,
        reps=reps,
        seed=seed,
        alpha=alpha,
        plain=plain,
        test_fraction=test_fraction,
        shuffled=shuffled,
        meta=info,
        command=command,
    )


__all__ = [
    "ConsistencyResult",
    "PairAngles",
    "angle_between",
    "check_consistency_options",
    "consistency",
    "consistency_from_arrays",
]
