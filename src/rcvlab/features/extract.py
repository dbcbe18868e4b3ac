"""One forward pass per batch for every requested layer, pooled in the hooks, cached on disk."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from rcvlab.data.base import ArrayImageSet, ImageSet, Skip, to_rgb
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
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model, load_model
from rcvlab.progress import progress_bar

# Passes of compute-missing-then-read before a cache that keeps losing files is an error.
_CACHE_PASSES = 4


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


def as_image_set(data: ImageSet | np.ndarray | Sequence[Image.Image | np.ndarray]) -> ImageSet:
    """Accept an :class:`ImageSet`, an ``(n, H, W, 3)`` uint8 array or a list of images."""
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, np.ndarray) and data.ndim == 4:
        return ArrayImageSet(list(data))
    if isinstance(data, Sequence):
        return ArrayImageSet(
            [
                np.asarray(to_rgb(im)) if isinstance(im, Image.Image) else np.asarray(im)
                for im in data
            ]
        )
    raise RcvlabError(f"Cannot use {type(data).__name__} as images; pass an ImageSet or arrays.")


def extract_features(
    model: Model | nn.Module,
    data: ImageSet | np.ndarray | Sequence[Image.Image | np.ndarray],
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
    channels_last: bool = True,
) -> FeatureSet:
    """Pooled features of every requested layer from one forward pass per batch.

    Parameters
    ----------
    model : Model or torch.nn.Module
        From :func:`rcvlab.load_model`, or a plain module (then ``layers`` are dotted module
        paths and ``input_size`` is required).
    data : ImageSet, ndarray or sequence of images
    layers : sequence of str or "all", optional
        Layer names (default: every named layer of the model).
    batch_size : int
    pooling : {"gap", "corrected-gap", "max"}
        How maps become vectors (inside the forward hooks: memory is O(images x sum of dims)).
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
        Show a progress bar, or call ``progress(done, total)`` after each batch.
    channels_last : bool
        Run in channels-last memory format (faster for CNNs on CPU).

    Returns
    -------
    FeatureSet
        ``{layer: (n, d)}`` for the whole set, or for the shard's rows with ``shard``.

    Raises
    ------
    RcvlabError
        A device that does not exist here, or a bad option (before any work).
    CacheError
        A cache folder that cannot be written (checked before any work) or a cache write
        that fails on the way (full disk: what is computed so far stays cached).
    DataError
        No images, or none readable; with ``strict``, the first unreadable one.
    """
    dev = choose_device(device)
    if cache_dir is not None:
        check_cache_dir(cache_dir)
    if not isinstance(model, Model):
        model = load_model(
            model, input_size=input_size, layers=None if layers in (None, "all") else list(layers)
        )
    elif input_size is not None and input_size != model.input_size:
        model = replace(model, preprocessing=replace(model.preprocessing, input_size=input_size))
    images = as_image_set(data)
    n = len(images)
    if n == 0:
        raise DataError("No images to extract features from.")
    if batch_size < 1:
        raise RcvlabError(f"batch_size must be >= 1, got {batch_size}.")
    specs = model.resolve(layers)
    get_pooling(pooling)
    start, stop = (0, n) if shard is None else (int(shard[0]), int(shard[1]))
    if not 0 <= start < stop <= n:
        raise RcvlabError(f"Shard {shard} is outside the data set's range [0, {n}).")
    if shard is not None and cache_dir is None:
        raise RcvlabError("shard=... needs cache_dir=... so shards can be merged.")

    payload = {
        "model": model.name,
        "weights": model.weights_id,
        "layers": [(s.name, s.module, s.kind) for s in specs],
        "preprocessing": {**model.preprocessing.key(), "mode": resize},
        "pooling": pooling,
        "data": images.fingerprint(),
        "n": n,
    }
    key = cache_key(payload)
    names = [s.name for s in specs]
    pool, linear, positions = layer_pools(pooling, model.module, specs, model.input_size)
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
    )

    if cache_dir is None:
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
            f"No image of {images.source or 'the data'} could be read; "
            f"first problem: {next(iter(skipped.values())).reason if skipped else 'unknown'}."
        )
    result.valid = valid
    result.skipped = skipped
    result.key = key
    result.n_computed = done
    result.positions = positions
    return result


Sink = Callable[[int, int, dict[str, np.ndarray], np.ndarray, dict[int, Skip]], None]


def _run_batches(
    model: Model,
    images: ImageSet,
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
) -> int:
    """Forward the index ranges ``todo`` batch by batch, handing each batch to ``sink``.

    Returns the number of images that went through the network.
    """
    total = sum(b - a for a, b in todo)
    if not total:
        return 0
    module = model.module.to(dev)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    module.eval()
    bar = progress_bar(progress, total, f"extract {model.name} ({model.weights})")
    batches = [(i0, min(i0 + batch_size, b)) for a, b in todo for i0 in range(a, b, batch_size)]
    # Decoding and preprocessing of batch k+1 run in a thread while batch k is in the
    # network (torch releases the GIL), so the forward pass is not kept waiting.
    pool_ex = ThreadPoolExecutor(max_workers=1)
    load = partial(load_batch, model, images, resize=resize, strict=strict)
    try:
        with (
            capture(module, specs, pool, linear=linear) as out,
            torch.inference_mode(),
            bar as tick,
        ):
            pending = pool_ex.submit(load, *batches[0])
            for k, (i0, i1) in enumerate(batches):
                x, ok_idx, skipped = pending.result()
                if k + 1 < len(batches):
                    pending = pool_ex.submit(load, *batches[k + 1])
                feats = _forward(
                    module, x, ok_idx, i1 - i0, out, names, dev, channels_last, model.name
                )
                valid = np.zeros(i1 - i0, dtype=bool)
                valid[ok_idx] = True
                sink(i0, i1, feats, valid, skipped)
                tick(i1 - i0)
    finally:
        pool_ex.shutdown(wait=True, cancel_futures=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return total


def load_batch(
    model: Model, images: ImageSet, i0: int, i1: int, *, resize: str, strict: bool
) -> tuple[torch.Tensor | None, list[int], dict[int, Skip]]:
    """Read and preprocess images ``[i0, i1)``; unreadable ones are listed, not fatal.

    Parameters
    ----------
    model : Model
        Its preprocessing is applied.
    images : ImageSet
    i0, i1 : int
        The range of images.
    resize : {"resize", "crop"}
    strict : bool
        Raise on the first unreadable image instead of listing it.

    Returns
    -------
    (x, ok_idx, skipped)
        The ``(k, 3, H, W)`` batch of the readable images (None if there is none), their
        positions within the range, and ``{index in the data set: Skip}`` for the others.
    """
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
    x = model.preprocessing(pil, mode=resize) if pil else None
    return x, ok_idx, skipped


def _forward(
    module: nn.Module,
    x: torch.Tensor | None,
    ok_idx: list[int],
    size: int,
    out: dict[str, torch.Tensor],
    names: list[str],
    dev: torch.device,
    channels_last: bool,
    model_name: str,
) -> dict[str, np.ndarray]:
    """One forward pass; rows of unreadable images are NaN."""
    feats: dict[str, np.ndarray] = {}
    if x is None:
        return feats
    x = x.to(dev)
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
            f"{model_name} cannot run on {x.shape[-2]}x{x.shape[-1]} px inputs: {msg}. "
            "Use a larger --input-size."
        ) from None
    for k in names:
        if k not in out:
            raise RcvlabError(f"Layer {k} was not reached in the forward pass of {model_name}.")
        v = out[k].detach().cpu().numpy()
        full = np.full((size, v.shape[1]), np.nan, dtype=np.float32)
        full[ok_idx] = v
        feats[k] = full
    return feats


def one_layer(
    model: Model,
    data: ImageSet | np.ndarray | Sequence[Image.Image | np.ndarray],
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
    with capture(model.module, specs, pool, linear=linear) as out, torch.inference_mode():
        model.module.to("cpu").eval()(x)
    return {s.name: int(out[s.name].shape[1]) for s in specs}


__all__ = [
    "FeatureSet",
    "as_image_set",
    "choose_device",
    "extract_features",
    "layer_dims",
    "load_batch",
    "one_layer",
]
