"""Finetuning a network end to end on a binary task, as paper 004 (METHOD.md §7).

The paper finetunes an ImageNet InceptionV3 on tumour / non-tumour patches; the authors'
code fixes what the text leaves open. :func:`finetune` follows it:

* a single-logit head (:func:`rcvlab.models.heads.binary_head`) trained with binary
  cross-entropy on the logit (``BCEWithLogitsLoss``); ``sigmoid(logit) = P(positive)``;
* SGD with Nesterov momentum 0.9, no weight decay, and Keras' ``decay``: the learning rate
  of update ``t`` (0, 1, ...) is ``lr / (1 + decay * t)`` (a ``LambdaLR`` stepped after every
  update) — the paper's "decay 1e-6" is this schedule, **not** weight decay;
* horizontal and vertical flips, brightness and hue jitter (``torchvision.transforms.v2``
  functions, parameters drawn per image from a seeded numpy generator, :class:`Augment`);
* batch 32, the whole network in training mode (BatchNorm statistics update) and in
  evaluation mode for validation; the epoch with the best validation AUC is kept.

Randomness (split, batch order, augmentation, dropout) comes from ``seed`` alone: the
training runs under :func:`torch.random.fork_rng`, so the caller's global RNG state is
left as it was, and two runs with one seed on a CPU give identical weights.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score

from rcvlab.analyses.common import (
    analysis_meta,
    array_from_json,
    check_int,
    check_seed,
    frozen_array,
)
from rcvlab.data.base import ImageSet, TensorImageSet
from rcvlab.errors import DataError, RcvlabError
from rcvlab.models.heads import binary_head, is_binary
from rcvlab.models.registry import Model, as_model
from rcvlab.models.weights import state_digest
from rcvlab.progress import progress_bar
from rcvlab.result import Result, jsonable, nan_if_none

#: The paper's validation accuracy and AUC (InceptionV3 on 2,274 Camelyon17 patches).
PAPER_VAL_ACCURACY = 0.87
PAPER_VAL_AUC = 0.97
#: Metrics recorded per epoch, in :attr:`FinetuneResult.history`.
HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "train_auc",
    "val_loss",
    "val_accuracy",
    "val_auc",
    "lr",
)
#: Preprocessed images are kept in memory (uint8) up to this size, else read every epoch.
CACHE_BYTES = 2 << 30


@dataclass(frozen=True)
class FinetuneResult(Result):
    """A network finetuned on a binary task, with its training history.

    Attributes
    ----------
    model_name : str
        The architecture (``inception_v3``, ``custom``, ...).
    weights : str
        The weights training started from (``imagenet``, a path, ...).
    positive, negative : str
        The class of the single logit (label 1) and the other class (label 0).
    history : dict of str to ndarray
        One value per epoch for each of :data:`HISTORY_KEYS`: mean training loss (binary
        cross-entropy on the augmented batches, in training mode), training accuracy and
        AUC (of those same outputs), validation loss, accuracy and AUC (evaluation mode,
        no augmentation), and ``lr``, the learning rate after the epoch's last update.
    best_epoch : int
        The epoch (1-based) with the highest validation AUC (the first on ties), whose
        weights :attr:`model` holds.
    val_accuracy, val_auc : float
        Validation accuracy (``P(positive) > 0.5`` is a positive call) and AUC at
        ``best_epoch``.
    val_ids : tuple of str
    val_labels : ndarray of int
        1 for ``positive``, 0 for ``negative``.
    val_probabilities : ndarray of float
        ``P(positive)`` of every validation image at ``best_epoch`` (AUC and accuracy can
        be recomputed from these).
    train_ids : tuple of str
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`) with ``options`` (every training
        option), ``split`` (``group`` or ``stratified``), ``n_train``, ``n_val``,
        ``device``, ``seconds`` and ``train_images_per_second``.
    model : Model or None
        The finetuned network (the best epoch's weights, CPU, evaluation mode). Not part
        of the JSON: ``write_finetune_run`` saves it as ``model.pt``
        (:func:`rcvlab.models.save_weights`); :meth:`from_json` gives None.
    """

    kind: ClassVar[str] = "finetune"
    frame_columns: ClassVar[tuple[str, ...]] = ("epoch", *HISTORY_KEYS, "best")

    model_name: str
    weights: str
    positive: str
    negative: str
    history: dict[str, np.ndarray]
    best_epoch: int
    val_accuracy: float
    val_auc: float
    val_ids: tuple[str, ...]
    val_labels: np.ndarray
    val_probabilities: np.ndarray
    train_ids: tuple[str, ...]
    meta: dict[str, Any]
    model: Model | None = field(default=None, compare=False, repr=False)

    @property
    def epochs(self) -> int:
        return len(self.history["train_loss"])

    @property
    def n_train(self) -> int:
        return len(self.train_ids)

    @property
    def n_val(self) -> int:
        return len(self.val_ids)

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch.

        Columns: ``epoch`` (1-based), ``train_loss``, ``train_accuracy``, ``train_auc``,
        ``val_loss``, ``val_accuracy``, ``val_auc``, ``lr`` (see :attr:`history`) and
        ``best`` (True for :attr:`best_epoch`).
        """
        n = self.epochs
        frame = pd.DataFrame({"epoch": np.arange(1, n + 1)})
        for k in HISTORY_KEYS:
            frame[k] = np.asarray(self.history[k], dtype=np.float64)
        frame["best"] = frame["epoch"] == self.best_epoch
        return frame[list(self.frame_columns)]

    def predictions_frame(self) -> pd.DataFrame:
        """The best epoch's validation predictions: ``id``, ``label`` (class name),
        ``positive`` (1/0), ``probability`` (``P(positive)``) and ``predicted`` (class)."""
        p = np.asarray(self.val_probabilities)
        return pd.DataFrame(
            {
                "id": list(self.val_ids),
                "label": [self.positive if y else self.negative for y in self.val_labels],
                "positive": np.asarray(self.val_labels, dtype=int),
                "probability": p,
                "predicted": [self.positive if q > 0.5 else self.negative for q in p],
            }
        )

    def to_markdown(self) -> str:
        """The run's summary (validation accuracy and AUC beside the paper's)."""
        o = self.meta.get("options", {})
        lines = [
            f"# Finetune: {self.model_name} ({self.weights}), {self.positive} vs {self.negative}",
            "",
            f"- validation accuracy: {self.val_accuracy:.3f}",
            f"- validation AUC: {self.val_auc:.3f}",
            f"- best epoch: {self.best_epoch} of {self.epochs}",
            f"- images: {self.n_train} training / {self.n_val} validation "
            f"({self.meta.get('split', '?')} split, seed {self.meta.get('seed')})",
            f"- training: SGD lr {o.get('lr')} (lr / (1 + {o.get('decay')} t) per update t), "
            f"Nesterov momentum {o.get('momentum')}, batch {o.get('batch_size')}, "
            f"augment {o.get('augment')} (flips, hue {o.get('hue')}, brightness "
            f"{o.get('brightness')}), input {o.get('input_size')} px, device "
            f"{self.meta.get('device')}",
            "",
            f"The paper's (InceptionV3 on 2,274 Camelyon17 validation patches, 30 epochs): "
            f"validation accuracy {PAPER_VAL_ACCURACY}, AUC {PAPER_VAL_AUC}.",
            "",
            "| epoch | train loss | train acc | train AUC | val loss | val acc | val AUC | lr |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, r in self.to_frame().iterrows():
            mark = " (best)" if r["best"] else ""
            lines.append(
                f"| {int(r['epoch'])}{mark} | {r['train_loss']:.4f} | {r['train_accuracy']:.3f} "
                f"| {r['train_auc']:.3f} | {r['val_loss']:.4f} | {r['val_accuracy']:.3f} "
                f"| {r['val_auc']:.3f} | {r['lr']:.4g} |"
            )
        command = self.meta.get("command", "")
        if command:
            lines += ["", f"`{command}`"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "model_name": self.model_name,
                "weights": self.weights,
                "positive": self.positive,
                "negative": self.negative,
                "history": {k: self.history[k] for k in HISTORY_KEYS},
                "best_epoch": self.best_epoch,
                "val_accuracy": self.val_accuracy,
                "val_auc": self.val_auc,
                "val_ids": list(self.val_ids),
                "val_labels": self.val_labels,
                "val_probabilities": self.val_probabilities,
                "train_ids": list(self.train_ids),
                "meta": self.meta,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FinetuneResult:
        return cls(
            model_name=str(d["model_name"]),
            weights=str(d["weights"]),
            positive=str(d["positive"]),
            negative=str(d["negative"]),
            history={k: array_from_json(d["history"][k]) for k in HISTORY_KEYS},
            best_epoch=int(d["best_epoch"]),
            val_accuracy=nan_if_none(d["val_accuracy"]),
            val_auc=nan_if_none(d["val_auc"]),
            val_ids=tuple(str(i) for i in d["val_ids"]),
            val_labels=array_from_json(d["val_labels"], np.int64),
            val_probabilities=array_from_json(d["val_probabilities"]),
            train_ids=tuple(str(i) for i in d["train_ids"]),
            meta=dict(d["meta"]),
        )


# -- checks -------------------------------------------------------------------------------


def _positive_float(name: str, value: Any, *, zero: bool = False, below: float = math.inf) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    f = float(value) if ok else math.nan
    low_ok = f >= 0 if zero else f > 0
    if not (math.isfinite(f) and low_ok and f < below):
        rng = f"{'>= 0' if zero else '> 0'}" + (f" and < {below:g}" if math.isfinite(below) else "")
        raise RcvlabError(f"{name} must be a number {rng}, got {value!r}.")
    return f


def check_binary_classes(data: ImageSet, positive: str) -> str:
    """The other class of a two-class data set whose classes include ``positive``.

    Raises
    ------
    DataError
        No classes, one class, more than two, or ``positive`` not among them (one line
        naming the classes found).
    """
    if data.classes is None:
        raise DataError(
            f"finetune needs a class per image, and data {data.source or type(data).__name__} "
            "has none; use a data set with classes (e.g. --data tumour)."
        )
    found = list(dict.fromkeys(data.classes.tolist()))
    names = ", ".join(repr(c) for c in found)
    if len(found) != 2:
        raise DataError(
            f"finetune trains a binary classifier and needs exactly 2 classes; the data has "
            f"{len(found)}: {names}."
        )
    if positive not in found:
        raise DataError(
            f"positive class {positive!r} is not in the data (classes: {names}); pass "
            f"positive={found[0]!r} or {found[1]!r}."
        )
    return found[1] if found[0] == positive else found[0]


def validation_split(
    classes: np.ndarray, groups: np.ndarray | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Training and validation indices, stratified by class, every class on both sides.

    With ``groups`` the split is group-disjoint: ``StratifiedGroupKFold`` with
    ``k = round(1 / val_fraction)`` folds (at least 2, at most the number of groups),
    shuffled with ``seed``; its first fold holding every class (with every class left
    for training) is the validation set (about ``1/k`` of the images). Without,
    ``StratifiedShuffleSplit`` with ``test_size=val_fraction``.

    Returns
    -------
    (train, val, kind)
        Sorted index arrays and ``"group"`` or ``"stratified"``.

    Raises
    ------
    DataError
        A class that cannot be on both sides (too few images, or its images in one group).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

    n = len(classes)
    idx = np.arange(n)
    if groups is not None:
        for c in dict.fromkeys(classes.tolist()):
            g = np.unique(groups[classes == c])
            if len(g) < 2:
                raise DataError(
                    f"Class {c!r} has images from only {len(g)} group ({g[0]!r}); a "
                    "group-disjoint validation split needs at least 2 groups per class."
                )
        n_groups = len(np.unique(groups))
        k = int(min(max(2, round(1 / val_fraction)), n_groups))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            folds = list(cv.split(idx, classes, groups))
        every = set(classes.tolist())
        train, val = next(
            (
                (tr, va)
                for tr, va in folds
                if set(classes[tr].tolist()) == set(classes[va].tolist()) == every
            ),
            folds[0],
        )
        kind = "group"
    else:
        cv = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        try:
            train, val = next(iter(cv.split(idx, classes)))
        except ValueError as e:
            raise DataError(
                f"Cannot split {n} images into training and validation sets stratified by "
                f"class (val_fraction {val_fraction:g}): {e}"
            ) from e
        kind = "stratified"
    for side, part in (("training", train), ("validation", val)):
        missing = sorted(set(classes.tolist()) - set(classes[part].tolist()))
        if missing:
            raise DataError(
                f"The {kind} validation split (seed {seed}) leaves class {missing[0]!r} out of "
                f"the {side} set; use more images or groups per class, or another val_fraction."
            )
    return np.sort(train), np.sort(val), kind


# -- images -------------------------------------------------------------------------------


class _Pixels:
    """Preprocessed uint8 ``(k, 3, S, S)`` images, by index (in memory when they fit)."""

    def __init__(self, model: Model, data: ImageSet, cache: bool) -> None:
        self.model, self.data = model, data
        self.cache: torch.Tensor | None = None
        if cache:
            self.cache = torch.cat(
                [self._read(np.arange(i, min(i + 64, len(data)))) for i in range(0, len(data), 64)]
            )

    def _read(self, idx: np.ndarray) -> torch.Tensor:
        images = []
        for i in idx:
            try:
                images.append(self.data.load(int(i)))
            except DataError as e:
                raise DataError(f"{e} (image {int(i)}: finetune needs every image)") from e
        pix = self.model.preprocessing.pixels(images, mode="resize")
        return torch.from_numpy(pix).permute(0, 3, 1, 2).contiguous()

    def get(self, idx: np.ndarray) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[torch.from_numpy(np.asarray(idx, dtype=np.int64))]
        return self._read(idx)


class Augment:
    """Random flips and colour jitter of uint8 ``(k, 3, H, W)`` batches, drawn per image.

    The parameters come from a numpy generator seeded with ``seed`` (not from torch's
    global RNG) and are applied with ``torchvision.transforms.v2.functional``, as
    ``RandomHorizontalFlip()``, ``RandomVerticalFlip()`` and ``ColorJitter(brightness=,
    hue=)`` would: each flip with probability 0.5, a brightness factor uniform in
    ``[1 - brightness, 1 + brightness]`` and a hue shift uniform in ``[-hue, hue]``,
    applied in a random order. The batch stays on its device.
    """

    def __init__(self, hue: float, brightness: float, seed: int) -> None:
        self.hue, self.brightness = hue, brightness
        self.rng = np.random.default_rng([seed, 2])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        k = x.shape[0]
        hflip, vflip = self.rng.random(k) < 0.5, self.rng.random(k) < 0.5
        bright = self.rng.uniform(1 - self.brightness, 1 + self.brightness, k)
        hue = self.rng.uniform(-self.hue, self.hue, k)
        hue_first = self.rng.random(k) < 0.5
        out = []
        for i in range(k):
            xi = x[i]
            if hflip[i]:
                xi = F.horizontal_flip(xi)
            if vflip[i]:
                xi = F.vertical_flip(xi)
            colour = []
            if self.brightness > 0:
                colour.append(lambda t, f=float(bright[i]): F.adjust_brightness(t, f))
            if self.hue > 0:
                colour.append(lambda t, f=float(hue[i]): F.adjust_hue(t, f))
            for step in reversed(colour) if hue_first[i] else colour:
                xi = step(xi)
            out.append(xi)
        return torch.stack(out)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one image joins the one before
    (BatchNorm cannot normalise a single image in training mode)."""
    out = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = np.concatenate([out[-2], out.pop()])
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2 or not np.isfinite(p).all():
        return math.nan
    return float(roc_auc_score(y, p))


# -- finetune -----------------------------------------------------------------------------


def finetune(
    model: Model | str,
    data: ImageSet,
    *,
    epochs: int = 30,
    lr: float = 1e-4,
    decay: float = 1e-6,
    momentum: float = 0.9,
    batch_size: int = 32,
    positive: str = "tumour",
    val_fraction: float = 0.2,
    augment: bool = True,
    hue: float = 0.05,
    brightness: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    channels_last: bool = False,
    progress: bool | Callable[[int, int], None] | None = None,
    command: str = "",
) -> FinetuneResult:
    """Finetune ``model`` end to end on a two-class data set, as paper 004.

    Every option and the data's classes and split are checked before any training.

    Parameters
    ----------
    model : Model or str
        A loaded model (a registry name is loaded with ImageNet weights). Unless it is
        already single-logit, its classifier is replaced by one logit for ``positive``
        (:func:`rcvlab.models.heads.binary_head`, seeded with ``seed``). The model is not
        changed: a copy is trained.
    data : ImageSet
        Pictures with exactly two ``classes``; ``groups`` (e.g. the slide or region of each
        patch) make the validation split group-disjoint. Read through the model's
        preprocessing (whole image resized to its input size).
    epochs : int
        Passes over the training images, >= 1 (the paper: 30).
    lr : float
        Initial learning rate, > 0 (the paper: 1e-4).
    decay : float
        Keras' learning-rate decay, >= 0: update ``t`` uses ``lr / (1 + decay * t)``
        (the paper: 1e-6). Not weight decay (there is none).
    momentum : float
        Nesterov momentum, in (0, 1) (the paper: 0.9).
    batch_size : int
        Images per update, >= 1 (the paper: 32).
    positive : str
        The class whose probability the logit gives (label 1).
    val_fraction : float
        Share of the images (of the groups, with groups) for validation, in (0, 1).
    augment : bool
        Random horizontal and vertical flips and colour jitter of the training images.
    hue, brightness : float
        ``ColorJitter`` ranges: hue shift in ``[-hue, hue]`` (0 <= hue <= 0.5),
        brightness factor in ``[1 - brightness, 1 + brightness]`` (>= 0).
    seed : int
        Seed of the split, the head, the batch order, the augmentation and dropout.
    device : str, optional
        ``cpu``, ``cuda``, ``cuda:N``; default: CUDA when available.
    channels_last : bool
        Train in channels-last memory format (faster convolutions on many devices).
    progress : bool or callable, optional
        A progress bar (True) or ``progress(done, total)`` per update.
    command : str
        Recorded in ``meta``.

    Returns
    -------
    FinetuneResult
        ``.model`` is the finetuned network at the best validation AUC.

    Raises
    ------
    RcvlabError
        A bad option (one line naming it), an unknown device, training that diverges.
    DataError
        Data without two classes, ``positive`` not among them, a split that cannot put
        every class on both sides, unreadable images.
    """
    from rcvlab.features.extract import as_image_set, choose_device

    epochs = check_int("epochs", epochs, 1, "the paper's is 30")
    batch_size = check_int("batch_size", batch_size, 1, "the paper's is 32")
    seed = check_seed(seed)
    lr = _positive_float("lr", lr)
    decay = _positive_float("decay", decay, zero=True)
    momentum = _positive_float("momentum", momentum, below=1.0)
    val_fraction = _positive_float("val_fraction", val_fraction, below=1.0)
    hue = _positive_float("hue", hue, zero=True, below=0.5 + 1e-12)
    brightness = _positive_float("brightness", brightness, zero=True)
    for name, flag in (("augment", augment), ("channels_last", channels_last)):
        if not isinstance(flag, bool):
            raise RcvlabError(f"{name} must be True or False, got {flag!r}.")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise RcvlabError(f"progress must be True, False or a callable, got {progress!r}.")
    if not isinstance(positive, str) or not positive:
        raise RcvlabError(f"positive must be a class name, got {positive!r}.")
    model = as_model(model)
    data = as_image_set(data)
    if isinstance(data, TensorImageSet):
        raise DataError(
            "finetune augments pictures and cannot use an already preprocessed float tensor; "
            "pass uint8 images (array or tensor) or an ImageSet."
        )
    dev = choose_device(device)
    negative = check_binary_classes(data, positive)
    if is_binary(model) and model.categories and model.categories[0] != positive:
        raise RcvlabError(
            f"The model's single logit is for {model.categories[0]!r}, not {positive!r}; pass "
            f"positive={model.categories[0]!r} or a model with a multi-class head."
        )
    classes = np.asarray(data.classes)  # not None: checked by check_binary_classes
    train_idx, val_idx, split = validation_split(classes, data.groups, val_fraction, seed)
    y_all = (classes == positive).astype(np.float32)

    start = model if is_binary(model) else binary_head(model, positive=positive, seed=seed)
    net = copy.deepcopy(start.module)
    pre = start.preprocessing
    s = pre.input_size
    pixels = _Pixels(start, data, cache=len(data) * 3 * s * s <= CACHE_BYTES)
    aug = Augment(hue, brightness, seed) if augment else None
    options = {
        "epochs": epochs,
        "lr": lr,
        "decay": decay,
        "momentum": momentum,
        "batch_size": batch_size,
        "positive": positive,
        "val_fraction": val_fraction,
        "augment": augment,
        "hue": hue,
        "brightness": brightness,
        "channels_last": channels_last,
        "input_size": s,
    }

    t0 = time.perf_counter()
    train_seconds = 0.0
    history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
    best: tuple[float, int, dict[str, torch.Tensor], np.ndarray] | None = None
    order_rng = np.random.default_rng([seed, 1])
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    n_batches = len(_batches(train_idx, batch_size))
    devices = (
        [dev.index if dev.index is not None else torch.cuda.current_device()]
        if dev.type == "cuda"
        else []
    )
    with (
        torch.random.fork_rng(devices=devices),
        progress_bar(progress or False, epochs * n_batches, "finetune") as tick,
    ):
        torch.manual_seed(seed)
        net.to(dev)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(
            net.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=0.0
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + decay * t))

        def batch_input(idx: np.ndarray, train: bool) -> torch.Tensor:
            x = pixels.get(idx).to(dev, non_blocking=True)
            if train and aug is not None:
                x = aug(x)
            x = pre.normalise(x)
            return x.contiguous(memory_format=torch.channels_last) if channels_last else x

        def logits_of(x: torch.Tensor) -> torch.Tensor:
            out = net(x)
            if not isinstance(out, torch.Tensor) or out.numel() != x.shape[0]:
                raise RcvlabError(
                    f"The network gives {tuple(getattr(out, 'shape', ()))} for {x.shape[0]} "
                    "images, not one logit each; load it with a single-logit head "
                    "(rcvlab.models.binary_head)."
                )
            return out.reshape(-1).float()

        for epoch in range(1, epochs + 1):
            te = time.perf_counter()
            net.train()
            order = train_idx[order_rng.permutation(len(train_idx))]
            loss_sum, outs, ys = 0.0, [], []
            for idx in _batches(order, batch_size):
                x = batch_input(idx, True)
                y = torch.from_numpy(y_all[idx]).to(dev)
                z = logits_of(x)
                loss = loss_fn(z, y)
                opt.zero_grad(set_to_none=True)
                (loss / len(idx)).backward()
                opt.step()
                sched.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise RcvlabError(
                        f"Training diverged: the loss is {value} at epoch {epoch}; lower lr "
                        f"(now {lr:g})."
                    )
                loss_sum += value
                outs.append(z.detach().cpu().numpy())
                ys.append(y_all[idx])
                tick(1)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_seconds += time.perf_counter() - te
            z_train, y_train = np.concatenate(outs), np.concatenate(ys)
            history["train_loss"].append(loss_sum / len(train_idx))
            history["train_accuracy"].append(float(np.mean((z_train > 0) == (y_train > 0.5))))
            history["train_auc"].append(_auc(y_train, z_train))

            net.eval()
            with torch.no_grad():
                vz = np.concatenate(
                    [
                        logits_of(batch_input(idx, False)).cpu().numpy()
                        for idx in _batches(val_idx, batch_size)
                    ]
                )
            y_val = y_all[val_idx]
            vz_t = torch.from_numpy(vz.astype(np.float64))
            val_loss = float(loss_fn(vz_t, torch.from_numpy(y_val.astype(np.float64)))) / len(vz)
            probs = torch.sigmoid(vz_t).numpy()
            val_auc = _auc(y_val, probs)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(float(np.mean((probs > 0.5) == (y_val > 0.5))))
            history["val_auc"].append(val_auc)
            history["lr"].append(float(opt.param_groups[0]["lr"]))
            score = val_auc if math.isfinite(val_auc) else -math.inf
            if best is None or score > best[0]:
                state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                best = (score, epoch, state, probs)

    assert best is not None  # epochs >= 1
    _, best_epoch, state, probs = best
    net.load_state_dict(state)
    net.to("cpu")
    if channels_last:
        net.to(memory_format=torch.contiguous_format)
    net.eval()
    finetuned = replace(
        start, module=net, weights="finetuned", weights_id=f"finetuned:{state_digest(net)}"
    )
    seconds = time.perf_counter() - t0
    y_val = y_all[val_idx].astype(np.int64)
    meta = analysis_meta(
        command,
        seed,
        {
            "data_fingerprint": data.fingerprint(),
            "data_source": getattr(data, "source", ""),
            "model": start.name,
            "options": options,
            "split": split,
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "device": str(dev),
            "seconds": round(seconds, 3),
            "train_images_per_second": round(epochs * len(train_idx) / max(train_seconds, 1e-9), 2),
        },
    )
    return FinetuneResult(
        model_name=start.name,
        weights=model.weights,
        positive=positive,
        negative=negative,
        history={k: frozen_array(v) for k, v in history.items()},
        best_epoch=best_epoch,
        val_accuracy=history["val_accuracy"][best_epoch - 1],
        val_auc=history["val_auc"][best_epoch - 1],
        val_ids=tuple(data.ids[i] for i in val_idx),
        val_labels=frozen_array(y_val, np.int64),
        val_probabilities=frozen_array(probs),
        train_ids=tuple(data.ids[i] for i in train_idx),
        meta=meta,
        model=finetuned,
    )


__all__ = [
    "CACHE_BYTES",
    "HISTORY_KEYS",
    "PAPER_VAL_ACCURACY",
    "PAPER_VAL_AUC",
    "Augment",
    "FinetuneResult",
    "check_binary_classes",
    "finetune",
    "validation_split",
]
