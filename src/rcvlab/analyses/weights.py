"""Texture RCVs across weights: random, pretrained and finetuned networks (paper 004, Fig. 3).

:func:`compare_weights` probes several concept measures (by default the Haralick ASM,
contrast and correlation of the grey image) at several layers of one architecture under
several weights. Each network's features are extracted **once** (one forward pass per
batch, every layer at once) and serve every measure. For every (weights, measure) the
result holds a :class:`~rcvlab.probe.ProfileResult` with rcvlab's held-out R² over
repeated splits, and, labelled as the paper's, the in-sample R² of paper 004's code
(:func:`rcvlab.probe.insample.insample_fit`: OLS with intercept on all images, no split,
which saturates at 1 when the features span the images).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rcvlab.analyses.profile import skipped_items
from rcvlab.data.base import ImageSet
from rcvlab.errors import RcvlabError, UnknownNameError
from rcvlab.features.extract import FeatureSet, as_image_set, extract_features
from rcvlab.models.layers import PAPER004_LAYERS
from rcvlab.models.registry import Model, load_model
from rcvlab.probe.fit import check_min_std, check_regressor
from rcvlab.probe.insample import insample_fit
from rcvlab.probe.profile import (
    check_fit_device,
    check_measure,
    check_split,
    check_split_options,
    probe_layers,
)
from rcvlab.probe.result import ProfileResult
from rcvlab.result import Result, jsonable, nan_if_none, provenance

#: The paper's three texture concepts (GLCM of the whole grey image, distance 1, angle 0).
TEXTURE_MEASURES: tuple[str, ...] = ("glcm_asm", "glcm_contrast", "glcm_correlation")
#: The default weights: the paper's random network (Xavier-uniform) and ImageNet's.
DEFAULT_WEIGHTS: tuple[str, ...] = ("random-xavier", "imagenet")

#: Paper 004, Figure 3 (InceptionV3 on Camelyon17; in-sample R², mean over repetitions; read
#: from the authors' code, METHOD.md §7), at :data:`rcvlab.models.layers.PAPER004_LAYERS`.
PAPER004_FIGURE3: dict[str, dict[str, tuple[float, ...]]] = {
    "random (Xavier)": {
        "glcm_asm": (0.867, 0.925, 0.947, 0.987, 0.987, 0.989),
        "glcm_contrast": (0.984, 0.991, 0.987, 0.996, 0.994, 0.993),
        "glcm_correlation": (0.875, 0.923, 0.932, 0.985, 0.984, 0.982),
    },
    "pretrained": {
        "glcm_asm": (0.890, 0.890, 0.931, 0.992, 0.991, 0.992),
        "glcm_contrast": (0.990, 0.994, 0.992, 0.997, 0.990, 0.988),
        "glcm_correlation": (0.878, 0.919, 0.939, 0.987, 0.978, 0.974),
    },
    "finetuned": {
        "glcm_asm": (0.845, 0.927, 0.970, 0.997, 0.996, 0.994),
        "glcm_contrast": (0.987, 0.992, 0.991, 0.998, 0.992, 0.986),
        "glcm_correlation": (0.869, 0.917, 0.954, 0.995, 0.992, 0.987),
    },
}


def weights_label(source: str, n_paths: int = 1) -> str:
    """The display name of a weights entry: ``random (Xavier)``, ``pretrained``, ...

    Parameters
    ----------
    source : str
        ``random-xavier``, ``random``, ``imagenet``, ``custom`` or a weights file.
    n_paths : int
        How many weights files are compared: one is ``finetuned``, several are told apart
        by their folder and file name.
    """
    fixed = {"random-xavier": "random (Xavier)", "random": "random", "imagenet": "pretrained"}
    if source in fixed:
        return fixed[source]
    if source == "custom":
        return "custom"
    if n_paths <= 1:
        return "finetuned"
    p = Path(source)
    return f"finetuned ({p.parent.name}/{p.name})" if p.parent.name else f"finetuned ({p.name})"


def weights_kind(source: str) -> str:
    """``random``, ``pretrained``, ``finetuned`` (a weights file) or ``other``: what the
    paper's colours (red, blue, green) stand for."""
    if source.startswith("random"):
        return "random"
    if source == "imagenet":
        return "pretrained"
    if source == "finetuned":  # a Model that rcvlab.finetune returned
        return "finetuned"
    if source not in ("custom", "") and (os.sep in source or "." in Path(source).name):
        return "finetuned"
    return "other"


