"""Result objects of layer-wise probing: the contract behind ``profile.json``.

:class:`ProfileResult` follows the result contract of :mod:`rcvlab.result` (kind
``"profile"``, provenance in ``meta``). ``profile.json`` files written before that contract
(``command`` and ``rcvlab_version`` at the top level, no ``kind``) are still read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from rcvlab.result import Result, jsonable, nan_if_none

PROFILE_KINDS = ("model", "random", "shuffled")
#: The ways of splitting images into training and test sides (see ``probe_layers``).
SPLITS = ("per-class", "pooled", "leave-one-class-out")


@dataclass(frozen=True)
class LayerScore:
    """Held-out R² of one layer's RCV over repeated splits.

    Attributes
    ----------
    layer : str
        Layer name.
    dim : int
        Feature dimension ``d`` of the layer (before dropping constant columns).
    r2 : tuple of float
        Test R² of every repetition (classes x repetitions, class-major, when probed per class;
        one value per held-out class, in sorted class order, under leave-one-class-out).
    r2_mean, r2_std : float
        Mean and standard deviation (ddof=1) of ``r2``.
    r2_ci95 : tuple of float
        95 % interval of the mean R² (see :func:`rcvlab.probe.stats.summarise`).
    r2_norm_mean : float
        Mean of ``exp(R² - 1)`` over repetitions (the papers' normalised score).
    r2_by_class : dict of str to tuple of float
        Per-class repetitions when probing per class, the single held-out R² of each class
        under leave-one-class-out, else empty.
    n_constant : int
        Feature columns dropped as constant on the training split (maximum over repetitions
        and classes).
    n_floored : int
        Feature columns whose scale the ``min_std`` guard raised (maximum over repetitions
        and classes; 0 when the guard is off).
    """

    layer: str
    dim: int
    r2: tuple[float, ...]
    r2_mean: float
    r2_std: float
    r2_ci95: tuple[float, float]
    r2_norm_mean: float
    r2_by_class: dict[str, tuple[float, ...]] = field(default_factory=dict)
    n_constant: int = 0
    n_floored: int = 0

    @property
    def r2_median(self) -> float:
        """Median of ``r2`` over all repetitions (NaN when there is none or one is NaN).

        Beside the mean it shows whether one split drags a layer down: one repetition at
        -50 moves the mean by 50/J, the median hardly at all.
        """
        if not self.r2:
            return math.nan
        return float(np.median(np.asarray(self.r2, dtype=np.float64)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``r2_median`` included for readers of the file; it is derived)."""
        d = dataclasses.asdict(self)
        d["r2"] = list(self.r2)
        d["r2_median"] = self.r2_median
        d["r2_ci95"] = list(self.r2_ci95)
        d["r2_by_class"] = {k: list(v) for k, v in self.r2_by_class.items()}
        return jsonable(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerScore:
        """Rebuild from :meth:`to_dict` (``n_floored`` is 0 in files that predate it)."""
        return cls(
            layer=d["layer"],
            dim=int(d["dim"]),
            r2=tuple(nan_if_none(x) for x in d["r2"]),
            r2_mean=nan_if_none(d["r2_mean"]),
            r2_std=nan_if_none(d["r2_std"]),
            r2_ci95=(nan_if_none(d["r2_ci95"][0]), nan_if_none(d["r2_ci95"][1])),
            r2_norm_mean=nan_if_none(d["r2_norm_mean"]),
            r2_by_class={
                k: tuple(nan_if_none(x) for x in v) for k, v in d.get("r2_by_class", {}).items()
            },
            n_constant=int(d.get("n_constant", 0)),
            n_floored=int(d.get("n_floored", 0)),
        )


# Fields of the pre-contract profile.json that now live in ``meta``.
_OLD_PROVENANCE = ("command", "rcvlab_version")


@dataclass(frozen=True)
class ProfileResult(Result):
    """A layer-wise concept profile with its baselines.

    ``profiles`` maps ``"model"`` (the network as loaded), ``"random"`` (random-weights
    twin) and ``"shuffled"`` (the model's features against permuted measures) to the layer
    scores in network order; baselines that were not run are absent.

    Attributes
    ----------
    profiles : dict of str to tuple of LayerScore
    split : {"per-class", "pooled", "leave-one-class-out"}
        How images were split into training and test sides
        (:func:`rcvlab.probe.probe_layers`). Files written before the field existed read as
        ``"per-class"`` when they list classes, else ``"pooled"``.
    regressor : str
    alpha : float or None
    reps, test_fraction, seed
        The repeated splits (leave-one-class-out: ``reps`` 1, one split per held-out class,
        and ``test_fraction`` NaN).
    min_std : float or None
        The standardisation guard used (None = off; see :func:`rcvlab.probe.fit.fit_rcv`).
    model, weights, measure : str
        What was probed.
    data : dict
        Counts (``n_images``, ``n_used``, ``n_by_class``, ``n_train``, ``n_test`` ...), the
        data source and the skipped items.
    extra : dict
        Details of the analysis that are not provenance: the ridge alphas chosen
        (``ridge_alpha_chosen``), pooling, corrected-GAP positions (``positions``,
        ``no_positions``), preprocessing, weights id, feature cache key.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`): command, rcvlab and library versions,
        seed, data fingerprint. :attr:`command` and :attr:`rcvlab_version` read it.

    The table of :meth:`to_frame` has one row per (profile, layer) with the columns
    ``split`` (per-class / pooled / leave-one-class-out), ``profile`` (model / random /
    shuffled), ``layer_index`` (network order), ``layer``, ``dim``, ``r2_mean``,
    ``r2_median``, ``r2_std`` (ddof=1), ``r2_ci95_low``, ``r2_ci95_high``, ``r2_norm_mean``
    (mean of e^(R²−1)), ``n_reps`` (R² values pooled: classes x repetitions; held-out
    classes under leave-one-class-out), ``n_constant`` (columns dropped as constant,
    maximum over repetitions) and ``n_floored`` (columns the ``min_std`` guard touched,
    maximum over repetitions).
    """

    kind: ClassVar[str] = "profile"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "split",
        "profile",
        "layer_index",
        "layer",
        "dim",
        "r2_mean",
        "r2_median",
        "r2_std",
        "r2_ci95_low",
        "r2_ci95_high",
        "r2_norm_mean",
        "n_reps",
        "n_constant",
        "n_floored",
    )

    profiles: dict[str, tuple[LayerScore, ...]]
    split: str = "per-class"
    regressor: str = "ols"
    alpha: float | None = None
    reps: int = 10
    test_fraction: float = 0.3
    seed: int = 0
    min_std: float | None = None
    model: str = ""
    weights: str = ""
    measure: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The command that produced the result (``meta["command"]``; ``""`` if unknown)."""
        return str(self.meta.get("command") or "")

    @property
    def rcvlab_version(self) -> str:
        """rcvlab's version when the result was made (``meta["rcvlab_version"]``)."""
        return str(self.meta.get("rcvlab_version") or "")

    @property
    def layers(self) -> list[str]:
        """Layer names in network order."""
        return [s.layer for s in self.profiles["model"]]

    @property
    def best_layer(self) -> str:
        """The layer with the highest mean test R² of the model profile (first on ties)."""
        scores = self.profiles["model"]
        means = [s.r2_mean if math.isfinite(s.r2_mean) else -math.inf for s in scores]
        return scores[int(np.argmax(means))].layer

    def score(self, layer: str, kind: str = "model") -> LayerScore:
        """Return the :class:`LayerScore` of ``layer`` in profile ``kind``."""
        for s in self.profiles[kind]:
            if s.layer == layer:
                return s
        raise KeyError(layer)

    def with_meta(self, **kw: Any) -> ProfileResult:
        """Return a copy with fields replaced (``model``, ``weights``, ``data``, ``meta`` ...).

        A keyword that is not a field (``command``, ``rcvlab_version``, ...) is a provenance
        entry: it is set in (a copy of) ``meta``.
        """
        names = {f.name for f in dataclasses.fields(self)}
        fields = {k: v for k, v in kw.items() if k in names}
        loose = {k: v for k, v in kw.items() if k not in names}
        if loose:
            fields["meta"] = {**fields.get("meta", self.meta), **jsonable(loose)}
        return replace(self, **fields)

    def to_frame(self) -> pd.DataFrame:
        """One row per (profile, layer); the columns are listed in the class docstring."""
        rows = []
        for kind, scores in self.profiles.items():
            for i, s in enumerate(scores):
                rows.append(
                    {
                        "split": self.split,
                        "profile": kind,
                        "layer_index": i,
                        "layer": s.layer,
                        "dim": s.dim,
                        "r2_mean": s.r2_mean,
                        "r2_median": s.r2_median,
                        "r2_std": s.r2_std,
                        "r2_ci95_low": s.r2_ci95[0],
                        "r2_ci95_high": s.r2_ci95[1],
                        "r2_norm_mean": s.r2_norm_mean,
                        "n_reps": len(s.r2),
                        "n_constant": s.n_constant,
                        "n_floored": s.n_floored,
                    }
                )
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def to_dict(self) -> dict[str, Any]:
        """Everything in ``profile.json`` (``best_layer`` is derived, for readers)."""
        d = {
            "meta": self.meta,
            "model": self.model,
            "weights": self.weights,
            "data": self.data,
            "measure": self.measure,
            "split": self.split,
            "regressor": self.regressor,
            "alpha": self.alpha,
            "reps": self.reps,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "min_std": self.min_std,
            "profiles": {k: [s.to_dict() for s in v] for k, v in self.profiles.items()},
            "best_layer": self.best_layer,
            "extra": self.extra,
        }
        return jsonable(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileResult:
        """Rebuild from :meth:`to_dict`, or from a pre-contract ``profile.json``.

        Raises
        ------
        ValueError
            When there is no model profile (reported as a :class:`~rcvlab.errors.DataError`
            by :meth:`from_json`).
        """
        profiles_in = d.get("profiles")
        if not isinstance(profiles_in, Mapping) or "model" not in profiles_in:
            raise ValueError("no model profile")
        profiles = {k: tuple(LayerScore.from_dict(x) for x in v) for k, v in profiles_in.items()}
        meta = d.get("meta")
        if meta is None:  # written before the result contract
            meta = {k: d.get(k, "") for k in _OLD_PROVENANCE}
            meta["versions"] = {}
            meta["seed"] = d.get("seed")
        min_std = d.get("min_std")
        data = dict(d.get("data", {}))
        split = d.get("split") or ("per-class" if data.get("classes") else "pooled")
        return cls(
            profiles=profiles,
            split=str(split),
            regressor=d.get("regressor", "ols"),
            alpha=d.get("alpha"),
            reps=int(d.get("reps", 0)),
            test_fraction=nan_if_none(d.get("test_fraction", 0.3)),
            seed=int(d.get("seed", 0)),
            min_std=None if min_std is None else float(min_std),
            model=d.get("model", ""),
            weights=d.get("weights", ""),
            measure=d.get("measure", ""),
            data=data,
            extra=dict(d.get("extra", {})),
            meta=dict(meta),
        )


__all__ = ["PROFILE_KINDS", "SPLITS", "LayerScore", "ProfileResult"]
