"""A small real SparsityResult: a 1x1-convolution network on 3 classes of 12 squares."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.common import frozen_array
from rcvlab.analyses.sparsity import SparsityResult, sparsity
from rcvlab.data.base import ArrayImageSet
from rcvlab.models.registry import load_model


def squares(per_class: int = 12, size: int = 16) -> ArrayImageSet:
    """Dark noise with one bright square per image; the measure is the square's area ratio."""
    rng = np.random.default_rng(0)
    imgs, area, labels = [], [], []
    for ci, c in enumerate(("bird", "car", "kite")):
        for _ in range(per_class):
            s = int(rng.integers(2, size - 1))
            img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
            img[:s, :s] = (200, 60 + 60 * ci, 120)
            imgs.append(img)
            area.append(s * s / size**2)
            labels.append(c)
    return ArrayImageSet(imgs, {"scale_ratio": area}, classes=labels)


def example() -> SparsityResult:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU()).eval()
    model = load_model(net, input_size=16, layers=["1"])
    r = sparsity(
        model,
        squares(),
        layer="1",
        measure="scale_ratio",
        train_class="bird",
        alphas=[0.0, 0.01],
        reps=2,
        device="cpu",
        command="example",
    )
    # R² is NaN when a test side's measure is constant and predicted exactly: such a value
    # must come back from JSON (null) as NaN
    r2 = np.array(r.r2_test)
    r2[1, 0, 0] = np.nan
    return dataclasses.replace(r, r2_test=frozen_array(r2))
