import numpy as np
import pytest
import torch
import torch.nn as nn


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class Tiny(nn.Module):
    """1x1 conv with set weights -> ReLU -> GAP -> linear: every feature is hand-computable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]).view(2, 3, 1, 1)
            )
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        h = self.relu(self.conv(x))
        return self.fc(h.mean(dim=(2, 3)))


@pytest.fixture
def tiny():
    return Tiny().eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _check_every_cli_option_is_read(monkeypatch):
    """Every CLI run in the tests fails if a shared option it declares is never read."""
    monkeypatch.setenv("RCVLAB_CHECK_OPTIONS", "1")
