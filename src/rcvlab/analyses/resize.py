"""The resizing sweep (paper 000 §4.1, Figure 6): classifier confidence against input size.

For images with a known ImageNet class, ideally *filled* (the object fills the frame, so
that resizing the image changes the object's size in pixels and nothing else), every image
is resized as a whole (no crop) to ``s x s`` pixels with each interpolation filter, normalised
with the model's mean and standard deviation, and passed through the full network in eval
mode; the softmax (in float32) gives the probability of the correct class and whether it is
among the top 1 and top 5 predictions. Per interpolation and size:

- ``p_mean``: the mean over images of the probability of the correct class, with a
  **Student-t** 95 % interval (``mean ± t_{0.975, n-1} s / sqrt(n)``, ``s`` the sample
  standard deviation; :func:`rcvlab.probe.stats.mean_ci95`), treating the ``n`` per-image
  values as independent, clipped to [0, 1];
- ``top1`` / ``top5``: the fraction of images whose correct class is the top prediction /
  among the five most probable, with a **Wilson score** 95 % interval (:func:`wilson_ci95`).

An image may have several acceptable classes (the embedded filled cat is a tabby, a tiger cat
or an Egyptian cat): its probability is then the **sum** of their probabilities, and it is a
top-k hit when **any** of them is among the top k.

The papers' result: the probability peaks near the size the network was trained at and
falls off on both sides. Note that the embedded filled set (``--data filled``) holds crops of
four photographs only, so its intervals show the variation over crops, not over photographs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import scipy.stats
import torch
import torch.nn as nn
from PIL import Image

from rcvlab.analyses.common import check_int, row_shards
from rcvlab.data.base import ImageSet, Skip
from rcvlab.distributed.client import check_client, n_workers
from rcvlab.distributed.tasks import Call, Shared, run_calls
from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.models.registry import RESAMPLE, Model, load_model
from rcvlab.models.state import borrowed
from rcvlab.probe.stats import mean_ci95
from rcvlab.progress import progress_bar
from rcvlab.result import Result, jsonable, provenance
from rcvlab.sizes import MAX_SIZE, check_max_size, parse_sizes

if TYPE_CHECKING:
    from distributed import Client

#: PIL filters by name (``--interp``).
INTERPOLATIONS: dict[str, int] = RESAMPLE  # the models' own table: one list of filters
#: The paper's four filters, in its order (§4.1: "bilinear, nearest, bicubic and Lanczos").
DEFAULT_INTERPS: tuple[str, ...] = ("lanczos", "bilinear", "bicubic", "nearest")
#: Default square sizes (``--sizes``): paper 000 §4.1 resizes "from 75 to 500 pixels"; a
#: step of 25 px gives 18 sizes.
DEFAULT_SIZES = "75:500:25"
#: Images decoded and run together by default.
DEFAULT_BATCH_SIZE = 32
#: Documented minimum input sizes (Keras' InceptionV3 accepts 75 px and up); other networks
#: are probed with a forward pass of a blank image (:func:`min_input_size`).
KNOWN_MIN_SIZES: dict[str, int] = {"inception_v3": 75}


# -- small helpers ----------------------------------------------------------------------


def parse_interps(spec: str | Sequence[str]) -> list[str]:
    """``"lanczos,nearest"`` (or a sequence of names) -> validated filter names, in order.

    Raises
    ------
    UnknownNameError
        For an unknown name (with the closest valid one).
    RcvlabError
        For an empty spec or a repeated name.
    """
    names = spec.split(",") if isinstance(spec, str) else [str(s) for s in spec]
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise RcvlabError(f"No interpolation given; choose from {', '.join(INTERPOLATIONS)}.")
    for n in names:
        if n not in INTERPOLATIONS:
            raise UnknownNameError(
                f"Unknown interpolation '{n}'.{did_you_mean(n, INTERPOLATIONS)} "
                f"Choose from {', '.join(INTERPOLATIONS)}."
            )
    if len(set(names)) != len(names):
        raise RcvlabError(f"Interpolation repeated in {spec!r}; list each once.")
    return names


def wilson_ci95(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion ``k / n``.

    scipy's ``binomtest(k, n).proportion_ci(method="wilson")``; unlike the
    normal-approximation interval it stays inside [0, 1] and has width at ``k = 0`` or
    ``k = n``. ``(nan, nan)`` for ``n = 0``.
    """
    if n <= 0:
        return (math.nan, math.nan)
    ci = scipy.stats.binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return (float(ci.low), float(ci.high))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _blank_forward(
    module: nn.Module, size: int, dev: torch.device, channels_last: bool
) -> tuple[torch.Tensor | None, str]:
    """Logits of one blank ``size x size`` image, or ``(None, error)`` if the network fails."""
    x = torch.zeros(1, 3, size, size, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            out = module(x)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, AssertionError, IndexError) as e:
        if "allocate" in str(e).lower():  # out of host memory: not a size the net refuses
            raise
        return None, _first_line(e)
    return out, ""


