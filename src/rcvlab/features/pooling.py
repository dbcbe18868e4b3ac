"""Reducing a layer's output map to one vector per image, inside the forward pass.

``gap``
    global average pooling over all positions.
``corrected-gap``
    the average over the positions whose receptive field lies entirely inside the input
    (:func:`rcvlab.features.receptive.padding_masks`): zero padding leaves no trace in it.
    A layer with no such position at the input size gives NaN features, never a made-up
    value; :func:`layer_pools` reports the number of positions per layer.
``max``
    global max pooling.
``cls``
    the class token of a token layer (layout ``NLC`` with prefix tokens); an error on a
    map or on tokens without a class token.

The hooks hand every pooling an ``(N, C, H, W)`` map or an ``(N, C)`` vector, whatever
the layer's layout (:func:`rcvlab.features.hooks.to_pooling_input`): a token layer's
patch tokens arrive as an ``(N, C, L, 1)`` map, so GAP is their mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from rcvlab.errors import RcvlabError, UnknownNameError, did_you_mean
from rcvlab.features.hooks import Pool
from rcvlab.features.receptive import padding_masks
from rcvlab.models.layers import LayerSpec

#: 16-bit floating types of autocast's maps, pooled with a float32 accumulator.
HALF_TYPES = (torch.bfloat16, torch.float16)


def gap(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: ``(n, c, h, w) -> (n, c)``; vectors pass through unchanged.

    A 16-bit map (bf16/fp16 under autocast) is summed in float32 and the mean returned as
    float32: its rounding to 16 bits would add an error of up to 2**-9 of every feature
    (bf16), on top of the forward pass's own. Other types keep their own (float32 maps:
    the same bits as before float32 accumulation existed).

    Token sequences are brought to maps by the hooks first (their layout decides which
    axis is channels), so a 3-D tensor here is an error, not a guess.
    """
    if x.ndim == 4:
        return x.mean(dim=(2, 3), dtype=torch.float32 if x.dtype in HALF_TYPES else None)
    if x.ndim == 2:
        return x
    raise ValueError(f"cannot pool an output of shape {tuple(x.shape)}")


def gmp(x: torch.Tensor) -> torch.Tensor:
    """Global max pooling (not linear: not available for ResNet residual sums).

    The maximum of 16-bit values is one of them, exact in float32 (the hooks cast it).
    """
    if x.ndim == 4:
        return x.amax(dim=(2, 3))
    return gap(x)


def cls(x: torch.Tensor) -> torch.Tensor:
    """The class token, handed over by the hooks as ``(n, c)`` (see :data:`POOLINGS`)."""
    if x.ndim != 2:
        raise ValueError(f"cls pooling takes the class token (n, c), got {tuple(x.shape)}")
    return x


cls.class_token = True  # type: ignore[attr-defined]  # read by hooks.reads_class_token


