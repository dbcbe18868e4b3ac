"""One forward pass per batch for every requested layer, pooled in the hooks, cached on disk."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import replace
from functools import partial
from itertools import islice, pairwise
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from rcvlab.data.base import (
    ArrayImageSet,
    ImageSet,
    Skip,
    TensorImageSet,
    all_finite,
    check_float_batch,
    to_rgb,
)
from rcvlab.errors import DataError, RcvlabError
from rcvlab.features.cache import (
    CacheError,
    CacheMiss,
    FeatureCache,
    cache_key,
    check_cache_dir,
)
from rcvlab.features.hooks import Pool, capture
from rcvlab.features.pooling import get_pooling, layer_pools
from rcvlab.models.layers import LayerSpec, Reshape
from rcvlab.models.registry import Model, load_model
from rcvlab.models.state import borrowed
from rcvlab.progress import progress_bar

# Passes of compute-missing-then-read before a cache that keeps losing files is an error.
_CACHE_PASSES = 4

T = TypeVar("T")
#: What :func:`extract_features` reads images from (see its ``data`` parameter).
Images = (
    ImageSet | np.ndarray | torch.Tensor | Sequence[Image.Image | np.ndarray] | Iterable[object]
)
# One preprocessed batch: rows [i0, i1) of the data, the network input of the readable ones
# (None if none is), their positions within the rows, and why the others were skipped.
Loaded = tuple[int, int, torch.Tensor | None, list[int], dict[int, Skip]]
_END = object()


class FeatureSet(dict[str, np.ndarray]):
    """``{layer: (n, d) float32 array}`` in network order, plus what the extraction left out.

    Attributes
    ----------
    valid : ndarray of bool, shape (n,)
        False for images that could not be read (their rows are NaN).
    skipped : dict of int to Skip
        Why each invalid image has no features, by its index in the data set.
    key : str
        Cache key of the extraction ('' without a cache).
    n_computed : int
        Images that went through the network in this call (0 when read from the cache).
    positions : dict of str to int
        With ``pooling="corrected-gap"``: positions averaged per layer. A layer with 0 has
        no position free of padding at this input size; its features are NaN. Empty for
        ``gap`` and ``max`` (every position is used).
    """

    valid: np.ndarray
    skipped: dict[int, Skip]
    key: str
    n_computed: int
    positions: dict[str, int]

    @property
    def dims(self) -> dict[str, int]:
        """Feature dimension of every layer."""
        return {k: int(v.shape[1]) for k, v in self.items()}


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available unless a device is given; a device that does not exist here
    is one clear error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RcvlabError(
            f"Unknown device {str(device)!r}; use cpu, cuda or cuda:N (or leave it out)."
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise RcvlabError(
                f"Device {str(device)!r} is not available here ({n} CUDA device(s)); "
                "use --device cpu or leave --device out."
            )
    return dev


#: Numeric precisions of the forward pass (``extract_features(precision=...)``) and the
#: dtype autocast runs them in (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def check_precision(precision: object) -> torch.dtype | None:
    """The autocast dtype of a precision name (None for ``fp32``).

    Raises
    ------
    RcvlabError
        An unknown name (one line with the choices).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise RcvlabError(
            f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)} "
            "(fp32 is the default)."
        )
    return PRECISIONS[precision]


