"""A small transfer result: a two-layer chain on 24 disc patches, one seed (NaN Wilcoxon)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.transfer import TransferResult, transfer
from rcvlab.data.base import ArrayImageSet
from rcvlab.models import load_model


class _Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dark = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.dark.weight.copy_(
                torch.tensor([[-1.0, -1.0, -1.0], [-2.0, 0.0, -1.0]])[..., None, None]
            )
            self.dark.bias.copy_(torch.tensor([1.5, 1.4]))
        self.relu = nn.ReLU()
        self.squash = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.squash(self.relu(self.dark(x))).flatten(1)


def example() -> TransferResult:
    rng = np.random.default_rng(0)
    images, areas, classes, groups = [], [], [], []
    for s in range(6):
        for mag, r in (("5X", 3), ("10X", 6)):
            for _ in range(2):
                img = rng.integers(200, 240, (16, 16, 3)).astype(np.uint8)
                yy, xx = np.mgrid[:16, :16]
                inside = (yy - 8) ** 2 + (xx - 8) ** 2 <= r**2
                img[inside] = (60, 30, 90)
                images.append(img)
                areas.append(float(inside.sum()))
                classes.append(mag)
                groups.append(f"slide{s}")
    data = ArrayImageSet(images, {"nuclei_area": areas}, classes=classes, groups=groups)
    model = load_model(_Chain().eval(), input_size=16, layers=["dark", "squash"])
    return transfer(
        model, data, ["pretrained", "pruned:dark"], seeds=1, epochs=2, lr=1e-2, command="example"
    )
