"""A small real NoiseSizeResult: a two-convolution network on 16-32 px noise."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn

from rcvlab.analyses.noise import NoiseSizeResult, noise_size
from rcvlab.models.registry import load_model


def tiny_net() -> nn.Module:
    """Two padded 3x3 convolutions (the second with stride 2) and a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def example() -> NoiseSizeResult:
    model = load_model(tiny_net(), input_size=24, layers=["1", "3", "6"])
    r = noise_size(
        model,
        sizes="16,20,24,28",
        n_train=3,
        n_test=4,
        reps=2,
        seed=1,
        device="cpu",
        command="example",
    )
    # a NaN R² (what a diverged fit gives) must survive the JSON round trip as NaN
    first = r.layers[0]
    nan_layer = dataclasses.replace(first, r2_gap=(math.nan, *first.r2_gap[1:]))
    return dataclasses.replace(r, layers=(nan_layer, *r.layers[1:]))
