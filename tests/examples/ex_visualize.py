"""A small real VisualizeResult: two channels of a 3x3 convolution, 16 px, 3 steps."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.visualize import VisualizeResult, visualize
from rcvlab.models.registry import load_model


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()
        with torch.no_grad():
            w = torch.linspace(-1, 1, self.conv.weight.numel()).view_as(self.conv.weight)
            self.conv.weight.copy_(w)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x)).mean(dim=(2, 3))


def example() -> VisualizeResult:
    model = load_model(ConvNet().eval(), input_size=16, layers=["relu"])
    r = visualize(model, "relu", [0, 2], steps=3, size=16, device="cpu", command="example")
    start = np.array(r.objective_start)
    start[1] = np.nan  # a network that produced NaN: JSON null, read back as NaN
    start.setflags(write=False)
    return dataclasses.replace(r, objective_start=start)