@dataclass(frozen=True)
class InsampleScore:
    """Paper 004's in-sample R² of one (weights, measure, layer).

    Attributes
    ----------
    weights : str
        The weights' label.
    measure, layer : str
    r2 : float
        OLS R² with intercept on all images (NaN when the layer could not be fitted).
    saturated : bool
        ``rank + 1 >= n``: R² is 1 for any measure (see
        :class:`rcvlab.probe.insample.InsampleFit`).
    rank, n_images, dim : int
    """

    weights: str
    measure: str
    layer: str
    r2: float
    saturated: bool
    rank: int
    n_images: int
    dim: int

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InsampleScore:
        return cls(
            weights=str(d["weights"]),
            measure=str(d["measure"]),
            layer=str(d["layer"]),
            r2=nan_if_none(d["r2"]),
            saturated=bool(d["saturated"]),
            rank=int(d["rank"]),
            n_images=int(d["n_images"]),
            dim=int(d["dim"]),
        )


@dataclass(frozen=True)
class WeightsComparison(Result):
    """Concept RCVs of one architecture under several weights (paper 004, Figure 3).

    Attributes
    ----------
    model : str
        The architecture (registry name, or ``custom``).
    labels : tuple of str
        Display names of the weights, in order (``random (Xavier)``, ``pretrained``,
        ``finetuned`` ...).
    weights : tuple of str
        What each network's weights are: ``random-xavier``, ``random``, ``imagenet``, a
        weights file, or ``custom``.
    measures, layers : tuple of str
        The concepts and the layers probed (network order).
    profiles : tuple of ProfileResult
        One per (weights, measure), weights-major (:meth:`profile` finds one): held-out R²
        over ``reps`` splits, same splits for every network.
    insample : tuple of InsampleScore
        The paper's in-sample R² per (weights, measure, layer); empty when not computed.
    split, regressor, alpha, reps, test_fraction, seed
        The held-out protocol (:func:`rcvlab.probe.probe_layers`).
    data : dict
        Data source, fingerprint and counts.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`).

    The table of :meth:`to_frame` has one row per (weights, measure, layer): ``weights``
    (label), ``weights_source`` (random-xavier / imagenet / file ...), ``measure``,
    ``layer_index`` (network order), ``layer``, ``dim`` (features), ``n_images`` (images
    fitted), ``r2_mean`` (held-out R², mean over splits), ``r2_se`` (its standard error,
    std / sqrt(n_reps), as the paper's error bars), ``r2_std`` (ddof=1), ``r2_ci95_low`` and
    ``r2_ci95_high`` (95 % interval with the Nadeau–Bengio correction for overlapping
    training sets), ``n_reps`` (splits), ``r2_insample`` (the paper's in-sample R²: OLS on
    all images, no split; NaN when not computed), ``insample_saturated`` (True where the
    features span the images, so ``r2_insample`` is 1 whatever the layer encodes) and
    ``insample_rank`` (rank of the centred features; -1 when not computed).
    """

    kind: ClassVar[str] = "weights_comparison"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "weights",
        "weights_source",
        "measure",
        "layer_index",
        "layer",
        "dim",
        "n_images",
        "r2_mean",
        "r2_se",
        "r2_std",
        "r2_ci95_low",
        "r2_ci95_high",
        "n_reps",
        "r2_insample",
        "insample_saturated",
        "insample_rank",
    )

    model: str
    labels: tuple[str, ...]
    weights: tuple[str, ...]
    measures: tuple[str, ...]
    layers: tuple[str, ...]
    profiles: tuple[ProfileResult, ...]
    insample: tuple[InsampleScore, ...] = ()
    split: str = "pooled"
    regressor: str = "ols"
    alpha: float | None = None
    reps: int = 10
    test_fraction: float = 0.3
    seed: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def profile(self, weights: str, measure: str) -> ProfileResult:
        """The held-out profile of one network (its label) and measure."""
        try:
            i = self.labels.index(weights)
            j = self.measures.index(measure)
        except ValueError:
            raise UnknownNameError(
                f"No profile for weights {weights!r} and measure {measure!r}; weights: "
                f"{', '.join(self.labels)}; measures: {', '.join(self.measures)}."
            ) from None
        return self.profiles[i * len(self.measures) + j]

    def insample_score(self, weights: str, measure: str, layer: str) -> InsampleScore | None:
        """The paper's in-sample R² of one (weights, measure, layer), or None."""
        for s in self.insample:
            if (s.weights, s.measure, s.layer) == (weights, measure, layer):
                return s
        return None

    def to_frame(self) -> pd.DataFrame:
        """One row per (weights, measure, layer); the columns are listed in the class
        docstring."""
        rows = []
        for label, source in zip(self.labels, self.weights, strict=True):
            for measure in self.measures:
                prof = self.profile(label, measure)
                n_used = int(prof.data.get("n_used", prof.data.get("n_images", 0)))
                for i, s in enumerate(prof.profiles["model"]):
                    ins = self.insample_score(label, measure, s.layer)
                    n = len(s.r2)
                    rows.append(
                        {
                            "weights": label,
                            "weights_source": source,
                            "measure": measure,
                            "layer_index": i,
                            "layer": s.layer,
                            "dim": s.dim,
                            "n_images": n_used,
                            "r2_mean": s.r2_mean,
                            "r2_se": s.r2_std / math.sqrt(n) if n > 1 else math.nan,
                            "r2_std": s.r2_std,
                            "r2_ci95_low": s.r2_ci95[0],
                            "r2_ci95_high": s.r2_ci95[1],
                            "n_reps": n,
                            "r2_insample": math.nan if ins is None else ins.r2,
                            "insample_saturated": False if ins is None else ins.saturated,
                            "insample_rank": -1 if ins is None else ins.rank,
                        }
                    )
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def to_dict(self) -> dict[str, Any]:
        """Everything in ``weights_comparison.json``."""
        return jsonable(
            {
                "meta": self.meta,
                "model": self.model,
                "labels": list(self.labels),
                "weights": list(self.weights),
                "measures": list(self.measures),
                "layers": list(self.layers),
                "split": self.split,
                "regressor": self.regressor,
                "alpha": self.alpha,
                "reps": self.reps,
                "test_fraction": self.test_fraction,
                "seed": self.seed,
                "data": self.data,
                "profiles": [p.to_dict() for p in self.profiles],
                "insample": [s.to_dict() for s in self.insample],
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WeightsComparison:
        """Rebuild from :meth:`to_dict`."""
        alpha = d.get("alpha")
        return cls(
            model=str(d["model"]),
            labels=tuple(d["labels"]),
            weights=tuple(d["weights"]),
            measures=tuple(d["measures"]),
            layers=tuple(d["layers"]),
            profiles=tuple(ProfileResult.from_dict(p) for p in d["profiles"]),
            insample=tuple(InsampleScore.from_dict(s) for s in d.get("insample", [])),
            split=str(d.get("split", "pooled")),
            regressor=str(d.get("regressor", "ols")),
            alpha=None if alpha is None else float(alpha),
            reps=int(d.get("reps", 0)),
            test_fraction=nan_if_none(d.get("test_fraction")),
            seed=int(d.get("seed", 0)),
            data=dict(d.get("data", {})),
            meta=dict(d.get("meta", {})),
        )

    @property
    def paper_layers(self) -> bool:
        """True for InceptionV3 at paper 004's six layers, in its order (Figure 3 applies)."""
        return self.model == "inception_v3" and self.layers == PAPER004_LAYERS


# -- fitting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Protocol:
    """The held-out protocol and the in-sample flag, checked once."""

    reps: int
    test_fraction: float
    regressor: str
    alpha: float | None
    seed: int
    split: str
    min_std: float | None
    min_images: int
    insample: bool
    client: Any
    fit_device: str | None


def _fit_network(
    label: str,
    feats: Mapping[str, np.ndarray],
    valid: np.ndarray,
    ys: Mapping[str, np.ndarray],
    classes: np.ndarray | None,
    layers: Sequence[str],
    p: _Protocol,
) -> tuple[list[ProfileResult], list[InsampleScore]]:
    """Every measure's held-out profile and in-sample R² from one network's features."""
    profiles, scores = [], []
    X = {k: np.asarray(feats[k]) for k in layers}
    finite = np.asarray(valid, dtype=bool).copy()
    for k in layers:
        finite &= np.isfinite(X[k]).all(axis=1)
    for measure, y in ys.items():
        res = probe_layers(
            X,
            y,
            reps=p.reps,
            test_fraction=p.test_fraction,
            regressor=p.regressor,
            alpha=p.alpha,
            seed=p.seed,
            classes=classes,
            shuffled=False,
            layers=list(layers),
            min_std=p.min_std,
            min_images=p.min_images,
            split=p.split,
            client=p.client,
            device=p.fit_device,
        )
        profiles.append(res)
        if not p.insample:
            continue
        rows = finite & np.isfinite(y)
        for k in layers:
            fit = insample_fit(X[k][rows], y[rows])
            scores.append(
                InsampleScore(
                    label, measure, k, fit.r2, fit.saturated, fit.rank, fit.n_images, fit.dim
                )
            )
    return profiles, scores


def _check_protocol(
    reps: int,
    test_fraction: float,
    regressor: str,
    alpha: float | None,
    seed: int,
    split: str,
    min_std: float | None,
    min_images: int,
    insample: bool,
    client: Any,
    fit_device: str | None,
) -> _Protocol:
    reg, a = check_regressor(regressor, alpha)
    reps = check_split_options(reps, test_fraction, seed)
    check_fit_device(fit_device)
    floor = check_min_std(min_std)
    if not isinstance(insample, bool):
        raise RcvlabError(f"insample must be True or False, got {insample!r}")
    check_split(split, True)  # the name; whether the data has classes is checked later
    return _Protocol(
        reps,
        float(test_fraction),
        reg,
        a,
        int(seed),
        str(split),
        floor,
        int(min_images),
        insample,
        client,
        fit_device,
    )


def _names(value: Sequence[str] | str, what: str) -> tuple[str, ...]:
    """A non-empty tuple of distinct names from a list or a comma-separated string."""
    if isinstance(value, str | os.PathLike):
        items = [x.strip() for x in os.fspath(value).split(",") if x.strip()]
    else:
        items = [os.fspath(x).strip() if isinstance(x, os.PathLike) else x for x in value]
    if not items or not all(isinstance(x, str) and x for x in items):
        raise RcvlabError(f"{what} must be a non-empty list of names, got {value!r}")
    dup = sorted({x for x in items if items.count(x) > 1})
    if dup:
        raise RcvlabError(f"{what} lists {', '.join(dup)} more than once; give each once")
    return tuple(items)


def _labels(labels: Sequence[str] | None, sources: Sequence[str]) -> tuple[str, ...]:
    if labels is None:
        n_paths = sum(weights_kind(s) == "finetuned" for s in sources)
        out = [weights_label(s, n_paths) for s in sources]
        if len(set(out)) < len(out):  # e.g. several custom modules
            out = [f"{lab} {i + 1}" for i, lab in enumerate(out)]
        return tuple(out)
    out = _names(labels, "labels")
    if len(out) != len(sources):
        raise RcvlabError(
            f"labels has {len(out)} names for {len(sources)} networks; give one label per weights"
        )
    return out


def weights_comparison_from_features(
    features: Mapping[str, Mapping[str, ArrayLike]],
    measures: Mapping[str, ArrayLike],
    *,
    weights: Sequence[str] | None = None,
    model: str = "custom",
    classes: ArrayLike | None = None,
    reps: int = 10,
    test_fraction: float = 0.3,
    regressor: str = "ols",
    alpha: float | None = None,
    seed: int = 0,
    split: str = "pooled",
    insample: bool = True,
    min_std: float | None = None,
    min_images: int = 10,
    fit_device: str | None = None,
    command: str = "",
) -> WeightsComparison:
    """A :class:`WeightsComparison` from features already extracted.

    Parameters
    ----------
    features : mapping of str to mapping of str to array_like (n, d)
        Per network (its label), the features of every layer (same layers, same rows).
    measures : mapping of str to array_like (n,)
        Per concept, its value for every image (NaN: no value).
    weights : sequence of str, optional
        What each network's weights are (``random-xavier``, ``imagenet``, a file ...), for
        colours and the table; default: the labels.
    model : str
    classes : array_like (n,), optional
        Needed by ``split="per-class"``.

    Other parameters are those of :func:`compare_weights`.

    Returns
    -------
    WeightsComparison
    """
    p = _check_protocol(
        reps,
        test_fraction,
        regressor,
        alpha,
        seed,
        split,
        min_std,
        min_images,
        insample,
        None,
        fit_device,
    )
    labels = _names(list(features), "features")
    sources = labels if weights is None else _names(weights, "weights")
    if len(sources) != len(labels):
        raise RcvlabError(f"weights has {len(sources)} entries for {len(labels)} networks")
    layer_lists = {tuple(features[k]) for k in labels}
    if len(layer_lists) != 1:
        raise RcvlabError("every network must have features of the same layers, in one order")
    layers = next(iter(layer_lists))
    ys = {m: np.asarray(v, dtype=np.float64) for m, v in measures.items()}
    _names(list(ys), "measures")
    cls = None if classes is None or p.split == "pooled" else np.asarray(classes)
    profiles: list[ProfileResult] = []
    scores: list[InsampleScore] = []
    for label, source in zip(labels, sources, strict=True):
        feats = {k: np.asarray(v) for k, v in features[label].items()}
        n = next(iter(feats.values())).shape[0]
        pr, sc = _fit_network(label, feats, np.ones(n, bool), ys, cls, layers, p)
        for res, m in zip(pr, ys, strict=True):
            profiles.append(
                res.with_meta(
                    model=model,
                    weights=source,
                    measure=m,
                    meta=provenance(command=command, seed=p.seed, label=label),
                    extra={**res.extra, "label": label},
                )
            )
        scores += sc
    first = profiles[0].data
    return WeightsComparison(
        model=model,
        labels=labels,
        weights=sources,
        measures=tuple(ys),
        layers=tuple(layers),
        profiles=tuple(profiles),
        insample=tuple(scores),
        split=p.split,
        regressor=p.regressor,
        alpha=p.alpha,
        reps=profiles[0].reps,
        test_fraction=profiles[0].test_fraction,
        seed=p.seed,
        data={"n_images": first.get("n_images"), "n_used": first.get("n_used")},
        meta=provenance(command=command, seed=p.seed),
    )


# -- the analysis --------------------------------------------------------------------------


def _networks(
    model: str | Model | Sequence[Model],
    weights: Sequence[str] | str | None,
    seed: int,
) -> list[Model]:
    """Load (or take) every network; a weights entry that cannot load fails here."""
    if isinstance(model, str):
        specs = _names(DEFAULT_WEIGHTS if weights is None else weights, "weights")
        first = load_model(model, specs[0], seed=seed)
        # every network at the first one's input size (a weights file brings its own)
        rest = [load_model(model, w, seed=seed, input_size=first.input_size) for w in specs[1:]]
        return [first, *rest]
    if isinstance(model, Model):
        if weights is None:
            return [model]
        return [model.twin(w, seed) for w in _names(weights, "weights")]
    models = list(model)
    if not models or not all(isinstance(m, Model) for m in models):
        raise RcvlabError(
            "model must be a registry name, a Model or a list of Models (rcvlab.load_model)"
        )
    if weights is not None:
        raise RcvlabError(
            "weights= goes with a model name or one Model; a list of Models brings its own "
            "weights (name them with labels=)"
        )
    if len({m.name for m in models}) != 1:
        raise RcvlabError(
            "compare_weights compares one architecture: the Models are "
            + ", ".join(sorted({m.name for m in models}))
        )
    sizes = sorted({m.input_size for m in models})
    if len(sizes) > 1:
        raise RcvlabError(
            f"The Models see different input sizes ({', '.join(map(str, sizes))} px); load "
            "them with one input_size= so that their features are comparable."
        )
    return models


def compare_weights(
    model: str | Model | Sequence[Model],
    data: ImageSet,
    *,
    weights: Sequence[str] | str | None = None,
    measures: Sequence[str] | str = TEXTURE_MEASURES,
    layers: Sequence[str] | str | None = None,
    labels: Sequence[str] | None = None,
    reps: int = 10,
    test_fraction: float = 0.3,
    regressor: str = "ols",
    alpha: float | None = None,
    split: str = "pooled",
    seed: int = 0,
    insample: bool = True,
    min_std: float | None = None,
    min_images: int = 10,
    batch_size: int = 32,
    pooling: str = "gap",
    precision: str = "fp32",
    device: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    client: Any = None,
    fit_device: str | None = None,
    strict: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    command: str = "",
) -> WeightsComparison:
    """Concept RCVs at several layers of one architecture under several weights.

    Paper 004's Figure 3: how linearly texture concepts (Haralick ASM, contrast,
    correlation) are encoded at six depths of a random, a pretrained and a finetuned
    InceptionV3. Each network's features of every layer come from **one** extraction
    (:func:`rcvlab.features.extract_features`, cached with ``cache_dir``) and serve every
    measure. Per (weights, measure): held-out R² over ``reps`` random splits, the same
    splits for every network (:func:`rcvlab.probe.probe_layers`); per (weights, measure,
    layer) also the paper's in-sample R² (OLS with intercept on all images, no split:
    :func:`rcvlab.probe.insample.insample_fit`), which is 1 whenever the features span the
    images (``insample_saturated``).

    Parameters
    ----------
    model : str, Model or list of Model
        A registry name: each weights entry is loaded with
        ``rcvlab.load_model(model, w, seed=seed)``. One Model: its twins with ``weights``
        (``Model.twin``), or the Model alone without ``weights``. A list of Models of one
        architecture (their own weights; name them with ``labels``).
    data : ImageSet
        Images (``rcvlab.data.open_data``); the measures are computed from them when the
        data does not hold them.
    weights : sequence of str or comma-separated str, optional
        ``random-xavier`` (the paper's random network: Xavier-uniform conv and linear
        weights, zero biases), ``random`` (the architecture's own initialisation),
        ``imagenet``, or a weights file (a finetuned ``model.pt``). Default
        ``("random-xavier", "imagenet")`` for a name.
    measures : sequence of str or comma-separated str
        Concept measures (default the paper's ``glcm_asm``, ``glcm_contrast``,
        ``glcm_correlation``).
    layers : sequence of str or comma-separated str, optional
        Default: paper 004's six (:data:`rcvlab.models.layers.PAPER004_LAYERS`) for
        ``inception_v3``, every named layer for other models.
    labels : sequence of str, optional
        Display names of the networks; default ``random (Xavier)``, ``random``,
        ``pretrained``, ``finetuned`` (several files: with their folder and name).
    reps, test_fraction, regressor, alpha, seed, min_std, min_images
        The held-out protocol (:func:`rcvlab.probe.probe_layers`); ``seed`` also seeds the
        random weights.
    split : {"pooled", "per-class", "leave-one-class-out"}
        ``pooled`` (default): all images together, as the paper regressed the measure on
        all patches; the in-sample R² always uses all images.
    insample : bool
        Also compute the paper's in-sample R².
    batch_size, pooling, precision, device, cache_dir, client, strict, progress
        Extraction options (:func:`rcvlab.features.extract_features`).
    fit_device : str, optional
        Torch device of ridge fits (see :func:`rcvlab.layer_profile`).
    command : str
        Recorded in ``meta``.

    Returns
    -------
    WeightsComparison

    Raises
    ------
    UnknownNameError
        An unknown measure, layer, model or regressor — before any image is read.
    WeightsError
        Weights that cannot be loaded (a missing file, another architecture's file).
    RcvlabError
        Other bad options (duplicates, labels that do not match the weights, ...).
    DataError
        A measure that cannot be regressed (constant, too few values), found before any
        feature is extracted.
    """
    p = _check_protocol(
        reps,
        test_fraction,
        regressor,
        alpha,
        seed,
        split,
        min_std,
        min_images,
        insample,
        client,
        fit_device,
    )
    measure_names = _names(measures, "measures")
    data = as_image_set(data)
    split_name = check_split(p.split, data.classes is not None)
    classes = data.classes if split_name != "pooled" else None
    nets = _networks(model, weights, p.seed)
    name = nets[0].name
    if layers is None:
        layers = list(PAPER004_LAYERS) if name == "inception_v3" else None
    layer_names = tuple(s.name for s in nets[0].resolve(layers))
    for net in nets[1:]:
        net.resolve(list(layer_names))
    sources = tuple(m.weights for m in nets)
    label_names = _labels(labels, sources)
    ys: dict[str, np.ndarray] = {}
    for m in measure_names:
        ys[m] = check_measure(
            data.measure(m),
            classes,
            min_images=p.min_images,
            name=f"measure {m!r}",
            split=split_name,
        )
    profiles: list[ProfileResult] = []
    scores: list[InsampleScore] = []
    kw = dict(
        batch_size=batch_size,
        pooling=pooling,
        cache_dir=cache_dir,
        device=device,
        strict=strict,
        progress=progress,
        precision=precision,
        client=client,
    )
    skipped: list[dict[str, str]] = []
    for label, net in zip(label_names, nets, strict=True):
        feats = extract_features(net, data, list(layer_names), **kw)
        kept = _layers_with_positions(feats, net, layer_names)
        pr, sc = _fit_network(label, feats, feats.valid, ys, classes, kept, p)
        skipped = [{"path": path, "reason": why} for path, why in skipped_items(data, feats)]
        for res, m in zip(pr, measure_names, strict=True):
            profiles.append(
                res.with_meta(
                    model=net.name,
                    weights=net.weights,
                    measure=m,
                    data={
                        **res.data,
                        "source": data.source,
                        "fingerprint": data.fingerprint(),
                        "n_skipped": len(skipped),
                    },
                    meta=provenance(
                        command=command, seed=p.seed, data=data, precision=precision, label=label
                    ),
                    extra={
                        **res.extra,
                        "label": label,
                        "weights_id": net.weights_id,
                        "pooling": pooling,
                        "preprocessing": net.preprocessing.key(),
                        "feature_cache_key": feats.key,
                        **({"positions": feats.positions} if feats.positions else {}),
                    },
                )
            )
        scores += sc
    first = profiles[0].data
    return WeightsComparison(
        model=name,
        labels=label_names,
        weights=sources,
        measures=measure_names,
        layers=layer_names,
        profiles=tuple(profiles),
        insample=tuple(scores),
        split=split_name,
        regressor=p.regressor,
        alpha=p.alpha,
        reps=profiles[0].reps,
        test_fraction=profiles[0].test_fraction,
        seed=p.seed,
        data={
            "source": data.source,
            "fingerprint": data.fingerprint(),
            "n_images": len(data),
            "n_used": first.get("n_used"),
            "n_skipped": len(skipped),
            "skipped": skipped,
        },
        meta=provenance(
            command=command,
            seed=p.seed,
            data=data,
            precision=precision,
            pooling=pooling,
            weights_ids=[m.weights_id for m in nets],
        ),
    )


def _layers_with_positions(feats: FeatureSet, model: Model, layers: Sequence[str]) -> list[str]:
    """The layers to probe: corrected GAP can leave a layer without any position."""
    kept = [k for k in layers if feats.positions.get(k, -1) != 0]
    if not kept:
        raise RcvlabError(
            f"No probed layer of {model.name} has a position free of padding at "
            f"{model.input_size} px, so corrected GAP has nothing to average. Probe earlier "
            "layers, or use pooling='gap'."
        )
    return kept


__all__ = [
    "DEFAULT_WEIGHTS",
    "PAPER004_FIGURE3",
    "TEXTURE_MEASURES",
    "InsampleScore",
    "WeightsComparison",
    "compare_weights",
    "weights_comparison_from_features",
    "weights_kind",
    "weights_label",
]