def precision_supported(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``device`` runs autocast in ``dtype`` natively (not by a slow emulation).

    CPU: oneDNN's bf16 kernels need AVX-512 (AMX or AVX512-BF16 make them fast; without
    them bf16 works but is slower than fp32), its fp16 kernels AVX512-FP16 (AMX-FP16 CPUs
    have it); both also run on AVX2 CPUs with AVX-NE-CONVERT. CUDA: fp16 everywhere, bf16
    from compute capability 8.0 (Ampere).
    """
    if device.type == "cuda":
        return dtype == torch.float16 or torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        half = "bf16" if dtype == torch.bfloat16 else "fp16"
        check = getattr(torch.ops.mkldnn, f"_is_mkldnn_{half}_supported", None)
        return bool(check()) if check is not None else False
    return False


def check_precision_on(precision: str, device: torch.device) -> torch.dtype | None:
    """:func:`check_precision`, and a one-line error for a precision ``device`` cannot run."""
    dtype = check_precision(precision)
    if dtype is not None and not precision_supported(dtype, device):
        what = "this CPU" if device.type == "cpu" else f"device {device}"
        hint = (
            "bf16 on a CPU needs AVX-512 (fast with AMX), fp16 AVX512-FP16 or AMX-FP16"
            if device.type == "cpu"
            else "bf16 needs a GPU of compute capability 8.0 or newer; use fp16"
        )
        raise RcvlabError(
            f"Precision {precision} is not supported on {what} ({hint}); use precision "
            "'fp32' (--precision fp32)."
        )
    return dtype


def uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """A uint8 image tensor ``(n, 3, H, W)`` or ``(n, H, W, 3)`` as an ``(n, H, W, 3)`` array.

    A tensor whose dim 1 has size 3 is read as channels-first (PyTorch's convention).

    Raises
    ------
    DataError
        Another rank or channel count (one line with the fix).
    """
    shape = tuple(x.shape)
    if x.ndim != 4:
        fix = "add the batch dimension: x.unsqueeze(0)" if x.ndim == 3 else "pass a batch"
        raise DataError(
            f"A uint8 image tensor must have shape (n, 3, H, W) or (n, H, W, 3), got {shape}; "
            f"{fix}."
        )
    if shape[1] == 3:
        x = x.permute(0, 2, 3, 1)
    elif shape[3] != 3:
        raise DataError(
            f"A uint8 image tensor must have 3 colour channels, (n, 3, H, W) or (n, H, W, 3), "
            f"got shape {shape}; repeat a grey channel three times or drop the alpha channel."
        )
    return np.ascontiguousarray(x.detach().cpu().numpy())


def tensor_image_set(x: torch.Tensor) -> ImageSet:
    """An image tensor as an :class:`ImageSet`.

    uint8 (pixels 0-255, ``(n, 3, H, W)`` or ``(n, H, W, 3)``) becomes an
    :class:`ArrayImageSet`, preprocessed by the model like any array (same fingerprint as
    the equivalent ``(n, H, W, 3)`` array, so both share cache entries); float32
    ``(n, 3, H, W)`` is already preprocessed (:class:`TensorImageSet`, used as it is).

    Raises
    ------
    DataError
        Another dtype, rank or channel count (one line with the fix).
    """
    if x.dtype == torch.uint8:
        return ArrayImageSet(list(uint8_nhwc(x)))
    if x.is_floating_point():
        return TensorImageSet(x)
    raise DataError(
        f"An image tensor must be uint8 (pixels 0-255, preprocessed by rcvlab) or float32 "
        f"(already preprocessed); got {x.dtype} with shape {tuple(x.shape)}; convert it."
    )


def as_image_set(data: Images) -> ImageSet:
    """Accept an :class:`ImageSet`, an ``(n, H, W, 3)`` array, an image tensor (see
    :func:`tensor_image_set`) or a list of images (PIL, ``(H, W, 3)`` arrays, or
    ``(3, H, W)`` tensors, stacked by the tensor rules).

    Raises
    ------
    DataError
        Images of the wrong shape or type (one line with the fix).
    RcvlabError
        Anything else (an iterable of batches is read by :func:`extract_features` only).
    """
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, torch.Tensor):
        return tensor_image_set(data)
    if isinstance(data, np.ndarray):
        if data.ndim != 4:
            raise DataError(
                f"An image array must have shape (n, H, W, 3), got {data.shape}"
                + ("; add the batch dimension: x[None]." if data.ndim == 3 else ".")
            )
        return ArrayImageSet(list(data))
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if data and all(isinstance(im, torch.Tensor) for im in data):
            if len({tuple(im.shape) for im in data}) != 1:  # type: ignore[union-attr]
                raise DataError("Image tensors in a list must all have the same shape.")
            return tensor_image_set(torch.stack(list(data)))  # type: ignore[arg-type]
        return ArrayImageSet(
            [
                np.asarray(to_rgb(im)) if isinstance(im, Image.Image) else np.asarray(im)
                for im in data
            ]
        )
    hint = (
        " wrap the Dataset in a torch.utils.data.DataLoader"
        if isinstance(data, torch.utils.data.Dataset)
        else ""
    )
    raise RcvlabError(
        f"Cannot use {type(data).__name__} as images; pass an ImageSet, a uint8 array, an "
        f"image tensor or an iterable of batches.{hint}"
    )


def is_batch_stream(data: object) -> bool:
    """Whether :func:`extract_features` reads ``data`` as an iterable of batches.

    True for a ``DataLoader``, a generator or any other iterable that is not an
    :class:`ImageSet`, array, tensor or mapping, and for a list whose items are all 4-D
    batches or ``(images, targets)`` pairs (a list of single images is images).
    """
    if isinstance(data, ImageSet | np.ndarray | torch.Tensor | str | bytes | Mapping):
        return False
    if isinstance(data, Sequence):
        return bool(data) and all(
            isinstance(b, tuple | list)
            or (isinstance(b, torch.Tensor | np.ndarray) and b.ndim == 4)
            for b in data
        )
    return isinstance(data, Iterable)


class BatchStream:
    """An iterable of image batches, read once, in order (see :func:`extract_features`).

    The first batch is read when the stream is made (its kind and size decide the model's
    input size); the others by :meth:`loads`, each exactly once.
    """

    def __init__(self, data: Iterable[object]) -> None:
        self.total = _stream_total(data)
        self.it = iter(data)
        self.k = 0
        first = self._next()
        while first is not None and first[1].shape[0] == 0:
            first = self._next()
        if first is None:
            raise DataError("The iterable gave no images to extract features from.")
        self.first: tuple[str, torch.Tensor | np.ndarray] | None = first
        self.kind = first[0]
        self.size = (
            (int(first[1].shape[2]), int(first[1].shape[3])) if self.kind == "float" else None
        )

    def _next(self) -> tuple[str, torch.Tensor | np.ndarray] | None:
        item = next(self.it, _END)
        if item is _END:
            return None
        k, self.k = self.k, self.k + 1
        try:
            return _stream_item(item)
        except DataError as e:
            raise DataError(f"Batch {k} of the iterable: {e}") from None

    def loads(
        self, model: Model, *, batch_size: int, resize: str, strict: bool, same_size: bool
    ) -> Iterator[Loaded]:
        """Preprocessed pieces of at most ``batch_size`` images, numbered from 0.

        uint8 batches are preprocessed exactly as arrays are (:func:`load_batch`); float
        batches go as they are. ``same_size``: every float batch must have the first one's
        height and width (corrected GAP's positions depend on it).
        """
        i = 0
        item, self.first = self.first, None
        while item is not None:
            kind, arr = item
            k = self.k - 1
            if kind != self.kind:
                raise DataError(
                    f"Batch {k} of the iterable is {kind} and the first one {self.kind}; "
                    "give every batch as uint8 pixels or every batch preprocessed (float32)."
                )
            if same_size and kind == "float" and tuple(arr.shape[2:]) != self.size:
                raise DataError(
                    f"Batch {k} of the iterable is {tuple(arr.shape[2:])} px and the first "
                    f"one {self.size}; corrected GAP needs one input size for every batch."
                )
            for j0 in range(0, arr.shape[0], batch_size):
                piece = arr[j0 : j0 + batch_size]
                m = int(piece.shape[0])
                if kind == "float":
                    if not all_finite(piece):
                        raise DataError(
                            f"Batch {k} of the iterable holds NaN or infinite values; fix it."
                        )
                    yield i, i + m, piece, list(range(m)), {}
                else:
                    ids = [f"batch {k} image {j0 + j}" for j in range(m)]
                    part = ArrayImageSet(list(piece), ids=ids)
                    x, ok, bad = load_batch(model, part, 0, m, resize=resize, strict=strict)
                    yield i, i + m, x, ok, {i + j: s for j, s in bad.items()}
                i += m
            item = self._next()


def _stream_item(item: object) -> tuple[str, torch.Tensor | np.ndarray]:
    """``("float", (n, 3, H, W) tensor)`` or ``("uint8", (n, H, W, 3) array)`` of a batch."""
    x = item[0] if isinstance(item, tuple | list) and item else item
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.ndim == 3:
            raise DataError(
                f"got one image of shape {tuple(x.shape)}, not a batch; iterate a DataLoader, "
                "not a Dataset"
            )
        if x.dtype == torch.uint8:
            return "uint8", uint8_nhwc(x)
        if x.is_floating_point():
            return "float", check_float_batch(x)
        raise DataError(
            f"an image tensor must be uint8 (pixels 0-255) or float32 (already "
            f"preprocessed), got {x.dtype}"
        )
    if isinstance(x, np.ndarray):
        if x.ndim != 4 or x.shape[3] != 3:
            raise DataError(f"an image array batch must be (n, H, W, 3), got {x.shape}")
        return "uint8", x
    raise DataError(
        f"got a {type(x).__name__}; each batch must be an image tensor, an (n, H, W, 3) "
        "array, or an (images, targets) pair"
    )


def _stream_total(data: Iterable[object]) -> int:
    """Images the iterable will give, when known without reading it (else 0)."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader) and data.batch_size is not None:
        try:
            n = len(data.sampler)  # type: ignore[arg-type]
        except TypeError:
            return 0
        return n - n % data.batch_size if data.drop_last else n
    if isinstance(data, Sequence):
        return sum(
            int((b[0] if isinstance(b, tuple | list) and b else b).shape[0])  # type: ignore[union-attr]
            for b in data
        )
    return 0


class Prefetch(Iterator[T]):
    """The items of an iterator, each made in a thread one step ahead (see :func:`prefetch`)."""

    def __init__(self, items: Iterator[T]) -> None:
        self.items = items
        self.ex: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1)
        self.pending = self.ex.submit(next, items, _END)

    def __next__(self) -> T:
        if self.ex is None:
            raise StopIteration
        try:
            item = self.pending.result()
        except BaseException:
            self.close()
            raise
        if item is _END:
            self.close()
            raise StopIteration
        self.pending = self.ex.submit(next, self.items, _END)
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Wait for the item in the making, then close the iterator (idempotent)."""
        if self.ex is None:
            return
        ex, self.ex = self.ex, None
        ex.shutdown(wait=True, cancel_futures=True)
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def ordered_map(fn: Callable[[Any], T], items: Sequence[Any], workers: int) -> Iterator[T]:
    """``map(fn, items)`` computed in ``workers`` threads, yielded in order.

    At most ``2 * workers`` items are in the making at once; closing the generator waits for
    them (nothing is left running). With ``workers <= 1`` it is plain ``map``.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    ex = ThreadPoolExecutor(max_workers=workers)
    try:
        it = iter(items)
        pending = deque(ex.submit(fn, item) for item in islice(it, 2 * workers))
        while pending:
            result = pending.popleft().result()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(ex.submit(fn, nxt))
            yield result
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def load_threads(device: torch.device) -> int:
    """Threads that decode and resize images for a forward pass on ``device``.

    One on a CPU (more would take cores from the forward pass); on a GPU the forward pass
    needs no core, and one decoding core feeds only ~180 ImageNet JPEGs per second
    (``bench/scale_estimate.py``), so up to 8 of this process's cores decode.
    """
    if device.type == "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


@contextmanager
def full_fp32(device: torch.device) -> Iterator[None]:
    """Switch off TF32 (10-bit mantissa) matrix products and convolutions on a CUDA device
    for the block: ``precision="fp32"`` means float32 arithmetic there too (PyTorch lets
    cuDNN convolutions use TF32 by default, which moves features by ~1e-3 relative)."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def prefetch(items: Iterator[T]) -> Prefetch[T]:
    """Yield the items of ``items``, making item k+1 in a thread while the caller uses item k.

    The first item is started at once, before the first ``next``: the caller can set up
    (move a model to its device) while it is made. Each item is made exactly once, in
    order, and at most one ahead. ``close()`` (or an error, or the end) waits for the item
    in the making, then closes ``items``.
    """
    return Prefetch(items)


def extract_features(
    model: Model | nn.Module,
    data: Images,
    layers: Sequence[str] | str | None = None,
    *,
    batch_size: int = 32,
    pooling: str = "gap",
    resize: str = "resize",
    input_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    shard: tuple[int, int] | None = None,
    strict: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    channels_last: bool | None = None,
    layout: str | Mapping[str, str] | None = None,
    reshape: Reshape | Mapping[str, Reshape] | None = None,
    client: object | None = None,
    precision: str = "fp32",
) -> FeatureSet:
    """Pooled features of every requested layer from one forward pass per batch.

    Parameters
    ----------
    model : Model or torch.nn.Module
        From :func:`rcvlab.load_model`, or a plain module (then ``layers`` are dotted module
        paths and ``input_size`` is required, except with float tensors). The module comes
        back as it was given: same device, same memory format (strides) of every
        parameter and buffer, same ``training`` flags, no hooks left
        (:func:`rcvlab.models.state.borrowed`); it runs on ``device`` in eval mode.
    data : ImageSet, ndarray, tensor, sequence of images, or iterable of batches
        Pictures, preprocessed by the model (resize or crop, then its normalisation):

        - an :class:`ImageSet`, an ``(n, H, W, 3)`` array (uint8; other types scaled by
          :func:`rcvlab.data.base.to_uint8`) or a list of PIL images / ``(H, W, 3)`` arrays;
        - a uint8 tensor ``(n, 3, H, W)`` or ``(n, H, W, 3)`` (dim 1 of size 3 is read as
          channels-first), exactly as the same array.

        Or **already preprocessed** input: a float32 tensor ``(n, 3, H, W)`` goes to the
        network as it is, with no resize and no normalisation (build it with the model's
        own transform); its ``H, W`` must suit the model and are the input size for
        corrected GAP (``input_size`` may be left out, also for a plain module).

        Or an iterable of batches, read once: a ``torch.utils.data.DataLoader``, a
        generator or a list, whose items are such tensors, ``(n, H, W, 3)`` arrays, or
        ``(images, targets)`` pairs (targets ignored); all uint8 or all float32. Batches
        larger than ``batch_size`` are split. An iterable is never cached (``cache_dir``
        and ``shard`` are errors with one): its content cannot be fingerprinted without
        reading it and may change between passes (shuffling, augmentation). Pass the
        images as a tensor or array to cache them (tensors and arrays are fingerprinted
        by content).
    layers : sequence of str or "all", optional
        Layer names (default: every named layer of the model).
    batch_size : int
    pooling : {"gap", "corrected-gap", "max", "cls"}
        How maps become vectors (inside the forward hooks: memory is O(images x sum of dims)).
        Token layers: ``gap`` is the mean of the patch tokens, ``cls`` the class token.
        ``corrected-gap`` averages only positions whose receptive field lies inside the
        input (:mod:`rcvlab.features.receptive`); layers with none give NaN features and
        ``positions[layer] == 0``.
    resize : {"resize", "crop"}
        ``resize`` squeezes the whole image to the input size (keeps the object's area
        ratio: use it for scale); ``crop`` is the classifier's resize + centre crop.
    input_size : int, optional
        Overrides the model's input size (required for a plain module).
    cache_dir : path, optional
        Cache root. A second call with the same model, weights, layers, preprocessing and
        data reads the cache and runs no forward pass; an interrupted call resumes. Checked
        to be writable before any work (:func:`rcvlab.features.cache.check_cache_dir`); a
        cache file that cannot be read is logged in one line, moved aside and recomputed.
    device : str, optional
        Default: ``cuda`` when available, else ``cpu``. Checked first, also when the
        features come from the cache.
    shard : (start, stop), optional
        Compute only images ``[start, stop)`` into the cache (needs ``cache_dir``); other
        processes may compute other shards. The full set is merged by a call without
        ``shard`` once every shard is done (it computes whatever is still missing).
    strict : bool
        Raise on the first unreadable image instead of skipping and listing it.
    progress : bool or callable
        Show a progress bar, or call ``progress(done, total)`` after each batch (``total``
        is 0 for an iterable whose length is not known in advance).
    channels_last : bool, optional
        Run in channels-last memory format; the module's own memory format is restored
        afterwards. Default: on for CNNs (faster on CPU), off for networks with token or NHWC
        layers (transformers), where it slows the forward pass (Swin-T: 8.9 vs 10.4 img/s).
    layout : str or mapping of str to str, optional
        How layer outputs are laid out, for every layer or per layer name: ``NCHW``,
        ``NHWC`` (channels last), ``NLC`` (tokens, the model's prefix tokens first),
        ``NLC+k`` (``k`` class/register tokens first) or ``NC``. timm models state their
        own; a plain module's maps are read as ``NCHW``, and its 3-D outputs need this.
    reshape : callable or mapping of str to callable, optional
        ``f(output) -> (N, C, H, W)`` applied before pooling, for every layer or per layer
        name (as pytorch-grad-cam's ``reshape_transform``); overrides ``layout``.
    client : distributed.Client, optional
        Compute the images missing from the cache on this Dask cluster
        (:func:`rcvlab.distributed.open_client`): batch-aligned shards, each written by a
        worker into ``cache_dir`` (which every worker must see), then merged here; the
        features are the same as a single process's with the workers' thread count. Needs
        ``cache_dir``; ``device`` is resolved on each worker (``cuda``: its own GPU).
    precision : {"fp32", "bf16", "fp16"}
        Arithmetic of the forward pass. ``bf16`` and ``fp16`` run it under
        ``torch.autocast`` (convolutions and matrix products in 16 bits); the hooks average
        every map with a float32 accumulator, and the features are float32 either way.
        Faster where the hardware has 16-bit units (GPUs; CPUs with AMX). A CPU without
        AVX-512 cannot run bf16, one without AVX512-FP16/AMX-FP16 fp16, a GPU older than
        compute capability 8.0 bf16 (:func:`precision_supported`): one error before any
        work. On an AVX-512 CPU without AMX or AVX512-BF16 (no ``amx_bf16`` /
        ``avx512_bf16`` in ``/proc/cpuinfo``) bf16 is emulated and slower than fp32. The
        cache key holds the precision when it is not ``fp32`` (fp32 caches written before
        the option existed stay valid). 16-bit features of random-weight networks can differ
        from fp32 by as much as their own spread across images (which is tiny there); on
        pretrained networks the probe R² hardly moves (``bench/precision.py`` measures it).

    Returns
    -------
    FeatureSet
        ``{layer: (n, d)}`` for the whole set, or for the shard's rows with ``shard``.

    Raises
    ------
    RcvlabError
        A device that does not exist here, or a bad option (before any work); a cache or
        shard with an iterable; ``input_size`` different from a float tensor's size.
    CacheError
        A cache folder that cannot be written (checked before any work) or a cache write
        that fails on the way (full disk: what is computed so far stays cached).
    DataError
        No images, or none readable; with ``strict``, the first unreadable one; images of
        the wrong shape, channel count or dtype, or float tensors holding NaN.
    """
    check_precision(precision)
    dev = choose_device(device)
    autocast_dtype = check_precision_on(precision, dev)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise RcvlabError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if batch_size < 1:
        raise RcvlabError(f"batch_size must be >= 1, got {batch_size}.")
    get_pooling(pooling)
    if resize not in ("resize", "crop"):
        raise RcvlabError(f"Unknown resize mode {resize!r}; use 'resize' or 'crop'.")
    stream = is_batch_stream(data)
    if stream and (cache_dir is not None or shard is not None):
        raise RcvlabError(
            "An iterable of batches is read once and not cached; drop cache_dir/shard, or "
            "pass the images as one tensor or array to cache them."
        )
    if client is not None and cache_dir is None:
        raise RcvlabError(
            "client=... needs cache_dir=...: the workers write their shards into it (on "
            "several machines, a folder every worker sees)."
        )
    if cache_dir is not None:
        # expanded and absolute: "~" is a home folder, not a folder named "~", and workers
        # of a cluster do not share the driver's working directory
        cache_dir = check_cache_dir(cache_dir).resolve()
    images: ImageSet | BatchStream = BatchStream(data) if stream else as_image_set(data)  # type: ignore[arg-type]
    if isinstance(images, BatchStream):
        n, float_size = 0, images.size
    else:
        n = len(images)
        if n == 0:
            raise DataError("No images to extract features from.")
        float_size = images.spatial_size if isinstance(images, TensorImageSet) else None
    if float_size is not None and input_size is not None and float_size != (input_size,) * 2:
        raise RcvlabError(
            f"input_size={input_size} does not apply to float tensors of {float_size[0]}x"
            f"{float_size[1]} px: they go to the network as they are; leave input_size out, "
            "or resize them yourself."
        )
    if not isinstance(model, Model):
        model = load_model(
            model,
            input_size=input_size if float_size is None else float_size[0],
            layers=None if layers in (None, "all") else list(layers),
        )
    elif input_size is not None and input_size != model.input_size:
        model = replace(model, preprocessing=replace(model.preprocessing, input_size=input_size))
    specs = model.resolve(layers, layout=layout, reshape=reshape)
    if channels_last is None:
        channels_last = not any(s.layout in ("NLC", "NHWC") for s in (*model.layer_specs, *specs))
    start, stop = (0, n) if shard is None else (int(shard[0]), int(shard[1]))
    if not stream and not 0 <= start < stop <= n:
        raise RcvlabError(f"Shard {shard} is outside the data set's range [0, {n}).")
    if shard is not None and cache_dir is None:
        raise RcvlabError("shard=... needs cache_dir=... so shards can be merged.")

    names = [s.name for s in specs]
    size = float_size or model.input_size
    pool, linear, positions = layer_pools(pooling, model.module, specs, size)
    key = ""
    # Only where a cache is read or written: the key hashes every in-memory image (about
    # 1 ms per 299 px float image, a cap on a GPU's throughput).
    if cache_dir is not None and not isinstance(images, BatchStream):
        payload = {
            "model": model.name,
            "weights": model.weights_id,
            "layers": [s.key() for s in specs],
            "preprocessing": (
                {"as_given": list(float_size)}
                if float_size is not None
                else {**model.preprocessing.key(), "mode": resize}
            ),
            "pooling": pooling,
            "data": images.fingerprint(),
            "n": n,
        }
        if precision != "fp32":
            # fp32 keys are left as they were, so existing caches are still read
            payload["precision"] = precision
        key = cache_key(payload)
    run = partial(
        _run_batches,
        model,
        images,
        names=names,
        specs=specs,
        pool=pool,
        linear=linear,
        dev=dev,
        batch_size=batch_size,
        resize=resize,
        strict=strict,
        progress=progress,
        channels_last=channels_last,
        same_size=pooling == "corrected-gap",
        dtype=autocast_dtype,
    )
    if client is not None and cache_dir is not None and not isinstance(images, BatchStream):
        from rcvlab.distributed.extract import cluster_runner

        # The workers rerun this function on their shards with the same options.
        options = {
            "layers": layers,
            "batch_size": batch_size,
            "pooling": pooling,
            "resize": resize,
            "device": device,
            "strict": strict,
            "channels_last": channels_last,
            "layout": layout,
            "reshape": reshape,
            "precision": precision,
        }
        run = cluster_runner(  # type: ignore[assignment]
            client, model, images, cache_dir=cache_dir, key=key, options=options,
            batch_size=batch_size, progress=progress,
        )  # fmt: skip

    if isinstance(images, BatchStream):
        feats, valid, skipped, done = _read_stream(run)
    elif cache_dir is None:
        mem: dict[str, np.ndarray] = {}
        valid = np.zeros(n, dtype=bool)
        skipped: dict[int, Skip] = {}

        def keep(i0: int, i1: int, f: dict[str, np.ndarray], v: np.ndarray, s: dict) -> None:
            for name, arr in f.items():
                if name not in mem:
                    mem[name] = np.full((n, arr.shape[1]), np.nan, dtype=np.float32)
                mem[name][i0:i1] = arr
            valid[i0:i1] = v
            skipped.update(s)

        done = run([(start, stop)], keep)
        feats = mem
    else:
        cache = FeatureCache(cache_dir, key, n, names, meta={**payload, "source": images.source})
        done = 0
        # Each pass computes what is missing; a file found unreadable (moved aside) or taken
        # away by another process's merge sends us round again.
        for _ in range(_CACHE_PASSES):
            done += run(cache.missing(start, stop), cache.write_chunk)
            try:
                if shard is None:
                    cache.merge()
                feats, valid, skipped = cache.read(start, stop)
                break
            except CacheMiss:
                continue
        else:
            raise CacheError(
                f"The feature cache {cache.dir} kept losing or corrupting files while it was "
                "read; check the disk, or run without a cache (--cache-dir none)."
            )
    result = FeatureSet((k, feats[k]) for k in names if k in feats)
    if len(result) != len(names):
        raise DataError(
            f"No image of {getattr(images, 'source', '') or 'the data'} could be read; "
            f"first problem: {next(iter(skipped.values())).reason if skipped else 'unknown'}."
        )
    result.valid = valid
    result.skipped = skipped
    result.key = key
    result.n_computed = done
    result.positions = positions
    return result


Sink = Callable[[int, int, dict[str, np.ndarray], np.ndarray, dict[int, Skip]], None]


def _read_stream(
    run: Callable[[list[tuple[int, int]], Sink], int],
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, Skip], int]:
    """Features, validity, skips and image count of a :class:`BatchStream` (length unknown
    until it ends, so the batches are kept and stacked at the end)."""
    parts: list[tuple[int, int, dict[str, np.ndarray], np.ndarray]] = []
    skipped: dict[int, Skip] = {}

    def keep(i0: int, i1: int, f: dict[str, np.ndarray], v: np.ndarray, s: dict) -> None:
        parts.append((i0, i1, f, v))
        skipped.update(s)

    n = run([], keep)
    feats: dict[str, np.ndarray] = {}
    valid = np.zeros(n, dtype=bool)
    for i0, i1, f, v in parts:
        for name, arr in f.items():
            if name not in feats:
                feats[name] = np.full((n, arr.shape[1]), np.nan, dtype=np.float32)
            feats[name][i0:i1] = arr
        valid[i0:i1] = v
    return feats, valid, skipped, n


def _run_batches(
    model: Model,
    images: ImageSet | BatchStream,
    todo: list[tuple[int, int]],
    sink: Sink,
    *,
    names: list[str],
    specs: Sequence[LayerSpec],
    pool: dict[str, Pool],
    linear: bool,
    dev: torch.device,
    batch_size: int,
    resize: str,
    strict: bool,
    progress: bool | Callable[[int, int], None],
    channels_last: bool,
    same_size: bool = False,
    dtype: torch.dtype | None = None,
) -> int:
    """Forward the index ranges ``todo`` (a stream: all of it) batch by batch, handing each
    batch to ``sink``; ``dtype``: autocast's 16-bit type (None: float32 throughout).

    Returns the number of images that went through the network.
    """
    loads: Iterator[Loaded]
    if isinstance(images, BatchStream):
        total = images.total
        loads = images.loads(
            model, batch_size=batch_size, resize=resize, strict=strict, same_size=same_size
        )
    else:
        total = sum(b - a for a, b in todo)
        if not total:
            return 0
        ranges = [(i0, min(i0 + batch_size, b)) for a, b in todo for i0 in range(a, b, batch_size)]

        # uint8 pixels leave the thread; the network's device normalises them (a quarter
        # of the bytes to copy, and no torch arithmetic in the thread competing with the
        # forward pass for the CPU's threads)
        def load(r: tuple[int, int]) -> Loaded:
            x, ok, bad = load_batch(
                model, images, r[0], r[1], resize=resize, strict=strict, raw=True
            )
            return r[0], r[1], x, ok, bad

        # On a GPU several batches are decoded at once (in order); on a CPU one, ahead.
        loads = ordered_map(load, ranges, load_threads(dev))
    if dev.type == "cuda":
        loads = (
            (i0, i1, x if x is None or x.device.type != "cpu" else pinned(x), ok, bad)
            for i0, i1, x, ok, bad in loads
        )
    bar = progress_bar(progress, total, f"extract {model.name} ({model.weights})")
    done = 0
    # On a GPU batch k's features are handed over once batch k+1 is queued, so that the
    # GPU is not left idle while they are copied back and written; on a CPU at once.
    lag = dev.type == "cuda"
    ready: list[tuple[int, int, Pooled, dict[int, Skip]]] = []

    def hand_over() -> None:
        nonlocal done
        i0, i1, pooled, skipped = ready.pop(0)
        sink(i0, i1, pooled.arrays(), pooled.valid(), skipped)
        tick(i1 - i0)
        done += i1 - i0

    try:
        # Decoding and preprocessing of batch k+1 run in a thread while batch k is in the
        # network (torch releases the GIL), so the forward pass is not kept waiting; batch
        # 0 is read while the model is moved to its device.
        with (
            closing(prefetch(loads)) as batches,
            borrowed(model.module, dev, channels_last=channels_last) as module,
            capture(module, specs, pool, linear=linear) as out,
            torch.inference_mode(),
            # entered once: autocast keeps its 16-bit copies of the weights for every batch
            torch.autocast(dev.type, dtype=dtype) if dtype is not None else full_fp32(dev),
            bar as tick,
        ):
            try:
                for i0, i1, x, ok_idx, skipped in batches:
                    pooled = _forward(
                        module, x, ok_idx, i1 - i0, out, names, dev, channels_last, model
                    )
                    ready.append((i0, i1, pooled, skipped))
                    if len(ready) > lag:
                        hand_over()
                while ready:
                    hand_over()
            except BaseException:
                # what was computed before the failure is kept (an interrupted call resumes
                # from it); a failure to hand it over is secondary to the first one
                with suppress(Exception):
                    while ready:
                        hand_over()
                raise
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return done


def pinned(x: torch.Tensor) -> torch.Tensor:
    """``x`` copied to page-locked memory with its strides (asynchronous copies to a GPU)."""
    out = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, pin_memory=True)
    # numpy's copy stays in this (loading) thread; torch's would start OpenMP threads
    np.copyto(out.numpy(), x.detach().numpy())
    return out


def load_batch(
    model: Model,
    images: ImageSet,
    i0: int,
    i1: int,
    *,
    resize: str,
    strict: bool,
    raw: bool = False,
) -> tuple[torch.Tensor | None, list[int], dict[int, Skip]]:
    """Read and preprocess images ``[i0, i1)``; unreadable ones are listed, not fatal.

    Parameters
    ----------
    model : Model
        Its preprocessing is applied (not to a :class:`TensorImageSet`, whose rows are
        already preprocessed and are returned as they are).
    images : ImageSet
    i0, i1 : int
        The range of images.
    resize : {"resize", "crop"}
    strict : bool
        Raise on the first unreadable image instead of listing it.
    raw : bool
        Stop before the normalisation: pictures come back as uint8 ``(k, 3, H, W)`` pixels
        (channels-last strides), for ``model.preprocessing.normalise`` to finish on the
        network's device.

    Returns
    -------
    (x, ok_idx, skipped)
        The ``(k, 3, H, W)`` batch of the readable images (None if there is none), their
        positions within the range, and ``{index in the data set: Skip}`` for the others.
    """
    if isinstance(images, TensorImageSet):
        return images.batch(i0, i1), list(range(i1 - i0)), {}
    pil, ok_idx, skipped = [], [], {}
    for i in range(i0, i1):
        try:
            pil.append(images.load(i))
            ok_idx.append(i - i0)
        except DataError as e:
            if strict:
                raise DataError(
                    f"{e} (image {i}; drop --strict to skip and list such images)"
                ) from e
            skipped[i] = Skip(images.ids[i], str(e))
    if not pil:
        return None, ok_idx, skipped
    if raw:
        pixels = torch.from_numpy(model.preprocessing.pixels(pil, mode=resize))
        return pixels.permute(0, 3, 1, 2), ok_idx, skipped
    return model.preprocessing(pil, mode=resize), ok_idx, skipped


class Pooled:
    """One batch's pooled features on their way from the network's device to numpy.

    On a GPU every layer's features go back in one asynchronous copy; :meth:`arrays`
    waits for it. Rows of unreadable images are NaN.
    """

    def __init__(
        self, out: Mapping[str, torch.Tensor], names: list[str], ok_idx: list[int], size: int
    ) -> None:
        self.names, self.ok_idx, self.size = names, ok_idx, size
        self.dims = [int(out[k].shape[1]) for k in names]
        self.event: torch.cuda.Event | None = None
        parts = [out[k] for k in names]
        if parts and parts[0].device.type == "cuda":
            flat = torch.cat(parts, dim=1)
            # into page-locked memory; the event says when it has arrived
            self.host: list[torch.Tensor] = [flat.to("cpu", non_blocking=True)]
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = [p.cpu() for p in parts]

    def valid(self) -> np.ndarray:
        """Which rows of the batch hold features."""
        valid = np.zeros(self.size, dtype=bool)
        valid[self.ok_idx] = True
        return valid

    def arrays(self) -> dict[str, np.ndarray]:
        """``{layer: (size, d) float32}`` (waits for the copy)."""
        if self.event is not None:
            self.event.synchronize()
            flat = self.host[0].numpy()
            bounds = np.cumsum([0, *self.dims])
            # copies: the page-locked buffer is not kept alive by the caller's arrays
            parts = [flat[:, a:b].copy() for a, b in pairwise(bounds)]
        else:
            parts = [h.numpy() for h in self.host]
        if len(self.ok_idx) == self.size:
            return dict(zip(self.names, parts, strict=True))
        feats: dict[str, np.ndarray] = {}
        for k, v in zip(self.names, parts, strict=True):
            full = np.full((self.size, v.shape[1]), np.nan, dtype=np.float32)
            full[self.ok_idx] = v
            feats[k] = full
        return feats


def _forward(
    module: nn.Module,
    x: torch.Tensor | None,
    ok_idx: list[int],
    size: int,
    out: dict[str, torch.Tensor],
    names: list[str],
    dev: torch.device,
    channels_last: bool,
    model: Model,
) -> Pooled:
    """One forward pass (queued, on a GPU); uint8 pixels are normalised on ``dev`` first."""
    if x is None:
        return Pooled({}, [], ok_idx, size)
    x = x.to(dev, non_blocking=True)
    if x.dtype == torch.uint8:
        x = model.preprocessing.normalise(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out.clear()
    try:
        module(x)
    except RuntimeError as e:
        msg = str(e).splitlines()[0].rstrip(".")
        if "size" not in msg.lower():
            raise
        raise RcvlabError(
            f"{model.name} cannot run on {x.shape[-2]}x{x.shape[-1]} px inputs: {msg}. "
            "Use a larger --input-size."
        ) from None
    for k in names:
        if k not in out:
            raise RcvlabError(f"Layer {k} was not reached in the forward pass of {model.name}.")
    return Pooled(out, names, ok_idx, size)


def one_layer(
    model: Model,
    data: Images,
    layer: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    **kwargs: object,
) -> tuple[np.ndarray, FeatureSet]:
    """Features of one layer, read from the all-layers cache when there is one.

    With a ``cache_dir`` and a layer of the model's own list, every named layer is
    extracted (the forward pass runs through the whole network anyway): the cache entry is
    the one ``rcvlab probe`` and the demo write, so a one-layer analysis after a profile
    reads it instead of running the network again, and vice versa.

    Returns
    -------
    (X, FeatureSet)
        ``X`` the layer's ``(n, d)`` features, and the extraction (validity, skips).
    """
    shared = cache_dir is not None and layer in model.layers
    feats = extract_features(
        model, data, None if shared else [layer], cache_dir=cache_dir, **kwargs
    )
    return feats[model.resolve([layer])[0].name], feats


def layer_dims(
    model: Model, layers: Sequence[str] | str | None = None, input_size: int | None = None
) -> dict[str, int]:
    """Feature dimension of each layer, from one forward pass of a blank image."""
    specs = model.resolve(layers)
    size = input_size or model.input_size
    pool, linear = get_pooling("gap")
    x = torch.zeros(1, 3, size, size)
    with (
        borrowed(model.module, "cpu") as module,
        capture(module, specs, pool, linear=linear) as out,
        torch.inference_mode(),
    ):
        module(x)
    return {s.name: int(out[s.name].shape[1]) for s in specs}


__all__ = [
    "PRECISIONS",
    "BatchStream",
    "FeatureSet",
    "Images",
    "Pooled",
    "Prefetch",
    "as_image_set",
    "check_precision",
    "check_precision_on",
    "choose_device",
    "extract_features",
    "is_batch_stream",
    "layer_dims",
    "load_batch",
    "one_layer",
    "pinned",
    "precision_supported",
    "prefetch",
    "tensor_image_set",
    "uint8_nhwc",
]
