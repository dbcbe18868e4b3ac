"""A small real ResizeSweepResult: a four-class toy classifier on three flat images."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.resize import ResizeSweepResult, resize_sweep
from rcvlab.data.base import ArrayImageSet
from rcvlab.models.registry import load_model


class SideAndRed(nn.Module):
    """Logit 0 grows with the input side, logit 1 with the mean red; 2 and 3 are constant."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        side = torch.full((b,), x.shape[-1] / 16.0, device=x.device)
        red = 3.0 * x[:, 0].mean(dim=(1, 2))
        rest = torch.tensor([0.5, -1.0], device=x.device).repeat(b, 1)
        return torch.column_stack([side, red, rest]) + self.dummy


def example() -> ResizeSweepResult:
    model = load_model(SideAndRed(), input_size=24, mean=(0, 0, 0), std=(1, 1, 1))
    images = [np.full((20, 22, 3), (r, 40, 90), dtype=np.uint8) for r in (0, 128, 255)]
    data = ArrayImageSet(images, {"class_index": [0, 1, 1]})
    r = resize_sweep(
        model,
        data,
        sizes="16,24,32",
        interps="nearest,bilinear",
        batch_size=2,
        device="cpu",
        command="example",
    )
    # a NaN probability must survive the JSON round trip as NaN
    p = r.p.copy()
    p[1, 2, 0] = np.nan
    return dataclasses.replace(r, p=p)
