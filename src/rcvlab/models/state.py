"""Running a user's module without changing it: device, memory format and modes come back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

# (owning module, attribute name, is a parameter, device, strides) of every tensor.
_Layout = tuple[nn.Module, str, bool, torch.device, tuple[int, ...]]


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (or buffer); ``cpu`` for a module without."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def _layouts(module: nn.Module) -> list[_Layout]:
    out: list[_Layout] = []
    for m in module.modules():
        for name, p in m._parameters.items():
            if p is not None:
                out.append((m, name, True, p.device, tuple(p.stride())))
        for name, b in m._buffers.items():
            if b is not None:
                out.append((m, name, False, b.device, tuple(b.stride())))
    return out


def _back(t: torch.Tensor, device: torch.device, stride: tuple[int, ...]) -> torch.Tensor:
    """``t`` on ``device`` with exactly the strides it had (values unchanged)."""
    if t.device == device and tuple(t.stride()) == stride:
        return t
    out = torch.empty_strided(t.shape, stride, dtype=t.dtype, device=device)
    out.copy_(t)
    return out


@contextmanager
def borrowed(
    module: nn.Module, device: torch.device | str, *, channels_last: bool = False
) -> Iterator[nn.Module]:
    """Run ``module`` on ``device`` in eval mode for the ``with`` block, then give it back.

    On exit (also on errors and Ctrl-C) every parameter and buffer is back on its own
    device with its own strides (so a contiguous module is contiguous again after a
    channels-last run), and every submodule's ``training`` flag is what it was (a module in
    ``train()`` mode with some BatchNorms frozen in eval stays so). Parameters are the same
    ``nn.Parameter`` objects throughout (``.data`` is replaced, as ``module.to`` does), so an
    optimiser holding them is unaffected. Hooks are not touched: whoever registers them
    removes them (:func:`rcvlab.features.hooks.capture` does).

    Parameters
    ----------
    module : torch.nn.Module
    device : torch.device or str
        Where to run for the duration.
    channels_last : bool
        Convert 4-D weights to channels-last memory format for the duration (faster
        convolutions on CPU); undone on exit.

    Yields
    ------
    torch.nn.Module
        ``module`` itself, on ``device``, in eval mode.
    """
    layouts = _layouts(module)
    modes = [(m, m.training) for m in module.modules()]
    grads = {
        id(p): (p.grad.device, tuple(p.grad.stride()))
        for p in module.parameters()
        if p.grad is not None
    }
    try:
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
        module.eval()
        yield module
    finally:
        for m, flag in modes:
            m.training = flag
        for m, name, is_param, dev, stride in layouts:
            if is_param:
                p = m._parameters[name]
                if p is None:
                    continue
                p.data = _back(p.data, dev, stride)
                if p.grad is not None and id(p) in grads:
                    p.grad.data = _back(p.grad.data, *grads[id(p)])
            elif m._buffers.get(name) is not None:
                m._buffers[name] = _back(m._buffers[name], dev, stride)  # type: ignore[arg-type]


__all__ = ["borrowed", "module_device"]
