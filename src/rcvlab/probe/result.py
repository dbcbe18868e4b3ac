"""Result objects of layer-wise probing: the contract behind ``profile.json``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

PROFILE_KINDS = ("model", "random", "shuffled")


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
        Test R² of every repetition (classes x repetitions, class-major, when probed per class).
    r2_mean, r2_std : float
        Mean and standard deviation (ddof=1) of ``r2``.
    r2_ci95 : tuple of float
        95 % interval of the mean R² (see :func:`rcvlab.probe.stats.mean_ci95`).
    r2_norm_mean : float
        Mean of ``exp(R² - 1)`` over repetitions (the papers' normalised score).
    r2_by_class : dict of str to tuple of float
        Per-class repetitions when probing per class, else empty.
    n_constant : int
        Feature columns dropped as constant on the training split (maximum over repetitions).
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["r2"] = list(self.r2)
        d["r2_ci95"] = list(self.r2_ci95)
        d["r2_by_class"] = {k: list(v) for k, v in self.r2_by_class.items()}
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerScore:
        return cls(
            layer=d["layer"],
            dim=int(d["dim"]),
            r2=tuple(_f(x) for x in d["r2"]),
            r2_mean=_f(d["r2_mean"]),
            r2_std=_f(d["r2_std"]),
            r2_ci95=(_f(d["r2_ci95"][0]), _f(d["r2_ci95"][1])),
            r2_norm_mean=_f(d["r2_norm_mean"]),
            r2_by_class={k: tuple(_f(x) for x in v) for k, v in d.get("r2_by_class", {}).items()},
            n_constant=int(d.get("n_constant", 0)),
        )


@dataclass(frozen=True)
class ProfileResult:
    """A layer-wise concept profile with its baselines.

    ``profiles`` maps ``"model"`` (the network as loaded), ``"random"`` (random-weights
    twin) and ``"shuffled"`` (the model's features against permuted measures) to the layer
    scores in network order; baselines that were not run are absent.
    """

    profiles: dict[str, tuple[LayerScore, ...]]
    regressor: str = "ols"
    alpha: float | None = None
    reps: int = 10
    test_fraction: float = 0.3
    seed: int = 0
    model: str = ""
    weights: str = ""
    measure: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    rcvlab_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

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
        """Return a copy with metadata fields replaced (model, weights, command, ...)."""
        return replace(self, **kw)

    def to_frame(self) -> pd.DataFrame:
        """One row per (profile, layer): mean, std, CI and normalised score of test R²."""
        rows = []
        for kind, scores in self.profiles.items():
            for i, s in enumerate(scores):
                rows.append(
                    {
                        "profile": kind,
                        "layer_index": i,
                        "layer": s.layer,
                        "dim": s.dim,
                        "r2_mean": s.r2_mean,
                        "r2_std": s.r2_std,
                        "r2_ci95_low": s.r2_ci95[0],
                        "r2_ci95_high": s.r2_ci95[1],
                        "r2_norm_mean": s.r2_norm_mean,
                        "n_reps": len(s.r2),
                        "n_constant": s.n_constant,
                    }
                )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "rcvlab_version": self.rcvlab_version,
            "command": self.command,
            "model": self.model,
            "weights": self.weights,
            "data": self.data,
            "measure": self.measure,
            "regressor": self.regressor,
            "alpha": self.alpha,
            "reps": self.reps,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "profiles": {k: [s.to_dict() for s in v] for k, v in self.profiles.items()},
            "best_layer": self.best_layer,
        }
        if self.extra:
            d["extra"] = self.extra
        return _jsonable(d)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise to JSON (the ``profile.json`` format); write it to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            tmp = f"{os.fspath(path)}.tmp"
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> ProfileResult:
        """Read a ``profile.json`` file (or its text)."""
        from rcvlab.errors import DataError

        s = os.fspath(path_or_text)
        try:
            if s.lstrip().startswith("{"):
                d = json.loads(s)
            else:
                with open(s) as f:
                    d = json.load(f)
        except OSError as e:
            raise DataError(f"Cannot read profile {s}: {e.strerror or e}.") from e
        except ValueError as e:
            raise DataError(f"{s} is not a profile.json written by rcvlab: {e}.") from e
        if not isinstance(d, dict) or "profiles" not in d or "model" not in d.get("profiles", {}):
            raise DataError(f"{s} is not a profile.json written by rcvlab (no model profile).")
        profiles = {k: tuple(LayerScore.from_dict(x) for x in v) for k, v in d["profiles"].items()}
        return cls(
            profiles=profiles,
            regressor=d.get("regressor", "ols"),
            alpha=d.get("alpha"),
            reps=int(d.get("reps", 0)),
            test_fraction=float(d.get("test_fraction", 0.3)),
            seed=int(d.get("seed", 0)),
            model=d.get("model", ""),
            weights=d.get("weights", ""),
            measure=d.get("measure", ""),
            data=d.get("data", {}),
            command=d.get("command", ""),
            rcvlab_version=d.get("rcvlab_version", ""),
            extra=d.get("extra", {}),
        )


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _jsonable(x: Any) -> Any:
    """Convert numpy scalars and non-finite floats (-> None) so that strict JSON is written."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


__all__ = ["PROFILE_KINDS", "LayerScore", "ProfileResult"]
