"""Output positions whose receptive field lies entirely inside the input (corrected GAP).

A convolution, pooling or explicit pad with padding reads values that are not part of the
image. Every output position that depends on such a value, through any path of the
network (Inception branches included: the widest receptive field decides), has a receptive
field reaching outside the input. :func:`padding_masks` finds these positions *exactly* and
from the network itself: it runs one forward pass of a finite input in which every padded
value is NaN instead of zero. NaN survives every arithmetic step (``NaN * 0`` is NaN, as is
the max, mean or ReLU of anything containing it), so a position of a layer's output is NaN
exactly when its receptive field contains padding. This covers stride-2 convolutions,
TensorFlow-style asymmetric "same" padding (timm's ``Conv2dSame`` pads with ``F.pad``),
dilation, pooling with padding (its padding counts as outside, as in the geometric
definition) and ``ceil_mode`` windows that run past the input.

The pass intercepts ``conv2d``, ``max_pool2d``, ``avg_pool2d`` and ``pad`` with a
:class:`torch.overrides.TorchFunctionMode`; a network that pads by other means (a custom
CUDA kernel, ``unfold``) would not be seen. The masks depend only on the architecture and
the input size, not on the weights, and are cached in memory per (architecture, input size).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from rcvlab.errors import RcvlabError
from rcvlab.features.hooks import capture
from rcvlab.models.layers import LayerSpec
from rcvlab.models.state import borrowed, module_device

_NAN = float("nan")


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _bind(args: tuple, kwargs: dict, names: Sequence[str], defaults: dict) -> dict:
    out = dict(defaults)
    out.update(zip(names, args, strict=False))
    out.update(kwargs)
    return out


def _nan_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    if left == right == top == bottom == 0:
        return x
    return F.pad(x, (left, right, top, bottom), mode="constant", value=_NAN)


def _ceil_extra(size: int, k: int, s: int, p: int, d: int) -> int:
    """Extra right padding that makes a floor-mode window grid equal PyTorch's ceil mode."""
    span = d * (k - 1) + 1
    out = math.ceil((size + 2 * p - span) / s) + 1
    if (out - 1) * s >= size + p:  # PyTorch drops a last window that starts in the padding
        out -= 1
    return max(0, (out - 1) * s + span - (size + 2 * p))