def min_input_size(
    model: Model,
    sizes: Sequence[int],
    *,
    device: str | torch.device | None = None,
    channels_last: bool = False,
) -> int:
    """The smallest square input the network runs on, searched within ``sizes``' range.

    :data:`KNOWN_MIN_SIZES` gives it for some networks; otherwise blank images are passed
    through the network (smallest and largest requested size, then a bisection between
    them), assuming that a network that runs on ``s`` px also runs on larger inputs.

    Returns
    -------
    int
        The minimum (at most ``min(sizes)`` when the smallest requested size runs).

    Raises
    ------
    RcvlabError
        If the network runs on neither the smallest nor the largest requested size.
    """
    from rcvlab.features.extract import choose_device

    known = KNOWN_MIN_SIZES.get(model.name)
    lo_req, hi_req = min(sizes), max(sizes)
    if known is not None:
        return known
    dev = choose_device(device)
    with borrowed(model.module, dev, channels_last=channels_last) as module:
        out, _ = _blank_forward(module, lo_req, dev, channels_last)
        if out is not None:
            return lo_req
        out, err_hi = _blank_forward(module, hi_req, dev, channels_last)
        if out is None:
            raise RcvlabError(
                f"{model.name} fails on {lo_req}-px and on {hi_req}-px inputs ({err_hi}); the "
                "sweep needs a network that accepts any input size (a CNN with global pooling)."
            )
        lo, hi = lo_req, hi_req  # lo fails, hi runs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _blank_forward(module, mid, dev, channels_last)[0] is None:
                lo = mid
            else:
                hi = mid
    return hi


def resized_batch(
    model: Model, images: Sequence[Image.Image], size: int, interp: str
) -> torch.Tensor:
    """Whole images resized to ``size x size`` (no crop) with filter ``interp`` and normalised
    by the model's own preprocessing (its mean and std): float32 NCHW."""
    pre = replace(model.preprocessing, input_size=int(size), interpolation=interp)
    return pre(images, mode="resize")


def class_probabilities(
    model: Model,
    images: Sequence[Image.Image],
    size: int,
    interp: str = "lanczos",
    *,
    device: str | torch.device | None = None,
    channels_last: bool = True,
) -> np.ndarray:
    """The full softmax of the network for RGB images resized as a whole to ``size`` px.

    Parameters
    ----------
    model : Model
    images : sequence of PIL.Image.Image
        RGB images (one batch).
    size : int
        Square input side in pixels.
    interp : str
        A key of :data:`INTERPOLATIONS`.
    device : str, optional
        Default: CUDA when available.
    channels_last : bool
        Run in channels-last memory format.

    Returns
    -------
    numpy.ndarray
        ``(n, n_outputs)`` float32 probabilities (each row sums to 1).
    """
    from rcvlab.features.extract import choose_device

    (interp,) = parse_interps([interp])
    dev = choose_device(device)
    x = resized_batch(model, images, int(size), interp)
    with borrowed(model.module, dev, channels_last=channels_last) as module:
        return _softmax(module, x, dev, channels_last).cpu().numpy()


