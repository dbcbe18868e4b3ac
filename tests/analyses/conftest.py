"""Fixtures shared by the tests of the analyses of paper 001 (sparsity, alignment,
consistency): planted features, a tiny convolutional model, images of coloured squares, and a
guard that fails a test whose analysis extracts features before checking its options."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest
import torch
import torch.nn as nn

import rcvlab.features.extract as fx
from rcvlab import load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.models.registry import Model


def planted_features(
    n: int = 200, d: int = 100, k: int = 5, noise: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Exactly the first ``k`` of ``d`` features carry ``y``; columns have arbitrary offsets
    and scales so that standardisation matters."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    X = Z * rng.uniform(0.5, 5, d) + rng.uniform(-10, 10, d)
    y = Z[:, :k] @ np.linspace(1, 2, k) + noise * rng.standard_normal(n)
    return X, y


@pytest.fixture
def planted() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """:func:`planted_features`: ``planted(n=200, d=100, k=5, noise=0.5, seed=0) -> (X, y)``."""
    return planted_features


class Blobs(nn.Module):
    """A fixed random 1x1 conv + ReLU: GAP features are linear-ish in a square's area."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 12, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


@pytest.fixture
def blobs_model() -> Model:
    """:class:`Blobs` as an rcvlab model on 24x24 inputs with the one layer ``conv``."""
    return load_model(Blobs().eval(), input_size=24, layers=["conv"])


def corner_squares(colours: Mapping[str, tuple[int, int, int]], per_class: int) -> ArrayImageSet:
    """``per_class`` noisy 24x24 images per class, each with a square of the class's colour
    in its top-left corner; the measure ``scale_ratio`` is the square's share of the image."""
    rng = np.random.default_rng(0)
    imgs, area, labels = [], [], []
    for c, colour in colours.items():
        for _ in range(per_class):
            s = int(rng.integers(3, 22))
            img = rng.integers(0, 40, (24, 24, 3)).astype(np.uint8)
            img[:s, :s] = colour
            imgs.append(img)
            area.append(s * s / 576)
            labels.append(c)
    return ArrayImageSet(imgs, {"scale_ratio": area}, classes=labels)


@pytest.fixture
def bird_data() -> ArrayImageSet:
    """30 images of one class, ``bird``."""
    return corner_squares({"bird": (200, 80, 120)}, 30)


@pytest.fixture
def two_classes() -> ArrayImageSet:
    """20 images of ``bird`` then 20 of ``car`` (the birds are the first 20 of
    :func:`bird_data`)."""
    return corner_squares({"bird": (200, 80, 120), "car": (90, 200, 40)}, 20)


@pytest.fixture
def no_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if features are extracted (the options must be refused first)."""

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("extract_features ran before the options were checked")

    monkeypatch.setattr(fx, "extract_features", never)
