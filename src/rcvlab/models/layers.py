"""Probe-able layers: named points of a network whose output rcvlab pools into a vector.

A :class:`LayerSpec` says *where* a layer's output is read:

``output``
    the forward output of the module at ``module`` (a dotted path found with
    ``get_submodule``); spatial maps are pooled, vectors used as they are.
``residual_sum``
    the sum of a torchvision ResNet bottleneck **before** its last ReLU (Keras' ``add_k``).
    It is read as ``bn3`` output plus the identity branch (``downsample`` output, or the
    block input), both pooled: exact for linear pooling (GAP, corrected GAP), which is what
    the probe uses, and it leaves the network untouched.
``softmax``
    the softmax of the output of ``module`` (the logits).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch.nn as nn

from rcvlab.errors import UnknownNameError, did_you_mean

Kind = Literal["output", "residual_sum", "softmax"]


@dataclass(frozen=True)
class LayerSpec:
    """Where a probe-able layer is read in the network.

    Attributes
    ----------
    name : str
        The layer's rcvlab name (``mixed8``, ``add15``, ``block4a``, ``features.3`` ...).
    module : str
        Dotted module path in the PyTorch model.
    kind : {"output", "residual_sum", "softmax"}
        How the value is read (see the module docstring).
    note : str
        What the name means in the source framework (shown by ``rcvlab layers``).
    """

    name: str
    module: str
    kind: Kind = "output"
    note: str = ""


def inception_v3_layers() -> list[LayerSpec]:
    """The papers' Keras names for torchvision's InceptionV3 (METHOD.md §2)."""
    tv = [
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
        "Mixed_7a",
        "Mixed_7b",
        "Mixed_7c",
    ]
    specs = [
        LayerSpec(f"mixed{i}", m, note=f"Keras mixed{i} = torchvision {m}")
        for i, m in enumerate(tv)
    ]
    return [*specs, *_head("fc")]


def resnet50_layers() -> list[LayerSpec]:
    """``add1 … add16``: the 16 bottleneck residual sums before the block's last ReLU."""
    specs = []
    k = 0
    for stage, n_blocks in zip(("layer1", "layer2", "layer3", "layer4"), (3, 4, 6, 3), strict=True):
        for b in range(n_blocks):
            k += 1
            specs.append(
                LayerSpec(
                    f"add{k}",
                    f"{stage}.{b}",
                    "residual_sum",
                    note=f"Keras add_{k}: residual sum of {stage}.{b} before its ReLU "
                    f"(the block's output after ReLU is layer '{stage}.{b}')",
                )
            )
    return [*specs, *_head("fc")]


def efficientnet_layers(stage_sizes: Iterable[int]) -> list[LayerSpec]:
    """Keras-style EfficientNet names for timm's layout: ``stem``, ``block1a`` …, ``head``."""
    specs = [LayerSpec("stem", "bn1", note="stem conv + BN + ReLU6")]
    for s, n in enumerate(stage_sizes):
        for j in range(n):
            specs.append(LayerSpec(f"block{s + 1}{chr(ord('a') + j)}", f"blocks.{s}.{j}"))
    specs.append(LayerSpec("head", "bn2", note="1x1 head conv + BN + ReLU6"))
    return [*specs, *_head("classifier")]


def mobilenet_v2_layers() -> list[LayerSpec]:
    """torchvision MobileNetV2: ``features.0`` (stem) … ``features.18`` (head conv)."""
    specs = [LayerSpec(f"features.{i}", f"features.{i}") for i in range(19)]
    return [*specs, *_head("classifier")]


def _head(logits_module: str) -> list[LayerSpec]:
    return [
        LayerSpec("pre-softmax", logits_module, note="logits"),
        LayerSpec("softmax", logits_module, "softmax", note="class probabilities"),
    ]


def discover_layers(module: nn.Module) -> list[LayerSpec]:
    """Guess a network's block-level layers (any timm/torchvision CNN).

    Takes the blocks of the first of ``blocks``, ``stages``, ``layers``, ``features`` (or
    torchvision ResNet's ``layer1…4``) that exists, descending one level into stages that
    are themselves sequences of blocks, then the classifier output and its softmax.
    """
    specs: list[LayerSpec] = []
    children = dict(module.named_children())
    containers = [c for c in ("blocks", "stages", "layers", "features") if c in children]
    if containers:
        roots = [containers[0]]
    else:
        roots = [c for c in ("layer1", "layer2", "layer3", "layer4") if c in children]
    for root in roots:
        for name, child in module.get_submodule(root).named_children():
            path = f"{root}.{name}"
            sub = list(child.named_children())
            is_stage = isinstance(child, nn.Sequential | nn.ModuleList) and len(sub) > 1
            if is_stage and any(isinstance(c, nn.Sequential) or _has_conv(c) for _, c in sub):
                specs.extend(LayerSpec(f"{path}.{n}", f"{path}.{n}") for n, _ in sub)
            else:
                specs.append(LayerSpec(path, path))
    for head in ("classifier", "fc", "head", "last_linear"):
        if head in children and any(p.ndim > 0 for p in children[head].parameters()):
            specs.extend(_head(head))
            break
    return specs


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, nn.Conv2d) for x in m.modules())


def resolve_layers(
    requested: Iterable[str] | str | None,
    specs: list[LayerSpec],
    module: nn.Module,
    model_name: str,
) -> list[LayerSpec]:
    """Turn user layer names into specs, in the order given.

    Accepts rcvlab names, ``"all"``/``None`` (every named layer) and dotted module paths
    (read as the module's output). Unknown names raise :class:`UnknownNameError`.
    """
    if requested is None or requested == "all":
        return list(specs)
    if isinstance(requested, str):
        requested = [x.strip() for x in requested.split(",") if x.strip()]
    by_name = {s.name: s for s in specs}
    modules = dict(module.named_modules())
    out = []
    for name in requested:
        if name in by_name:
            out.append(by_name[name])
        elif name and name in modules:
            out.append(LayerSpec(name, name, note="module output"))
        else:
            hint = did_you_mean(name, list(by_name) + [m for m in modules if m])
            raise UnknownNameError(
                f"Unknown layer '{name}' for {model_name}.{hint} "
                f"See `rcvlab layers {model_name}` (dotted module paths work too)."
            )
    if not out:
        raise UnknownNameError(f"No layers requested for {model_name}.")
    if len({s.name for s in out}) != len(out):
        raise UnknownNameError(f"Layer list for {model_name} has duplicates: {list(requested)}.")
    return out


__all__ = [
    "LayerSpec",
    "discover_layers",
    "efficientnet_layers",
    "inception_v3_layers",
    "mobilenet_v2_layers",
    "resnet50_layers",
    "resolve_layers",
]
