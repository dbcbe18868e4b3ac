"""A plain ``nn.Module`` comes back as it was given after every rcvlab call that runs it.

The module is given on the CPU, in ``train()`` mode with one BatchNorm frozen in eval mode,
contiguous, with one forward hook of the user's. After each call its parameters and
buffers are on the same device with the same strides and values (BatchNorm running
statistics included: a training-mode pass would have changed them), every submodule has
its own ``training`` flag back, and exactly the user's hooks are registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab import DataError, extract_features, layer_dims, load_model, prune
from rcvlab.analyses.noise import noise_size
from rcvlab.analyses.relevance import relevance
from rcvlab.analyses.resize import class_probabilities, min_input_size, resize_sweep
from rcvlab.data.base import ArrayImageSet
from rcvlab.features.receptive import padding_masks
from rcvlab.models.layers import infer_layouts
from rcvlab.probe.sensitivity import blank_pass, gradient_pass

SIZE = 16
LAYER = "features.2"


class Net(nn.Module):
    """conv-BN-ReLU x 2, global average pooling, linear (5 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
        )
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def user_net() -> tuple[Net, list[int]]:
    """The module as a user holds it, and the calls counted by the user's hook."""
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # running statistics that are not the defaults
        for bn in (net.features[1], net.features[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(7)
    net.train()
    net.features[4].eval()  # a frozen BatchNorm inside a training network
    calls: list[int] = []
    net.features[0].register_forward_hook(lambda _m, _i, _o: calls.append(1))
    return net, calls


def snapshot(net: nn.Module) -> dict[str, Any]:
    hooks = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
    )
    return {
        "tensors": {
            name: (t.device, t.dtype, tuple(t.stride()), t.detach().clone())
            for name, t in [*net.named_parameters(), *net.named_buffers()]
        },
        "requires_grad": {n: p.requires_grad for n, p in net.named_parameters()},
        "training": {n: m.training for n, m in net.named_modules()},
        "hooks": {n: {h: dict(getattr(m, h, {})) for h in hooks} for n, m in net.named_modules()},
        "modules": {n: id(m) for n, m in net.named_modules()},
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["modules"] == before["modules"]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, (dev, dtype, stride, value) in before["tensors"].items():
        dev2, dtype2, stride2, value2 = after["tensors"][name]
        assert (dev2, dtype2, stride2) == (dev, dtype, stride), name
        assert torch.equal(value2, value), name


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def model_of(net: nn.Module) -> Any:
    return load_model(net, input_size=SIZE, layers=[LAYER, "features.5"])


def _extract(net: nn.Module) -> None:
    x = torch.randn(4, 3, SIZE, SIZE)
    extract_features(net, x, layers=[LAYER], device="cpu")
    extract_features(net, images(), layers=[LAYER], input_size=SIZE, device="cpu")


def _extract_loaded(net: nn.Module) -> None:
    extract_features(model_of(net), images(), device="cpu", channels_last=True)


def _corrected_gap(net: nn.Module) -> None:
    model = model_of(net)
    padding_masks(net, model.resolve(None), SIZE + 1)  # a size no other test caches
    extract_features(model, images(), pooling="corrected-gap", device="cpu")


def _layer_dims(net: nn.Module) -> None:
    assert layer_dims(model_of(net)) == {LAYER: 4, "features.5": 6}


def _infer_layouts(net: nn.Module) -> None:
    assert infer_layouts(net, SIZE)[LAYER] == ("NCHW", 0)


def labelled(n: int = 6) -> ArrayImageSet:
    rng = np.random.default_rng(1)
    return ArrayImageSet(
        images(n),
        {
            "class_index": np.arange(n, dtype=np.float64) % 5,
            "scale": rng.uniform(1, 2, n),
        },
    )


def _resize_sweep(net: nn.Module) -> None:
    resize_sweep(net, labelled(), sizes=[16, 24], interps=["bilinear"], device="cpu")


def _resize_helpers(net: nn.Module) -> None:
    model = load_model(net, input_size=SIZE)
    assert min_input_size(model, [8, 24], device="cpu", channels_last=True) == 8
    pil = [labelled().load(i) for i in range(2)]
    class_probabilities(model, pil, 16, "bilinear", device="cpu", channels_last=True)


def _noise_size(net: nn.Module) -> None:
    noise_size(model_of(net), sizes=[16, 20, 24], n_train=2, n_test=2, reps=1, layers=[LAYER])


def _prune_copy(net: nn.Module) -> None:
    pm = prune(model_of(net), LAYER)
    assert not any(p is q for p in pm.parameters() for q in net.parameters())


def _prune_shared(net: nn.Module) -> None:
    pm = prune(model_of(net), LAYER, copy=False)
    # the pruned network is a view of the module: the same BatchNorm, with its own flag
    assert pm.backbone.features[1] is net.features[1]
    assert pm.training and pm.backbone.training


def _gradient_pass(net: nn.Module) -> None:
    x = torch.randn(3, 3, SIZE, SIZE)
    p = gradient_pass(net, x, LAYER, 1, device="cpu")
    assert p.gradients.shape == (3, 4) and np.isfinite(p.gradients).all()


def _blank_pass(net: nn.Module) -> None:
    assert blank_pass(model_of(net), LAYER) == ((1, 4, SIZE, SIZE), 5)


def _relevance(net: nn.Module) -> None:
    relevance(
        model_of(net),
        labelled(12),
        layer=LAYER,
        target_class=1,
        measures=["scale"],
        reps=2,
        min_images=4,
        device="cpu",
    )


CALLS: dict[str, Callable[[nn.Module], None]] = {
    "extract_features": _extract,
    "extract_features-loaded-channels-last": _extract_loaded,
    "padding_masks-corrected-gap": _corrected_gap,
    "layer_dims": _layer_dims,
    "infer_layouts": _infer_layouts,
    "resize_sweep": _resize_sweep,
    "min_input_size-class_probabilities": _resize_helpers,
    "noise_size": _noise_size,
    "prune": _prune_copy,
    "prune-shared": _prune_shared,
    "gradient_pass": _gradient_pass,
    "blank_pass": _blank_pass,
    "relevance": _relevance,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_module_comes_back_as_given(name):
    net, calls = user_net()
    before = snapshot(net)
    CALLS[name](net)
    assert calls, "the call did not run the module"
    assert_same(before, snapshot(net))
    assert net.features[0].weight.is_contiguous()


def test_module_comes_back_after_an_error():
    net, calls = user_net()
    before = snapshot(net)
    data = labelled()
    data.measures["class_index"][0] = 7  # beyond the 5 outputs: found after a forward pass
    with pytest.raises(DataError, match="array\\[0\\]"):
        resize_sweep(net, data, sizes=[16, 24], interps=["bilinear"], device="cpu")
    assert calls
    assert_same(before, snapshot(net))