def corrected_gap(mask: np.ndarray) -> Pool:
    """Average over the positions where ``mask`` is True (see :func:`padding_masks`).

    Parameters
    ----------
    mask : ndarray of bool
        ``(h, w)`` for maps, ``(tokens,)`` for ``(n, tokens, c)`` sequences, ``()`` for
        vectors.

    Returns
    -------
    callable
        ``(n, c, h, w) -> (n, c)``; all-NaN rows when the mask keeps no position. A 16-bit
        map (autocast) is averaged in float32 (see :func:`gap`).
    """
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def weights(x: torch.Tensor) -> torch.Tensor:
        k = (x.device, x.dtype)
        if k not in cache:
            cache[k] = torch.as_tensor(mask / max(count, 1), dtype=x.dtype, device=x.device)
        return cache[k]

    def pool(x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (2, 3, 4):
            raise ValueError(f"cannot pool an output of shape {tuple(x.shape)}")
        if x.dtype in HALF_TYPES:
            # a 16-bit matrix product would round the weights 1/count and the result
            x = x.float()
        kind = x.device.type
        if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
            # the hooks run inside the forward pass's autocast, which would make the
            # matrix products below 16-bit again
            with torch.autocast(kind, enabled=False):
                return _masked_mean(x)
        return _masked_mean(x)

    def _masked_mean(x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[1:2]) if x.ndim == 3 else tuple(x.shape[2:])
        if spatial != mask.shape:
            raise ValueError(
                f"corrected GAP mask of shape {mask.shape} does not fit an output of shape "
                f"{tuple(x.shape)} (was the input size changed?)"
            )
        if count == 0:
            c = x.shape[2] if x.ndim == 3 else x.shape[1]
            return torch.full((x.shape[0], c), float("nan"), dtype=x.dtype, device=x.device)
        if x.ndim == 2:
            return x
        if x.ndim == 3:  # (n, tokens, c), tokens already known to be positions
            return (weights(x).reshape(1, 1, -1) @ x)[:, 0]
        # one matrix-vector product per image; channels-last maps (NHWC layers included)
        # are read in place
        n, c, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last):
            rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
            return (weights(x).reshape(1, 1, h * w) @ rows)[:, 0]
        return x.reshape(n, c, h * w) @ weights(x).reshape(h * w)

    return pool


POOLINGS: dict[str, tuple[Pool | None, bool]] = {
    "gap": (gap, True),
    "corrected-gap": (None, True),  # per layer: built from the masks by layer_pools
    "max": (gmp, False),
    "cls": (cls, True),
}


def get_pooling(name: str) -> tuple[Pool | None, bool]:
    """Return ``(pool, is_linear)`` for a pooling name (``pool`` is None for corrected GAP,
    whose pooling differs per layer: use :func:`layer_pools`)."""
    if name not in POOLINGS:
        raise UnknownNameError(
            f"Unknown pooling '{name}'.{did_you_mean(name, POOLINGS)} "
            f"Available: {', '.join(POOLINGS)}."
        )
    return POOLINGS[name]


def layer_pools(
    name: str, module: nn.Module, specs: Sequence[LayerSpec], size: int | tuple[int, int]
) -> tuple[dict[str, Pool], bool, dict[str, int]]:
    """The pooling of every layer for an input of ``size`` pixels.

    Parameters
    ----------
    name : {"gap", "corrected-gap", "max", "cls"}
    module : torch.nn.Module
        The network (for corrected GAP's padding masks; weights do not matter).
    specs : sequence of LayerSpec
    size : int or (int, int)
        Input height and width in pixels.

    Returns
    -------
    pools : dict of str to callable
    linear : bool
        Whether the pooling is linear (required for ResNet residual sums).
    positions : dict of str to int
        For ``corrected-gap``: the positions averaged per layer (0: none at this input size,
        the layer's features are NaN). Empty for ``gap`` and ``max``, which use every
        position (readers take a missing layer as "not counted", e.g.
        ``positions.get(layer, -1)``).

    Raises
    ------
    RcvlabError
        ``corrected-gap`` on a token layer (``NLC``): tokens have no zero padding to
        leave out.
    """
    pool, linear = get_pooling(name)
    if name == "corrected-gap":
        tokens = [s.name for s in specs if s.layout == "NLC" and s.reshape is None]
        if tokens:
            raise RcvlabError(
                f"Corrected GAP does not apply to token layers ({', '.join(tokens)}): tokens "
                "carry no zero padding; use pooling='gap' (mean of patch tokens) or 'cls'."
            )
    if pool is not None:
        return {s.name: pool for s in specs}, linear, {}
    masks = padding_masks(module, specs, size)
    pools = {s.name: corrected_gap(masks[s.name]) for s in specs}
    return pools, linear, {k: int(v.sum()) for k, v in masks.items()}


__all__ = [
    "HALF_TYPES",
    "POOLINGS",
    "Pool",
    "cls",
    "corrected_gap",
    "gap",
    "get_pooling",
    "gmp",
    "layer_pools",
]
