"""A small real CamResult: a planted red-blob detector, nuclei masks given, one blank image."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.cam import CamResult, cam
from rcvlab.models.registry import load_model


def planted(kernel: int = 1, red_bias: float = -0.3) -> nn.Module:
    """Channel 0 = ReLU(mean over a kernel x kernel window of (r - g - b) + red_bias) (red
    blobs; a wider kernel and a higher bias spread it around them), channel 1 = green; logit 1
    reads channel 0 through GAP, logit 0 channel 1."""
    conv = nn.Conv2d(3, 2, kernel, padding=kernel // 2)
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1) / kernel**2
        conv.weight[1, :, kernel // 2, kernel // 2] = torch.tensor([-1.0, 1.0, -1.0])
        conv.bias.copy_(torch.tensor([red_bias, -0.3]))
        fc.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        fc.bias.zero_()
    return nn.Sequential(
        conv, nn.ReLU(), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc
    )


def blob_images(n: int = 6, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey noisy images with one red square each (image 0 has none) and its mask."""
    rng = np.random.default_rng(seed)
    images = (rng.normal(0.5, 0.04, (n, size, size, 3)).clip(0, 1) * 255).astype(np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(1, n):
        h, w = rng.integers(4, 12, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        images[i, y : y + h, x : x + w] = (230, 20, 20)
        masks[i, y : y + h, x : x + w] = True
    return images, masks


def example() -> CamResult:
    images, masks = blob_images()
    model = load_model(planted().eval(), input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    # image 0 has no red: an all-zero map, so its CAM mass on nuclei is NaN
    return cam(
        model,
        images,
        layer="2",
        method="gradcam,gradcam++",
        target=1,
        masks=masks,
        device="cpu",
        command="example",
    )
