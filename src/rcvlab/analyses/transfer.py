"""Transfer to a regression task with a single-unit head (paper 000 §3.3, §4.4, Table 2).

For every variant — the pretrained backbone, the same architecture with random weights
(``scratch``) and the network pruned after a probed layer (``pruned:LAYER``) — and every seed,
a single-unit dense head is trained on GAP features with MSE and Adam to regress a measure
(the patch's average nuclei area). Each predicted area is mapped to the magnification whose
*training-set* mean area is nearest; MAE, accuracy and Cohen's kappa are reported on the test
split, and the pruned variant is compared with every other by a Wilcoxon signed-rank test
paired by seed.

``mode="linear"`` freezes the backbone: features are extracted once (one forward pass for the
pretrained network's layers, one for its random twin, cached) and only heads are trained, so a
``scratch`` variant is a *frozen random* backbone — a lower bound, not a network trained from
scratch. Features and target are standardised on the training split before the head sees them
(features centred per column and divided by one common scale, the target z-scored; the
head maps back to pixels), so that Adam's fixed step suits any feature scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from rcvlab.analyses.heads import Variant, finetune_network, train_head
from rcvlab.data.base import ImageSet
from rcvlab.distributed.client import check_client
from rcvlab.distributed.tasks import Call, Shared, run_calls
from rcvlab.errors import DataError, RcvlabError
from rcvlab.features.extract import extract_features
from rcvlab.models.registry import Model, load_model
from rcvlab.probe.splits import group_split
from rcvlab.prune.prune import check_prune_layer
from rcvlab.result import Result, jsonable, nan_if_none, provenance
from rcvlab.runio import write_torch

if TYPE_CHECKING:
    from distributed import Client


def parse_variants(variants: Sequence[str], model: Model) -> list[Variant]:
    """``["pretrained", "scratch", "pruned:mixed8"]`` -> variants with their feature layer.

    ``pretrained`` and ``scratch`` read the last layer before the classifier (the full
    backbone: ``mixed10``, ``add16``, ``head`` ...).
    """
    names = model.layers
    last = names[names.index("pre-softmax") - 1] if "pre-softmax" in names else names[-1]
    out = []
    for v in variants:
        v = v.strip()
        if v in ("pretrained", "scratch"):
            out.append(Variant(v, v, last))
        elif v.startswith("pruned:"):
            spec = check_prune_layer(model, v.split(":", 1)[1].strip())
            out.append(Variant(f"pruned:{spec.name}", "pruned", spec.name))
        else:
            raise RcvlabError(
                f"Unknown transfer variant '{v}'; use pretrained, scratch or pruned:LAYER "
                f"(a layer of `rcvlab layers {model.name}`)."
            )
    if len({v.name for v in out}) != len(out):
        raise RcvlabError(f"Duplicate transfer variants in {list(variants)}.")
    return out


def nearest_class(values: np.ndarray, class_means: Mapping[str, float]) -> np.ndarray:
    """Label of the class whose mean is nearest to each value (ties: the smaller mean)."""
    labels = sorted(class_means, key=lambda k: class_means[k])
    means = np.array([class_means[k] for k in labels])
    idx = np.abs(np.asarray(values, dtype=np.float64)[:, None] - means[None, :]).argmin(axis=1)
    return np.asarray(labels, dtype=object)[idx]


@dataclass(frozen=True)
class TransferTestSet:
    """The test split of a transfer experiment: one entry per patch, in data order.

    Attributes
    ----------
    index : tuple of int
        Row of the patch in the data set.
    path : tuple of str
        The patch's identifier (its file path; ``array[i]`` for in-memory images).
    group : tuple of str
        Its source group (slide).
    true_class : tuple of str
        Its class (magnification).
    true_area : tuple of float
        Its measure (the average nuclei area by default).
    """

    index: tuple[int, ...] = ()
    path: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    true_class: tuple[str, ...] = ()
    true_area: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class TransferRun:
    """One variant and seed: test-set errors and agreement.

    Attributes
    ----------
    variant, seed, layer, dim, best_epoch
        The variant, the head's seed, the layer read (its feature dimension) and the epoch
        kept (best validation MAE).
    mae, mae_by_class
        Test MAE of the measure, overall and per true class.
    accuracy, kappa, kappa_quadratic
        Agreement of the nearest-mean class with the true class (Cohen's kappa unweighted
        and with quadratic weights, classes in magnification order); NaN when fewer than two
        classes occur.
    n_test
        Test patches with a prediction.
    predicted_area
        The prediction for every patch of :attr:`TransferResult.test`, in its order; NaN
        where this run has none (features not finite, image unreadable).
    """

    variant: str
    seed: int
    layer: str
    dim: int
    mae: float
    mae_by_class: dict[str, float]
    accuracy: float
    kappa: float
    kappa_quadratic: float
    best_epoch: int
    n_test: int = 0
    predicted_area: tuple[float, ...] = field(default=(), repr=False)


PREDICTION_COLUMNS = (
    "variant",
    "seed",
    "path",
    "group",
    "true_class",
    "true_area",
    "predicted_area",
    "predicted_class",
)
"""Columns of :meth:`TransferResult.predictions_frame` (``predictions.csv``)."""

CLASS_COLUMNS = ("variant", "seed", "class", "n_test", "mae")
"""Columns of :meth:`TransferResult.class_frame` (``transfer_by_class.csv``)."""


@dataclass(frozen=True)
class TransferResult(Result):
    """Every run of a transfer experiment, its test predictions and the Wilcoxon tests.

    :meth:`to_frame` (``transfer.csv``) has one row per variant and seed with the columns
    ``variant``, ``seed``, ``layer`` (the layer read), ``dim`` (its feature dimension),
    ``best_epoch`` (epoch kept by validation MAE), ``n_test`` (test patches predicted),
    ``mae`` (test MAE of the measure), ``accuracy``, ``kappa`` and ``kappa_quadratic``
    (agreement of the nearest-mean class with the true class). :meth:`class_frame` has the
    MAE per true class, :meth:`predictions_frame` every test prediction and
    :meth:`summary_frame` the mean and standard deviation over seeds (the paper's Table 2).

    Attributes
    ----------
    runs : tuple of TransferRun
        One per variant and seed, variants in the order given, seeds 0 … seeds-1.
    class_mean_area : dict of str to float
        Training-split mean of the measure per class, in magnification order: a prediction
        maps to the class whose mean is nearest (:func:`nearest_class`).
    wilcoxon : dict
        ``pruned_vs_<other>`` (or ``pruned_<layer>_vs_<other>`` with several pruned
        variants): ``statistic``, ``p`` (two-sided) and ``n`` (seeds paired).
    test : TransferTestSet
        The test patches; every run's ``predicted_area`` follows their order.
    model, weights, mode, measure, epochs, lr, batch_size, fractions
        The experiment's settings.
    data : dict
        Split sizes and groups: ``n_images``, ``n_excluded_nan`` (no finite measure),
        ``n_train``, ``n_val``, ``n_test``, ``n_groups`` and ``groups`` per split, and the
        ``skipped`` items.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`): command, versions, ``seed`` (of the
        group split and the random-weights twin), data fingerprint.
    heads : dict of str to dict of tensors
        The trained heads' state dicts by ``"<variant>/seed<k>"``. Tensors are not JSON:
        heads are **not** written by :meth:`to_json` (the run folder keeps them in
        ``heads.pt``), a result read back with :meth:`from_json` has none, and they take
        no part in equality.
    """

    kind: ClassVar[str] = "transfer"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "variant",
        "seed",
        "layer",
        "dim",
        "best_epoch",
        "n_test",
        "mae",
        "accuracy",
        "kappa",
        "kappa_quadratic",
    )

    runs: tuple[TransferRun, ...]
    class_mean_area: dict[str, float]
    wilcoxon: dict[str, dict[str, float]]
    test: TransferTestSet
    model: str
    weights: str
    mode: str
    measure: str
    epochs: int
    lr: float
    batch_size: int
    fractions: tuple[float, float, float]
    data: dict[str, Any]
    meta: dict[str, Any]
    heads: dict[str, dict[str, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def variants(self) -> list[str]:
        """The variants, in the order given."""
        return list(dict.fromkeys(r.variant for r in self.runs))

    @property
    def seed(self) -> int | None:
        """Seed of the group split and of the random-weights twin (from :attr:`meta`)."""
        return self.meta.get("seed")

    def to_frame(self) -> pd.DataFrame:
        """One row per (variant, seed); the columns are listed in the class docstring."""
        rows = [{c: getattr(r, c) for c in self.frame_columns} for r in self.runs]
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def class_frame(self) -> pd.DataFrame:
        """Test MAE per true class: ``variant, seed, class, n_test, mae``, one row each.

        ``n_test`` counts the class's test patches the run predicted (0 for a result read
        from a file written before predictions were kept).
        """
        true_class = np.asarray(self.test.true_class, dtype=object)
        rows = []
        for r in self.runs:
            pred = np.asarray(r.predicted_area, dtype=np.float64)
            seen = true_class[np.isfinite(pred)] if pred.size == len(true_class) else true_class[:0]
            for c, mae in r.mae_by_class.items():
                rows.append((r.variant, r.seed, c, int((seen == c).sum()), mae))
        return pd.DataFrame(rows, columns=list(CLASS_COLUMNS))

    def predictions_frame(self) -> pd.DataFrame:
        """Every test prediction (``predictions.csv``), one row per variant, seed and patch.

        Columns: ``variant``, ``seed``, ``path``, ``group``, ``true_class``, ``true_area``
        (the measure), ``predicted_area`` and ``predicted_class`` (the class whose
        training-split mean is nearest to the prediction). Patches a run could not predict
        are left out.
        """
        t = self.test
        parts = []
        for r in self.runs:
            pred = np.asarray(r.predicted_area, dtype=np.float64)
            if pred.size != len(t):
                continue  # a result read from a file written before predictions were kept
            ok = np.isfinite(pred)
            part = pd.DataFrame(
                {
                    "variant": r.variant,
                    "seed": r.seed,
                    "path": np.asarray(t.path, dtype=object)[ok],
                    "group": np.asarray(t.group, dtype=object)[ok],
                    "true_class": np.asarray(t.true_class, dtype=object)[ok],
                    "true_area": np.asarray(t.true_area, dtype=np.float64)[ok],
                    "predicted_area": pred[ok],
                }
            )
            part["predicted_class"] = nearest_class(pred[ok], self.class_mean_area)
            parts.append(part)
        if not parts:
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        return pd.concat(parts, ignore_index=True)[list(PREDICTION_COLUMNS)]

    def summary_frame(self) -> pd.DataFrame:
        """Mean and standard deviation (ddof=1) over seeds per variant (the paper's Table 2).

        Index: variant. Columns ``<metric>_mean`` and ``<metric>_std`` for ``mae``,
        ``accuracy``, ``kappa``, ``kappa_quadratic`` and ``mae_<class>`` (MAE per class).
        """
        f = self.to_frame()[["variant", "mae", "accuracy", "kappa", "kappa_quadratic"]]
        for c in self.class_mean_area:
            f[f"mae_{c}"] = [r.mae_by_class.get(c, math.nan) for r in self.runs]
        g = f.groupby("variant", sort=False)
        out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std"))
        metrics = [c for c in f.columns if c != "variant"]
        return out[[f"{m}_{s}" for m in metrics for s in ("mean", "std")]]

    def to_dict(self) -> dict[str, Any]:
        """Everything but the heads, JSON-ready, plus the ``best_variant`` (lowest mean MAE)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "heads"}
        d["runs"] = [asdict(r) for r in self.runs]
        d["test"] = asdict(self.test)
        mae = self.summary_frame()["mae_mean"] if self.runs else pd.Series(dtype=float)
        d["best_variant"] = mae.idxmin() if mae.notna().any() else None
        return jsonable(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TransferResult:
        """Rebuild from :meth:`to_dict`.

        Also reads a ``transfer.json`` written before the result contract (provenance in
        top-level fields, no predictions: :meth:`predictions_frame` is then empty).
        """
        runs = tuple(
            TransferRun(
                variant=r["variant"],
                seed=int(r["seed"]),
                layer=r["layer"],
                dim=int(r["dim"]),
                mae=nan_if_none(r["mae"]),
                mae_by_class={k: nan_if_none(v) for k, v in r["mae_by_class"].items()},
                accuracy=nan_if_none(r["accuracy"]),
                kappa=nan_if_none(r["kappa"]),
                kappa_quadratic=nan_if_none(r["kappa_quadratic"]),
                best_epoch=int(r["best_epoch"]),
                n_test=int(r.get("n_test", 0)),
                predicted_area=tuple(nan_if_none(v) for v in r.get("predicted_area", ())),
            )
            for r in d["runs"]
        )
        t = d.get("test") or {}
        test = TransferTestSet(
            index=tuple(int(i) for i in t.get("index", ())),
            path=tuple(str(p) for p in t.get("path", ())),
            group=tuple(str(g) for g in t.get("group", ())),
            true_class=tuple(str(c) for c in t.get("true_class", ())),
            true_area=tuple(nan_if_none(v) for v in t.get("true_area", ())),
        )
        data = dict(d.get("data", {}))
        meta = d.get("meta")
        if meta is None:  # the layout before the result contract
            meta = {
                "command": d.get("command", ""),
                "rcvlab_version": d.get("rcvlab_version", ""),
                "versions": {},
                "seed": d.get("seed"),
                "data_source": data.get("source", ""),
            }
        return cls(
            runs=runs,
            class_mean_area={k: nan_if_none(v) for k, v in d["class_mean_area"].items()},
            wilcoxon={
                k: {
                    "statistic": nan_if_none(w["statistic"]),
                    "p": nan_if_none(w["p"]),
                    "n": int(w["n"]),
                }
                for k, w in d["wilcoxon"].items()
            },
            test=test,
            model=d.get("model", ""),
            weights=d.get("weights", ""),
            mode=d.get("mode", "linear"),
            measure=d.get("measure", "nuclei_area"),
            epochs=int(d.get("epochs", 5)),
            lr=float(d.get("lr", 1e-4)),
            batch_size=int(d.get("batch_size", 32)),
            fractions=tuple(float(x) for x in d.get("fractions", (0.6, 0.2, 0.2))),  # type: ignore[arg-type]
            data=data,
            meta=dict(meta),
        )

    def to_markdown(self) -> str:
        """``summary.md``: Table 2 style means (std), per-class MAE and the Wilcoxon tests."""
        s = self.summary_frame()
        lines = [f"# Transfer: {self.model} ({self.weights}), {self.mode} mode, {self.measure}", ""]
        lines += [
            "| variant | MAE | accuracy | kappa | kappa (quadratic) |",
            "|---|---|---|---|---|",
        ]
        for v, row in s.iterrows():
            cells = [
                f"{row[f'{m}_mean']:.3f} ({row[f'{m}_std']:.3f})"
                for m in ("mae", "accuracy", "kappa", "kappa_quadratic")
            ]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        classes = list(self.class_mean_area)
        lines += [
            "",
            "MAE per class (mean over seeds):",
            "",
            "| variant | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for v, row in s.iterrows():
            cells = [f"{row.get(f'mae_{c}_mean', float('nan')):.2f}" for c in classes]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Training-set mean area per class (used for the mapping): "
            + ", ".join(f"{k} {v:.2f}" for k, v in self.class_mean_area.items()),
            "",
        ]
        lines += ["Wilcoxon signed-rank tests of MAE, paired by seed (two-sided):", ""]
        for k, w in self.wilcoxon.items():
            lines.append(f"- {k}: statistic {w['statistic']:.3g}, p = {w['p']:.3g} (n = {w['n']})")
        lines += [
            "",
            f"Seeds: {len(set(r.seed for r in self.runs))}; epochs {self.epochs}, "
            f"lr {self.lr:g}, batch {self.batch_size}; split seed {self.seed}. "
            "Every test prediction is in predictions.csv.",
            f"Command: `{self.meta.get('command', '')}`",
            "",
        ]
        return "\n".join(lines)


def check_transfer_options(
    *,
    seeds: int,
    mode: str,
    epochs: int,
    lr: float,
    batch_size: int,
    fractions: Sequence[float],
    seed: int,
    feature_batch_size: int = 32,
    device: str | None = None,
) -> None:
    """Raise a one-line :class:`RcvlabError` for an option :func:`transfer` cannot use.

    Run by :func:`transfer` before any work; callers (the CLI) may run it before theirs.
    """

    def whole(name: str, value: Any, low: int, flag: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise RcvlabError(f"{name} must be a whole number >= {low}, got {value!r}; {flag}.")

    if mode not in ("linear", "finetune"):
        raise RcvlabError(f"Unknown mode {mode!r}; use 'linear' or 'finetune'.")
    whole("epochs", epochs, 1, "train the heads for at least one epoch (--epochs 5)")
    whole("seeds", seeds, 1, "train at least one head per variant (--seeds 10)")
    whole("batch_size", batch_size, 1, "use a positive batch size (--batch-size 32)")
    whole("feature_batch_size", feature_batch_size, 1, "use a positive batch size")
    whole("seed", seed, 0, "use a seed >= 0 (--seed 0)")
    if (
        isinstance(lr, bool)
        or not isinstance(lr, int | float | np.floating | np.integer)
        or not math.isfinite(lr)
        or lr <= 0
    ):
        raise RcvlabError(f"lr must be a finite number > 0, got {lr!r}; e.g. --lr 1e-4.")
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        f = np.full(1, np.nan)
    if (
        f.shape != (3,)
        or not np.isfinite(f).all()
        or (f <= 0).any()
        or not math.isclose(f.sum(), 1.0, abs_tol=1e-9)
    ):
        raise RcvlabError(
            f"fractions must be three shares > 0 (train, validation, test) summing to 1, "
            f"got {tuple(fractions) if isinstance(fractions, Sequence) else fractions!r}; "
            "e.g. (0.6, 0.2, 0.2)."
        )
    if device is not None:
        from rcvlab.features.extract import choose_device

        choose_device(device)


def transfer(
    model: str | Model,
    data: ImageSet,
    variants: Sequence[str] = ("pretrained", "scratch", "pruned:mixed8"),
    *,
    weights: str = "imagenet",
    seeds: int = 10,
    mode: str = "linear",
    measure: str = "nuclei_area",
    epochs: int = 5,
    lr: float = 1e-4,
    batch_size: int = 32,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    feature_batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    strict: bool = False,
    progress: bool = False,
    command: str = "",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    client: Client | None = None,
) -> TransferResult:
    """Train single-unit heads for every variant and seed and evaluate them (see module doc).

    Every option and variant (``pruned:LAYER`` with :func:`rcvlab.prune.check_prune_layer`,
    the same check :func:`rcvlab.prune.prune` makes) is checked before any work.

    Parameters
    ----------
    model : str or Model
        A registry name (loaded with ``weights`` and ``seed``) or a loaded model.
    data : ImageSet
        Patches with the measure, ``classes`` (magnification labels, e.g. ``"10X"``) and
        ``groups`` (source image of each patch: splits never share a group).
    variants : sequence of str
        ``pretrained``, ``scratch``, ``pruned:LAYER`` (any number of pruned layers).
    weights : str
        Weights when ``model`` is a name.
    seeds : int
        Heads per variant (seeds 0 … seeds-1: initialisation and batch order), >= 1.
    mode : {"linear", "finetune"}
        ``linear`` freezes the backbone (features once, heads only); ``finetune`` trains the
        whole network (backbone ending in GAP + head) for every variant and seed, keeping the
        epoch with the best validation MAE (its checkpoint goes to ``checkpoint_dir``).
    measure : str
        The regression target (a measure of ``data``).
    epochs, lr, batch_size : int, float, int
        Adam training of each head: epochs >= 1, learning rate > 0, batch size >= 1.
    fractions : (float, float, float)
        Train / validation / test shares (each > 0, summing to 1), split by group with
        ``seed`` (:func:`rcvlab.probe.splits.group_split`).
    seed : int
        Seed of the group split and of the random-weights twin (``scratch``).
    feature_batch_size, cache_dir, device, progress
        Feature extraction (linear mode).
    strict : bool
        Raise on the first unreadable image instead of leaving it out (and listing it in
        ``data["skipped"]``).
    command : str
        Recorded in ``meta``.
    checkpoint_dir : path, optional
        Finetune mode: where every variant's and seed's best network is saved.
    client : distributed.Client, optional
        Train the heads on this Dask cluster (:mod:`rcvlab.distributed.tasks`), one task per
        variant and seed. Linear mode: the features are extracted here once, scattered once
        to every worker, and each task trains one head with one torch thread; the result
        equals a run here under ``torch.set_num_threads(1)`` (with more threads here, torch
        may sum in another order: equal thread counts give equal numbers). With
        ``cache_dir`` the extraction runs on the cluster too (:func:`rcvlab.features.
        extract.extract_features` with ``client``; the folder must be one every worker
        sees); without, it runs here. Finetune mode:
        the model and the data are scattered once and each task trains one network (on
        its worker's device); ``checkpoint_dir`` must then be a folder every worker sees.

    Returns
    -------
    TransferResult

    Raises
    ------
    RcvlabError
        An invalid option or variant (one line, naming the value).
    PruneError
        A ``pruned:LAYER`` variant at a layer :func:`rcvlab.prune.prune` refuses.
    DataError
        Data without classes or groups, or too few patches for a three-way split.
    """
    if isinstance(model, ImageSet):
        raise RcvlabError(
            "transfer takes the model first, then the data: transfer(model, data, variants)."
        )
    check_transfer_options(
        seeds=seeds,
        mode=mode,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        fractions=fractions,
        seed=seed,
        feature_batch_size=feature_batch_size,
        device=device,
    )
    check_client(client)
    if isinstance(variants, str):
        variants = [v for v in variants.split(",") if v.strip()]
    if not variants:
        raise RcvlabError("No transfer variants; give pretrained, scratch and/or pruned:LAYER.")
    if data.classes is None or data.groups is None:
        raise DataError(
            "Transfer needs a class (magnification) and a group (source image) per patch; "
            "give 'class' and 'group' columns in the CSV manifest."
        )
    m = load_model(model, weights, seed=seed) if isinstance(model, str) else model
    vs = parse_variants(variants, m)
    y_all = data.measure(measure)
    keep = np.isfinite(y_all)
    n_nan = int((~keep).sum())
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        raise DataError(f"No patch has a finite {measure}; nothing to transfer to.")
    tr, va, te = (idx[s] for s in group_split(data.groups[idx], tuple(fractions), seed))
    if min(len(tr), len(va), len(te)) < 2:
        raise DataError(
            f"Too few patches with a finite {measure} for a 3-way split by group "
            f"({len(tr)} train / {len(va)} validation / {len(te)} test); need 2 in each."
        )
    classes = data.classes
    class_means = class_mean_area(y_all[tr], classes[tr])
    unseen = sorted(set(classes[np.concatenate([va, te])]) - set(class_means))
    if unseen:
        raise DataError(
            f"Class(es) {unseen} have no training patch in the split by group (seed {seed}), "
            "so no prediction can be mapped to them; try another --seed or add source images."
        )

    kw = dict(
        batch_size=feature_batch_size,
        cache_dir=cache_dir,
        device=device,
        strict=strict,
        progress=progress,
        # The workers write their shards into the cache: without one, extract here.
        client=client if cache_dir is not None else None,
    )
    feats = {}
    if mode == "linear":
        pre_layers = sorted({v.layer for v in vs if v.kind != "scratch"}, key=m.layers.index)
        if pre_layers:
            feats["model"] = extract_features(m, data, pre_layers, **kw)
        if any(v.kind == "scratch" for v in vs):
            last = next(v.layer for v in vs if v.kind == "scratch")
            feats["scratch"] = extract_features(m.twin("random", seed), data, [last], **kw)
    # Every (variant, seed) is one independent run; the big inputs they share (features,
    # or the model and the images) are named, so that the same calls run here or, scattered
    # once, as tasks on a Dask cluster.
    shared: dict[Any, Any] = {"y": y_all}
    jobs: list[tuple[Variant, int]] = []
    calls: list[Call] = []
    if mode == "finetune":
        shared.update(model=m, data=data)
        if checkpoint_dir is not None:
            os.makedirs(checkpoint_dir, exist_ok=True)
    for v in vs:
        if mode == "linear":
            key = ("features", "scratch" if v.kind == "scratch" else "model", v.layer)
            shared[key] = feats[key[1]][v.layer]
            ok = np.isfinite(shared[key]).all(1)
            a, b, c = tr[ok[tr]], va[ok[va]], te[ok[te]]
            if min(len(a), len(b), len(c)) < 2:
                raise DataError(
                    f"Too few readable patches for {v.name} ({len(a)} train / {len(b)} "
                    f"validation / {len(c)} test); need 2 in each. See skipped.csv."
                )
        for s in range(seeds):
            jobs.append((v, s))
            train = dict(seed=s, epochs=epochs, lr=lr, batch_size=batch_size)
            if mode == "linear":
                calls.append(Call(_linear_run, (Shared(key), Shared("y"), a, b, c), train))
                continue
            ckpt = None
            if checkpoint_dir is not None:
                name = f"{v.name.replace(':', '_')}_seed{s}.pt"
                ckpt = os.path.abspath(os.path.join(checkpoint_dir, name))
            more = dict(twin_seed=seed, device=device, strict=strict, checkpoint=ckpt)
            args = (Shared("model"), v, Shared("data"), Shared("y"), tr, va, te)
            calls.append(Call(_finetune_run, args, {**train, **more}))
    outs = run_calls(client, calls, shared, name="rcvlab-transfer")
    runs, heads = [], {}
    for (v, s), out in zip(jobs, outs, strict=True):
        heads[f"{v.name}/seed{s}"] = out.head
        runs.append(
            _evaluate(
                v, s, out.dim, out.best_epoch, out.pred, out.c, te, y_all, classes, class_means
            )
        )
    g = data.groups
    splits = (("train", tr), ("val", va), ("test", te))
    return TransferResult(
        runs=tuple(runs),
        class_mean_area=class_means,
        wilcoxon=paired_wilcoxon(runs, [v.name for v in vs if v.kind == "pruned"]),
        test=TransferTestSet(
            index=tuple(int(i) for i in te),
            path=tuple(data.ids[int(i)] for i in te),
            group=tuple(str(x) for x in g[te]),
            true_class=tuple(str(x) for x in classes[te]),
            true_area=tuple(float(x) for x in y_all[te]),
        ),
        model=m.name,
        weights=m.weights,
        mode=mode,
        measure=measure,
        epochs=int(epochs),
        lr=float(lr),
        batch_size=int(batch_size),
        fractions=tuple(float(x) for x in fractions),  # type: ignore[arg-type]
        data={
            "source": data.source,
            "n_images": len(data),
            "n_excluded_nan": n_nan,
            "n_train": len(tr),
            "n_val": len(va),
            "n_test": len(te),
            "n_groups": {k: len(set(g[i].tolist())) for k, i in splits},
            "groups": {k: sorted(set(g[i].tolist())) for k, i in splits},
            "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
        },
        meta=provenance(command=command, seed=int(seed), data=data, device=device),
        heads=heads,
    )


class _Run(NamedTuple):
    """One variant and seed: predictions ``pred`` for test patches ``c``, and the head."""

    pred: np.ndarray
    c: np.ndarray
    dim: int
    best_epoch: int
    head: dict[str, torch.Tensor]


def _linear_run(
    X: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    *,
    seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
) -> _Run:
    """Linear mode: a head trained on rows ``a`` of the features, validated on ``b``,
    predicting ``c`` (a task of its own on a Dask cluster)."""
    head, log = train_head(
        np.asarray(X[a], dtype=np.float64),
        y[a],
        np.asarray(X[b], dtype=np.float64),
        y[b],
        seed=seed,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
    )
    with torch.no_grad():
        x_test = torch.tensor(np.asarray(X[c], dtype=np.float64), dtype=torch.float32)
        pred = head(x_test).numpy().astype(np.float64)
    return _Run(pred, c, int(X.shape[1]), int(log["best_epoch"]), head.state_dict())


def _finetune_run(
    m: Model,
    v: Variant,
    data: ImageSet,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    *,
    seed: int,
    twin_seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: str | None,
    strict: bool,
    checkpoint: str | None,
) -> _Run:
    """Finetune mode: one network trained end to end; its best state saved to
    ``checkpoint`` (by the process that trained it: on a cluster, a path all workers see)."""
    net = finetune_network(
        m,
        v,
        data,
        y,
        a,
        b,
        seed=seed,
        twin_seed=twin_seed,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        strict=strict,
    )
    c = c[np.isin(c, net.readable(c))]
    pred = net.predict(c)
    c = c[np.isin(c, net.readable(c))]  # predict() may find more unreadable
    if checkpoint is not None:
        write_torch(checkpoint, net.state_dict())
    return _Run(pred, c, int(net.dim), int(net.log["best_epoch"]), net.head_state())


def _evaluate(
    v: Variant,
    s: int,
    dim: int,
    best_epoch: int,
    pred: np.ndarray,
    c: np.ndarray,
    te: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    class_means: dict[str, float],
) -> TransferRun:
    """Test metrics of one run: ``pred`` for patches ``c`` (a subset of the test split ``te``)."""
    truth = y[c]
    err = np.abs(pred - truth)
    mag_true = classes[c]
    labels = list(class_means)
    mag_pred = nearest_class(pred, class_means)
    by_class = {k: float(err[mag_true == k].mean()) for k in labels if (mag_true == k).any()}
    full = np.full(len(te), np.nan)
    full[np.searchsorted(te, c)] = pred
    return TransferRun(
        variant=v.name,
        seed=s,
        layer=v.layer,
        dim=int(dim),
        mae=float(err.mean()) if err.size else math.nan,
        mae_by_class=by_class,
        accuracy=float((mag_pred == mag_true).mean()) if err.size else math.nan,
        kappa=_kappa(mag_true, mag_pred, labels, None),
        kappa_quadratic=_kappa(mag_true, mag_pred, labels, "quadratic"),
        best_epoch=int(best_epoch),
        n_test=len(c),
        predicted_area=tuple(float(x) for x in full),
    )


def class_mean_area(y: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Mean of ``y`` per class, classes in magnification order (``5X`` before ``10X``).

    Called on the training split: these means define the nearest-class mapping.
    """
    y = np.asarray(y, dtype=np.float64)
    classes = np.asarray(classes)
    return {c: float(y[classes == c].mean()) for c in _ordered(classes)}


def _ordered(labels: np.ndarray) -> list[str]:
    """Class labels in natural order (``5X`` before ``10X``)."""

    def key(s: str) -> tuple[float, str]:
        num = "".join(ch for ch in s if ch.isdigit() or ch == ".")
        try:
            return (float(num), s)
        except ValueError:
            return (math.inf, s)

    return sorted(set(labels.tolist()), key=key)


def _kappa(true: np.ndarray, pred: np.ndarray, labels: list[str], weights: str | None) -> float:
    if len(set(true.tolist()) | set(pred.tolist())) < 2:
        return float("nan")
    return float(cohen_kappa_score(true, pred, labels=labels, weights=weights))


def paired_wilcoxon(
    runs: Sequence[TransferRun], pruned: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Every pruned variant vs every other: Wilcoxon signed-rank test of the MAE, paired by seed.

    Parameters
    ----------
    runs : sequence of TransferRun
    pruned : sequence of str
        Names of the pruned variants (``pruned:mixed8``).

    Returns
    -------
    dict
        ``pruned_vs_<other>`` with one pruned variant, ``pruned_<layer>_vs_<other>`` with
        several (``:`` written ``_``): ``statistic``, two-sided ``p`` (``scipy.stats.wilcoxon``)
        and ``n`` (seeds in both); NaN with fewer than two seeds or identical MAEs.
    """
    mae: dict[str, dict[int, float]] = {}
    for r in runs:
        mae.setdefault(r.variant, {})[r.seed] = r.mae
    out = {}
    for p in pruned:
        for o in (v for v in mae if v != p):
            seeds = sorted(set(mae[p]) & set(mae[o]))
            a = np.array([mae[p][s] for s in seeds])
            b = np.array([mae[o][s] for s in seeds])
            # one pruned variant: the contract's plain "pruned_vs_pretrained"; several: by layer
            left = "pruned" if len(pruned) == 1 else p.replace(":", "_")
            key = f"{left}_vs_{o.replace(':', '_')}"
            if len(seeds) < 2 or np.all(a == b) or not np.isfinite(a - b).all():
                out[key] = {"statistic": math.nan, "p": math.nan, "n": len(seeds)}
                continue
            w = stats.wilcoxon(a, b)
            out[key] = {"statistic": float(w.statistic), "p": float(w.pvalue), "n": len(seeds)}
    return out


__all__ = [
    "CLASS_COLUMNS",
    "PREDICTION_COLUMNS",
    "TransferResult",
    "TransferRun",
    "TransferTestSet",
    "Variant",
    "check_transfer_options",
    "class_mean_area",
    "nearest_class",
    "paired_wilcoxon",
    "parse_variants",
    "train_head",
    "transfer",
]
