"""A small finetune result: a one-conv network, bright vs dark discs, two epochs.

The network learns the task in these two epochs; one training AUC is then set to NaN
(the value an AUC takes where it is undefined) so that the JSON round trip of a NaN is
checked too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn

from rcvlab.analyses.finetune import FinetuneResult, finetune
from rcvlab.data.base import ArrayImageSet
from rcvlab.models import binary_head, load_model


def example() -> FinetuneResult:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    images, classes, groups = [], [], []
    for i in range(24):
        img = rng.integers(90, 140, (24, 24, 3)).astype(np.uint8)
        img[(yy - 12) ** 2 + (xx - 12) ** 2 <= 25] = 230 if i % 2 else 25
        images.append(img)
        classes.append("tumour" if i % 2 else "normal")
        groups.append(f"region{i % 6}")
    data = ArrayImageSet(images, classes=classes, groups=groups, source="discs")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    model = binary_head(load_model(net.eval(), input_size=24, layers=["0"]), head="4")
    r = finetune(model, data, epochs=2, lr=0.05, batch_size=8, device="cpu", command="example")
    auc = np.array(r.history["train_auc"])
    auc[0] = np.nan
    return replace(r, history={**r.history, "train_auc": auc})