class PaddingTaint(TorchFunctionMode):
    """Torch-function mode in which every padded value is NaN.

    Inside ``with PaddingTaint():`` a network computes the same shapes as usual, but each
    output element that reads a padded value (directly or through earlier layers) is NaN.
    """

    CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    MAXPOOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    AVGPOOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func is torch.conv2d or name == "conv2d":
            return self._conv(func, args, kwargs)
        if name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            return self._maxpool(func, args, kwargs)
        if name == "avg_pool2d":
            return self._avgpool(func, args, kwargs)
        if name in ("pad", "_pad") and len(args) + len(kwargs) >= 2:
            return self._pad(args, kwargs)
        return func(*args, **kwargs)

    def _conv(self, func, args, kwargs):
        a = _bind(
            args,
            kwargs,
            self.CONV,
            {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1},
        )
        x, w = a["input"], a["weight"]
        dil = _pair(a["dilation"])
        pad = a["padding"]
        if isinstance(pad, str):
            if pad == "valid":
                lr = tb = (0, 0)
            else:  # "same" (stride 1): PyTorch puts the odd extra pixel on the right/bottom
                th, tw = (dil[i] * (w.shape[2 + i] - 1) for i in range(2))
                tb, lr = (th // 2, th - th // 2), (tw // 2, tw - tw // 2)
        else:
            ph, pw = _pair(pad)
            tb, lr = (ph, ph), (pw, pw)
        x = _nan_pad(x, lr[0], lr[1], tb[0], tb[1])
        return torch.conv2d(x, w, a["bias"], _pair(a["stride"]), 0, dil, a["groups"])

    def _maxpool(self, func, args, kwargs):
        a = _bind(
            args,
            kwargs,
            self.MAXPOOL,
            {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
        )
        x = a["input"]
        k = _pair(a["kernel_size"])
        s = _pair(a["stride"] if a["stride"] not in (None, ()) else a["kernel_size"])
        p, d = _pair(a["padding"]), _pair(a["dilation"])
        extra = [0, 0]
        if a["ceil_mode"]:
            extra = [_ceil_extra(x.shape[2 + i], k[i], s[i], p[i], d[i]) for i in range(2)]
        x = _nan_pad(x, p[1], p[1] + extra[1], p[0], p[0] + extra[0])
        return F.max_pool2d(x, k, s, 0, d, False)

    def _avgpool(self, func, args, kwargs):
        a = _bind(args, kwargs, self.AVGPOOL, {"stride": None, "padding": 0, "ceil_mode": False})
        x = a["input"]
        k = _pair(a["kernel_size"])
        s = _pair(a["stride"] if a["stride"] not in (None, ()) else a["kernel_size"])
        p = _pair(a["padding"])
        extra = [0, 0]
        if a["ceil_mode"]:
            extra = [_ceil_extra(x.shape[2 + i], k[i], s[i], p[i], 1) for i in range(2)]
        x = _nan_pad(x, p[1], p[1] + extra[1], p[0], p[0] + extra[0])
        return F.avg_pool2d(x, k, s, 0)

    def _pad(self, args, kwargs):
        a = _bind(args, kwargs, ("input", "pad", "mode", "value"), {"mode": "constant"})
        x, pad = a["input"], [int(v) for v in a["pad"]]
        if x.ndim != 4 or len(pad) != 4 or min(pad) < 0:
            return F.pad(x, pad, mode=a["mode"], value=a.get("value"))
        # Reflect/replicate padding copies image pixels, but the window still reaches
        # outside the input: geometrically it is padding, so it is tainted like zeros.
        return _nan_pad(x, *pad)


def architecture_key(module: nn.Module) -> str:
    """A digest of the module tree's structure (types and hyper-parameters, not weights)."""
    return hashlib.sha1(repr(module).encode()).hexdigest()[:16]


_MASKS: dict[tuple[str, int, int, tuple[tuple[str, ...], ...]], dict[str, np.ndarray]] = {}


def padding_masks(
    module: nn.Module,
    specs: Sequence[LayerSpec],
    size: int | tuple[int, int],
) -> dict[str, np.ndarray]:
    """Which output positions of each layer see only the input (no padding).

    Parameters
    ----------
    module : torch.nn.Module
        The network (its weights do not matter).
    specs : sequence of LayerSpec
        The layers (``model.resolve(...)``).
    size : int or (int, int)
        Input height and width in pixels.

    Returns
    -------
    dict of str to ndarray of bool
        Per layer, a mask over the output's positions (after the layer's layout is
        applied): shape ``(h, w)`` for maps, ``()`` for vectors (logits, softmax: True
        only when nothing before them saw padding). ``mask.sum()`` is the number of
        positions corrected GAP averages; 0 means the layer has none at this input size.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    key = (architecture_key(module), h, w, tuple(s.key() for s in specs))
    if key in _MASKS:
        return {k: v.copy() for k, v in _MASKS[key].items()}
    param = next(module.parameters(), None)
    device = module_device(module)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(1, 3, h, w, device=device, dtype=dtype)
    try:
        # eval mode on the module's own device; every submodule's mode comes back
        with (
            borrowed(module, device),
            capture(module, specs, _keep, linear=True) as out,
            torch.inference_mode(),
            PaddingTaint(),
        ):
            module(x)
    except RuntimeError as e:
        msg = str(e).splitlines()[0].rstrip(".")
        hint = " Use a larger input size." if "size" in msg.lower() else ""
        raise RcvlabError(
            f"Cannot run {type(module).__name__} on a {h}x{w} input to find padded "
            f"positions: {msg}.{hint}"
        ) from e
    masks: dict[str, np.ndarray] = {}
    for s in specs:
        if s.name not in out:
            raise RcvlabError(f"Layer {s.name} was not reached in the forward pass.")
        y = out[s.name][0]  # one image: (c, h, w) or (c,)
        if y.ndim == 3:
            m = ~torch.isnan(y).any(dim=0)
        else:
            m = ~torch.isnan(y).any()
        masks[s.name] = m.cpu().numpy()
    _MASKS[key] = masks
    return {k: v.copy() for k, v in masks.items()}


def _keep(x: torch.Tensor) -> torch.Tensor:
    return x


def n_positions(masks: dict[str, np.ndarray]) -> dict[str, int]:
    """Number of positions per layer that corrected GAP averages."""
    return {k: int(np.count_nonzero(v)) for k, v in masks.items()}


__all__ = ["PaddingTaint", "architecture_key", "n_positions", "padding_masks"]
