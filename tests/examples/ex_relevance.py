"""A small real RelevanceResult: a 1x1-convolution network whose logit 1 rises with red."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.relevance import RelevanceResult, relevance
from rcvlab.data.base import ArrayImageSet
from rcvlab.models.registry import load_model


class RedNet(nn.Module):
    """Channel 0 of ``conv`` is twice the red input; logit 1 = mean softplus of it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 2.0)
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.softplus(self.conv(x)).mean(dim=(2, 3)))


def example() -> RelevanceResult:
    rng = np.random.default_rng(0)
    images, red = [], []
    for _ in range(12):
        img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img[..., 0] = rng.integers(20, 235)
        images.append(img)
        red.append(float(img[..., 0].mean()))
    red_with_gap = np.array(red)
    red_with_gap[3] = np.nan  # an image without a value is left out of that measure
    data = ArrayImageSet(images, {"red": np.array(red), "red_partial": red_with_gap})
    model = load_model(RedNet().eval(), input_size=8, layers=["conv", "fc"])
    # one repetition: the R² standard deviation and interval are NaN
    return relevance(
        model,
        data,
        layer="conv",
        target_class=1,
        measures=["red", "red_partial"],
        reps=1,
        min_images=8,
        device="cpu",
        command="example",
    )
