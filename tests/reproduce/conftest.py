"""Small configs for the reproduce tests (helper A's part)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """\
name: tiny
paper: test
title: three small steps
seed: 0
inputs:
  scale:
    kind: embedded
    data: scaleset
    n_per_class: 10
    options: {size: 64}
  histology:
    kind: histology
    required: false
    help: Janowczyk-style folder
networks:
  net:
    model: mobilenet_v2
    weights: random
    input_size: 64
steps:
  - id: profile
    kind: profile
    network: net
    data: scale
    layers: [features.4, features.10]
    reps: 2
    regressor: ridge
    baselines: [shuffled]
  - id: prune
    kind: prune
    network: net
    at: step:profile
  - id: sparsity
    kind: sparsity
    network: net
    data: scale
    layer: features.10
    train_class: cat
    alphas: [0.0, 0.01]
    reps: 2
"""


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    """A config file of three steps (profile, prune, sparsity) on 40 embedded images."""
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p
