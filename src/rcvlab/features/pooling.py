"""Reducing a layer's output map to one vector per image, inside the forward pass."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rcvlab.errors import UnknownNameError, did_you_mean

Pool = Callable[[torch.Tensor], torch.Tensor]


def gap(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: ``(n, c, h, w) -> (n, c)``; vectors pass through unchanged."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 2:
        return x
    if x.ndim == 3:  # token sequences (n, tokens, c)
        return x.mean(dim=1)
    raise ValueError(f"cannot pool an output of shape {tuple(x.shape)}")


def gmp(x: torch.Tensor) -> torch.Tensor:
    """Global max pooling (not linear: not available for ResNet residual sums)."""
    if x.ndim == 4:
        return x.amax(dim=(2, 3))
    return gap(x)


POOLINGS: dict[str, tuple[Pool, bool]] = {"gap": (gap, True), "max": (gmp, False)}


def get_pooling(name: str) -> tuple[Pool, bool]:
    """Return ``(pool, is_linear)`` for a pooling name."""
    if name not in POOLINGS:
        raise UnknownNameError(
            f"Unknown pooling '{name}'.{did_you_mean(name, POOLINGS)} "
            f"Available: {', '.join(POOLINGS)}."
        )
    return POOLINGS[name]


__all__ = ["POOLINGS", "gap", "get_pooling", "gmp"]