def _softmax(
    module: nn.Module, x: torch.Tensor, dev: torch.device, channels_last: bool
) -> torch.Tensor:
    x = x.to(dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = module(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise RcvlabError(
            "The network's output is not a (batch, classes) tensor of logits; the sweep needs "
            "the full classifier."
        )
    return torch.softmax(logits.float(), dim=1)


# -- the result -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ResizeSweepResult(Result):
    """Per-image outcomes of a resizing sweep, with summaries and intervals on demand.

    The arrays are indexed ``[interp, size, image]`` in the order of ``interps``, ``sizes``
    and ``ids`` (readable images only; the others are in ``skipped``).

    Attributes
    ----------
    model, weights : str
        The network (registry name) and its weights (``imagenet``, ``random``, a path).
    sizes : tuple of int
    interps : tuple of str
    ids : tuple of str
        The images' identifiers.
    labels : tuple of tuple of int
        The acceptable class indices of every image.
    p : numpy.ndarray
        float64, probability of the correct class(es).
    top1, top5 : numpy.ndarray
        bool, whether a correct class is the top prediction / among the five most probable.
    pred : numpy.ndarray
        int64, the top-1 predicted class index.
    input_size : int
        The size the network was trained at (its preprocessing's input size).
    n_outputs : int
        Number of classifier outputs.
    skipped : tuple of Skip
        Unreadable images.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`): command, versions, seed, the data's
        fingerprint and source, device, timing, batch size, weights identifier.
    """

    kind: ClassVar[str] = "resize_sweep"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "interp",
        "size",
        "n",
        "p_mean",
        "p_ci95_low",
        "p_ci95_high",
        "p_std",
        "top1",
        "top1_ci95_low",
        "top1_ci95_high",
        "top5",
        "top5_ci95_low",
        "top5_ci95_high",
    )

    model: str
    weights: str
    sizes: tuple[int, ...]
    interps: tuple[str, ...]
    ids: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    p: np.ndarray = field(repr=False)
    top1: np.ndarray = field(repr=False)
    top5: np.ndarray = field(repr=False)
    pred: np.ndarray = field(repr=False)
    input_size: int = 224
    n_outputs: int = 1000
    skipped: tuple[Skip, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of (readable) images."""
        return len(self.ids)

    @property
    def data_source(self) -> str:
        """The data the sweep ran on (``filled:cat,...``, ``labels:FILE`` ...)."""
        return str(self.meta.get("data_source", ""))

    def to_frame(self) -> pd.DataFrame:
        """One row per (interpolation, size).

        Columns: ``interp``, ``size`` (px), ``n`` (images), ``p_mean`` (mean probability of
        the correct class) with its Student-t 95 % interval ``p_ci95_low`` /
        ``p_ci95_high`` (clipped to [0, 1]) and ``p_std`` (``ddof=1``); ``top1`` and ``top5``
        (accuracies) with their Wilson 95 % intervals ``top1_ci95_low`` /
        ``top1_ci95_high`` and ``top5_ci95_low`` / ``top5_ci95_high``.
        """
        rows = []
        for a, interp in enumerate(self.interps):
            for b, size in enumerate(self.sizes):
                p = self.p[a, b]
                n = int(p.size)
                lo, hi = mean_ci95(p)
                lo, hi = (float(v) for v in np.clip((lo, hi), 0.0, 1.0))  # NaN stays NaN
                row: dict[str, Any] = {
                    "interp": interp,
                    "size": int(size),
                    "n": n,
                    "p_mean": float(p.mean()) if n else math.nan,
                    "p_ci95_low": lo,
                    "p_ci95_high": hi,
                    "p_std": float(p.std(ddof=1)) if n > 1 else math.nan,
                }
                for k, hits in (("top1", self.top1[a, b]), ("top5", self.top5[a, b])):
                    n_hit = int(hits.sum())
                    klo, khi = wilson_ci95(n_hit, n)
                    row[k] = n_hit / n if n else math.nan
                    row[f"{k}_ci95_low"], row[f"{k}_ci95_high"] = klo, khi
                rows.append(row)
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def per_image_frame(self) -> pd.DataFrame:
        """The long form: one row per (interpolation, size, image) with ``p``, ``top1``,
        ``top5``, ``pred`` and the image's ``class_index`` (acceptable indices joined by
        ``;``)."""
        ni, ns, nn_ = self.p.shape
        labels = [";".join(str(v) for v in lab) for lab in self.labels]
        return pd.DataFrame(
            {
                "interp": np.repeat(np.asarray(self.interps, dtype=object), ns * nn_),
                "size": np.tile(np.repeat(np.asarray(self.sizes), nn_), ni),
                "image": np.tile(np.asarray(self.ids, dtype=object), ni * ns),
                "class_index": np.tile(np.asarray(labels, dtype=object), ni * ns),
                "p": self.p.ravel(),
                "top1": self.top1.ravel(),
                "top5": self.top5.ravel(),
                "pred": self.pred.ravel(),
            }
        )

    def peaks(self) -> dict[str, tuple[int, float]]:
        """Per interpolation: the size with the highest mean probability, and that mean."""
        f = self.to_frame()
        out = {}
        for interp in self.interps:
            sub = f[f.interp == interp]
            row = sub.loc[sub.p_mean.idxmax()]
            out[interp] = (int(row["size"]), float(row["p_mean"]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Settings, the peaks and summary rows (for reading, not read back) and the
        per-image arrays ``p``, ``top1``, ``top5``, ``pred`` as ``[interp][size][image]``."""
        return jsonable(
            {
                "model": self.model,
                "weights": self.weights,
                "sizes": list(self.sizes),
                "interps": list(self.interps),
                "input_size": self.input_size,
                "n_outputs": self.n_outputs,
                "n_images": self.n,
                "meta": self.meta,
                "peaks": {k: {"size": s, "p_mean": p} for k, (s, p) in self.peaks().items()},
                "summary": self.to_frame().to_dict(orient="records"),
                "ids": list(self.ids),
                "labels": [list(lab) for lab in self.labels],
                "p": self.p.tolist(),
                "top1": self.top1.astype(int).tolist(),
                "top5": self.top5.astype(int).tolist(),
                "pred": self.pred.tolist(),
                "skipped": [asdict(s) for s in self.skipped],
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResizeSweepResult:
        """Rebuild from :meth:`to_dict`; also reads ``sweep.json`` of rcvlab 0.x (``command``
        and ``data`` beside ``meta``)."""
        shape = (len(d["interps"]), len(d["sizes"]), len(d["ids"]))

        def arr(key: str, dtype: Any) -> np.ndarray:
            return np.asarray(d[key], dtype=dtype).reshape(shape)

        meta = dict(d.get("meta") or {})
        for old, new in (("command", "command"), ("data", "data_source")):
            if old in d and new not in meta:  # the layout before the result contract
                meta[new] = d[old]
        return cls(
            model=str(d["model"]),
            weights=str(d["weights"]),
            sizes=tuple(int(s) for s in d["sizes"]),
            interps=tuple(str(i) for i in d["interps"]),
            ids=tuple(str(i) for i in d["ids"]),
            labels=tuple(tuple(int(v) for v in lab) for lab in d["labels"]),
            p=arr("p", np.float64),
            top1=arr("top1", bool),
            top5=arr("top5", bool),
            pred=arr("pred", np.int64),
            input_size=int(d.get("input_size", 224)),
            n_outputs=int(d.get("n_outputs", 1000)),
            skipped=tuple(Skip(s["path"], s["reason"]) for s in d.get("skipped", [])),
            meta=meta,
        )

    def to_markdown(self) -> str:
        """``summary.md``: peaks, the value at the smallest and largest size, and per-size
        tables with 95 % intervals."""
        f = self.to_frame()

        def ci(lo: float, hi: float) -> str:
            return "–" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.3f}, {hi:.3f}]"

        lines = [
            f"# Resizing sweep: {self.model} ({self.weights}) on {self.data_source}",
            "",
            f"{self.n} images resized as a whole (no crop) to each square size; the network "
            f"was trained at {self.input_size} px. p = mean probability of the correct class "
            "(Student-t 95 % interval); top-1 / top-5 = accuracy (Wilson 95 % interval).",
            "",
            "| interpolation | peak size | p at peak | "
            f"p at {min(self.sizes)} px | p at {max(self.sizes)} px | top-5 at peak |",
            "|---|---|---|---|---|---|",
        ]
        for interp, (size, p) in self.peaks().items():
            sub = f[f.interp == interp].set_index("size")
            lines.append(
                f"| {interp} | {size} | {p:.3f} | {sub.p_mean[min(self.sizes)]:.3f} | "
                f"{sub.p_mean[max(self.sizes)]:.3f} | {sub.top5[size]:.3f} |"
            )
        for interp in self.interps:
            lines += [
                "",
                f"## {interp}",
                "",
                "| size | n | p | 95 % CI | top-1 | 95 % CI | top-5 | 95 % CI |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for _, r in f[f.interp == interp].iterrows():
                lines.append(
                    f"| {r['size']} | {r.n} | {r.p_mean:.3f} | "
                    f"{ci(r.p_ci95_low, r.p_ci95_high)} | {r.top1:.3f} | "
                    f"{ci(r.top1_ci95_low, r.top1_ci95_high)} | {r.top5:.3f} | "
                    f"{ci(r.top5_ci95_low, r.top5_ci95_high)} |"
                )
        lines += ["", f"Skipped images: {len(self.skipped)}."]
        if self.meta.get("seconds") is not None:
            lines.append(
                f"Time: {self.meta['seconds']:.1f} s on {self.meta.get('device', '?')} "
                f"(batch {self.meta.get('batch_size', '?')})."
            )
        lines.append(f"Seed {self.meta.get('seed')}.")
        if self.meta.get("command"):
            lines.append(f"Command: `{self.meta['command']}`")
        return "\n".join(lines) + "\n"


# -- the experiment ---------------------------------------------------------------------


def _check_labels(
    data: ImageSet, labels: list[tuple[int, ...] | None], n_out: int | None, model: str
) -> None:
    missing = [i for i, lab in enumerate(labels) if not lab]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"Image {data.ids[missing[0]]}{more} has no class index; give every image its "
            "ImageNet class (class_index column 0..999 or a WordNet id in labels:FILE.csv, or "
            "a synset folder) or leave it out."
        )
    if n_out is None:
        return
    for i, lab in enumerate(labels):
        bad = [v for v in lab if not 0 <= v < n_out]  # type: ignore[union-attr]
        if bad:
            raise DataError(
                f"Image {data.ids[i]} has class index {bad[0]}, but {model} has {n_out} outputs "
                f"(0..{n_out - 1}); fix its class index or use a model with that class."
            )


class SweepShard(NamedTuple):
    """The outcomes of the images ``[start, stop)`` of a sweep (:func:`sweep_shard`).

    Arrays are indexed ``[interp, size, row]`` (rows of unreadable images: ``p`` NaN,
    ``top1`` / ``top5`` False, ``pred`` -1); ``ok`` marks the readable rows and ``skipped``
    lists the others, in order.
    """

    p: np.ndarray
    top1: np.ndarray
    top5: np.ndarray
    pred: np.ndarray
    ok: np.ndarray
    skipped: tuple[Skip, ...]


# A worker running several tasks at once in threads holds one copy of the scattered model:
# its shards take turns with it (borrowed() moves it and gives it back).
_SHARD_LOCK = threading.Lock()


def sweep_shard(
    model: Model,
    data: ImageSet,
    labels: Sequence[Sequence[int]],
    start: int,
    stop: int,
    *,
    sizes: Sequence[int],
    interps: Sequence[str],
    batch_size: int,
    n_out: int,
    device: str | torch.device | None,
    channels_last: bool,
    strict: bool,
    tick: Callable[[int], None] | None = None,
) -> SweepShard:
    """Every (filter, size) evaluation of the images ``[start, stop)`` of a sweep.

    The body of :func:`resize_sweep`, here (one shard, all images) or as a task on a Dask
    worker (one shard each): batches of ``batch_size`` images from ``start`` are decoded
    once and resized with every filter to every size (the next job's resize overlaps the
    network's run), and passed through the network in eval mode on ``device``. No option
    is checked here: :func:`resize_sweep` checks them, with the network, before any shard.

    Parameters
    ----------
    model : Model
    data : ImageSet
    labels : sequence of sequence of int
        The acceptable class indices of images ``start .. stop - 1``.
    start, stop : int
        The shard's rows (``start`` on a batch boundary of the whole sweep).
    sizes, interps : sequence
        Validated sizes and filter names.
    batch_size : int
    n_out : int
        The network's number of outputs.
    device : str or torch.device, optional
        Default: CUDA when available here, else CPU.
    channels_last : bool
    strict : bool
        Raise (one line, naming the image) for an unreadable image instead of skipping it.
    tick : callable, optional
        ``tick(k)`` after each (filter, size) of a batch, ``k`` its images.

    Returns
    -------
    SweepShard

    Raises
    ------
    DataError
        An unreadable image with ``strict``.
    RcvlabError
        Out of memory at some size.
    """
    from rcvlab.features.extract import choose_device

    tick = tick or (lambda k: None)
    dev = choose_device(device)
    m, ni, ns = stop - start, len(interps), len(sizes)
    p = np.full((ni, ns, m), np.nan)
    top1 = np.zeros((ni, ns, m), dtype=bool)
    top5 = np.zeros((ni, ns, m), dtype=bool)
    pred = np.full((ni, ns, m), -1, dtype=np.int64)
    ok = np.zeros(m, dtype=bool)
    skipped: list[Skip] = []
    k_top = min(5, n_out)
    jobs = [(a, b) for a in range(ni) for b in range(ns)]
    pool = ThreadPoolExecutor(max_workers=1)  # resizes the next job while the network runs
    try:
        with _SHARD_LOCK, borrowed(model.module, dev, channels_last=channels_last) as module:
            for c0 in range(start, stop, batch_size):
                c1 = min(stop, c0 + batch_size)
                pil, idx = [], []
                for i in range(c0, c1):
                    try:
                        pil.append(data.load(i).convert("RGB"))
                        idx.append(i - start)
                    except DataError as e:
                        if strict:
                            raise DataError(
                                f"{e} (image {data.ids[i]}; drop --strict to skip such images)"
                            ) from e
                        skipped.append(Skip(data.ids[i], str(e)))
                if not pil:
                    tick((c1 - c0) * len(jobs))
                    continue
                ok[idx] = True
                mask = torch.zeros(len(idx), n_out, dtype=torch.bool)
                for r, i in enumerate(idx):
                    mask[r, list(labels[i])] = True
                mask = mask.to(dev)

                def make(job: tuple[int, int], pil=pil) -> torch.Tensor:
                    return resized_batch(model, pil, sizes[job[1]], interps[job[0]])

                pending = pool.submit(make, jobs[0])
                for j, (a, b) in enumerate(jobs):
                    x = pending.result()
                    if j + 1 < len(jobs):
                        pending = pool.submit(make, jobs[j + 1])
                    try:
                        prob = _softmax(module, x, dev, channels_last)
                    except torch.OutOfMemoryError:
                        raise RcvlabError(
                            f"Out of memory at {sizes[b]} px with {len(idx)} images per "
                            "batch; lower --batch-size or the largest of --sizes."
                        ) from None
                    best = prob.topk(k_top, dim=1).indices
                    p[a, b, idx] = (prob * mask).sum(1).double().cpu().numpy()
                    top1[a, b, idx] = mask.gather(1, best[:, :1]).any(1).cpu().numpy()
                    top5[a, b, idx] = mask.gather(1, best).any(1).cpu().numpy()
                    pred[a, b, idx] = best[:, 0].cpu().numpy()
                    tick(c1 - c0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return SweepShard(p, top1, top5, pred, ok, tuple(skipped))


def resize_sweep(
    model: Model | str | nn.Module,
    data: ImageSet,
    *,
    sizes: str | Sequence[int] = DEFAULT_SIZES,
    interps: str | Sequence[str] = DEFAULT_INTERPS,
    weights: str | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    channels_last: bool = True,
    strict: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    command: str = "",
    client: Client | None = None,
) -> ResizeSweepResult:
    """Probability of the correct class and top-1/top-5 accuracy at every size and filter.

    Parameters
    ----------
    model : Model, str or torch.nn.Module
        A loaded model, a registry name (loaded with ``weights`` and ``seed``), or a plain
        classifier module (ImageNet normalisation, trained size 224). The module runs on
        ``device`` in eval mode and comes back as it was given: device, memory format,
        every submodule's ``training`` flag (:func:`rcvlab.models.state.borrowed`).
    data : ImageSet
        Images with class indices (:func:`rcvlab.data.filled.class_indices`): ``filled``,
        ``labels:FILE.csv``, ``synsets:DIR`` ...
    sizes : str or sequence of int
        Square input sizes (:func:`rcvlab.sizes.parse_sizes`; default
        :data:`DEFAULT_SIZES`, the paper's 75 to 500 px).
    interps : str or sequence of str
        Filters (:data:`INTERPOLATIONS`; default :data:`DEFAULT_INTERPS`).
    weights : str, optional
        ``imagenet`` (default), ``random`` or a state-dict path; only with a model name.
    seed : int
        Seed of random weights when ``model`` is a name; recorded in ``meta``.
    batch_size : int
        Images decoded and run together (each image is decoded once and resized to every
        size with every filter while in memory).
    device : str, optional
        Default: CUDA when available, else CPU.
    channels_last : bool
        Run in channels-last memory format.
    strict : bool
        Raise for an unreadable image instead of skipping it (listed in ``skipped``).
    progress : bool or callable
        A rich progress bar, or ``progress(done, total)`` after each batch (in
        image-size-filter evaluations); with ``client``, as shards come back.
    command : str
        The command line, recorded in ``meta``.
    client : distributed.Client, optional
        Run the sweep on this Dask cluster (:func:`rcvlab.distributed.open_client`). Every
        check that needs the network runs here first; then the images are cut into
        shards of whole batches, the model and the image set are scattered once to every
        worker, and each shard is one task (:func:`sweep_shard`: it decodes its images and
        runs every filter and size on them, with one torch thread) that returns only its
        rows' outcomes. The images must be readable by the workers (on other machines, a
        shared folder). The result equals a run here under ``torch.set_num_threads(1)``;
        ``device`` None lets every worker choose its own (its GPU, if it has one).

    Returns
    -------
    ResizeSweepResult

    Raises
    ------
    RcvlabError
        Before any image is run: a bad size spec or a size above
        :data:`rcvlab.sizes.MAX_SIZE`, ``batch_size < 1``, a negative seed, ``weights``
        with a loaded model, an unknown device, a size below the smallest input the network
        runs on (naming the minimum), a network whose output is not logits.
    UnknownNameError
        An unknown interpolation or model.
    DataError
        An image without a class index, or with one beyond the network's outputs (naming
        the image); no readable image; an unreadable image with ``strict``.
    """
    from rcvlab.data.filled import class_indices
    from rcvlab.features.extract import choose_device

    t0 = time.perf_counter()
    size_list = parse_sizes(sizes)
    check_max_size(size_list)
    interp_list = parse_interps(interps)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    check_client(client)
    if not isinstance(data, ImageSet):
        raise RcvlabError(f"data must be an ImageSet (see rcvlab.data.open_data), got {data!r}.")
    if len(data) == 0:
        raise DataError(f"No images in {data.source or 'the data'}.")
    labels = class_indices(data)
    _check_labels(data, labels, None, "")
    if weights is not None and not isinstance(model, str):
        raise RcvlabError(
            f"weights={weights!r} applies to a model name only; this model is loaded with "
            "its weights already (drop weights, or pass the name)."
        )
    dev = choose_device(device)
    if isinstance(model, nn.Module):
        model = load_model(model, input_size=224)
    elif isinstance(model, str):
        model = load_model(model, "imagenet" if weights is None else weights, seed=seed)

    # every check that needs the network, before any image is decoded; the module is
    # borrowed: it comes back on its own device, in its own memory format and modes
    with borrowed(model.module, dev, channels_last=channels_last) as module:
        lowest = min_input_size(model, size_list, device=dev, channels_last=channels_last)
        below = [s for s in size_list if s < lowest]
        if below:
            name = "Size" if len(below) == 1 else "Sizes"
            raise RcvlabError(
                f"{name} {', '.join(map(str, below))} px {'is' if len(below) == 1 else 'are'} "
                f"below the smallest input {model.name} accepts ({lowest} px); start the sizes "
                f"at {lowest} or above, e.g. --sizes {lowest}:{max(size_list)}:25."
            )
        out, err = _blank_forward(module, size_list[0], dev, channels_last)
        if out is None:
            raise RcvlabError(f"{model.name} fails on a {size_list[0]}-px input: {err}.")
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise RcvlabError(
                f"The output of {model.name} is not a (batch, classes) tensor of logits; the sweep "
                "needs the full classifier."
            )
        n_out = int(out.shape[1])
        _check_labels(data, labels, n_out, model.name)

    n, ni, ns = len(data), len(interp_list), len(size_list)
    opts = dict(
        sizes=size_list,
        interps=interp_list,
        batch_size=batch_size,
        n_out=n_out,
        # the workers choose their own device when none is given (one GPU each, if any)
        device=dev if client is None else device,
        channels_last=channels_last,
        strict=strict,
    )
    label = f"resize sweep {model.name} ({model.weights})"
    with progress_bar(progress, n * ni * ns, label) as tick:
        if client is None:  # one shard: all images, ticking after each (filter, size) of a batch
            parts = [sweep_shard(model, data, labels, 0, n, **opts, tick=tick)]
        else:  # batch-aligned shards, one task each; ticking as they come back
            shards = row_shards(client, n, batch_size)
            calls = [
                Call(sweep_shard, (Shared("model"), Shared("data"), labels[a:b], a, b), opts)
                for a, b in shards
            ]
            work = [(b - a) * ni * ns for a, b in shards]
            parts = run_calls(
                client,
                calls,
                {"model": model, "data": data},
                name="rcvlab-resize",
                on_done=lambda i: tick(work[i]),
            )
    p = np.concatenate([s.p for s in parts], axis=2)
    top1 = np.concatenate([s.top1 for s in parts], axis=2)
    top5 = np.concatenate([s.top5 for s in parts], axis=2)
    pred = np.concatenate([s.pred for s in parts], axis=2)
    ok = np.concatenate([s.ok for s in parts])
    skipped = [k for s in parts for k in s.skipped]
    if not ok.any():
        first = skipped[0].reason if skipped else "unknown"
        raise DataError(
            f"No image of {data.source or 'the data'} could be read; first problem: {first}."
        )
    keep = np.flatnonzero(ok)
    return ResizeSweepResult(
        model=model.name,
        weights=model.weights,
        sizes=tuple(size_list),
        interps=tuple(interp_list),
        ids=tuple(data.ids[i] for i in keep),
        labels=tuple(labels[i] for i in keep),  # type: ignore[misc]
        p=p[:, :, keep],
        top1=top1[:, :, keep],
        top5=top5[:, :, keep],
        pred=pred[:, :, keep],
        input_size=int(model.input_size),
        n_outputs=n_out,
        skipped=tuple([*data.skipped, *skipped]),
        meta=provenance(
            command=command,
            seed=int(seed),
            data=data,
            device=str(dev) if client is None or device is not None else "workers' default",
            seconds=round(time.perf_counter() - t0, 2),
            batch_size=int(batch_size),
            weights_id=model.weights_id,
            # a cluster's tasks run with one torch thread each
            torch_threads=torch.get_num_threads() if client is None else 1,
            workers=1 if client is None else n_workers(client),
        ),
    )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_INTERPS",
    "DEFAULT_SIZES",
    "INTERPOLATIONS",
    "KNOWN_MIN_SIZES",
    "MAX_SIZE",
    "ResizeSweepResult",
    "SweepShard",
    "class_probabilities",
    "min_input_size",
    "parse_interps",
    "resize_sweep",
    "resized_batch",
    "sweep_shard",
    "wilson_ci95",
]
