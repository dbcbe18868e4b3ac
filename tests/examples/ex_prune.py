"""A small prune result: a two-layer chain cut after its first layer."""

from __future__ import annotations

import torch.nn as nn

from rcvlab.models import load_model
from rcvlab.prune import prune
from rcvlab.reproduce.steps import PruneResult
from rcvlab.result import provenance


def example() -> PruneResult:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    net = load_model(module, "random", input_size=16, layers=["0", "2"])
    pm = prune(net, at="0")
    return PruneResult(
        model=net.name,
        weights=str(net.weights),
        layer="0",
        params_full=sum(p.numel() for p in module.parameters()),
        params_pruned=sum(p.numel() for p in pm.parameters()),
        describe=pm.describe(),
        meta=provenance(command="example", seed=0),
    )
