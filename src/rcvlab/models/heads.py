"""Single-logit classifier heads: a network's classifier replaced by one output (paper 004).

The finetuned network of paper 004 ends in one sigmoid unit (the authors' code): its logit
``z`` gives ``P(positive) = sigmoid(z)``. :func:`binary_head` builds such a copy of any
:class:`~rcvlab.models.registry.Model`; its layers end in ``logits`` (the single logit) and
``sigmoid`` (``P(positive)``) instead of ``pre-softmax`` and ``softmax``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from rcvlab.errors import RcvlabError, UnknownNameError, did_you_mean
from rcvlab.models.layers import LayerSpec

if TYPE_CHECKING:
    from rcvlab.models.registry import Model

#: The classifier module of each registered architecture (torchvision names).
CLASSIFIERS = {"inception_v3": "fc", "resnet50": "fc", "mobilenet_v2": "classifier.1"}
#: Names of the layer specs of a classifier's output (multi-class and single-logit).
HEAD_LAYERS = ("pre-softmax", "softmax", "logits", "sigmoid")


def classifier_path(module: nn.Module, name: str, head: str | None = None) -> str:
    """Dotted path of the network's final ``nn.Linear`` (the classifier).

    Parameters
    ----------
    module : torch.nn.Module
    name : str
        The model's registry name (``inception_v3``, ``timm:resnet18``, ``custom``).
    head : str, optional
        The path, given by the caller; required for a custom module.

    Raises
    ------
    UnknownNameError
        ``head`` names no submodule.
    RcvlabError
        A custom module without ``head``, or a classifier that is not an ``nn.Linear``.
    """
    if head is None:
        if name in CLASSIFIERS:
            head = CLASSIFIERS[name]
        elif hasattr(module, "get_classifier"):  # timm models, efficientnet_lite0 among them
            clf = module.get_classifier()
            head = next((p for p, m in module.named_modules() if m is clf and p), None)
            if head is None:
                raise RcvlabError(
                    f"Cannot find the classifier of {name} (get_classifier() gives "
                    f"{type(clf).__name__}); pass head='<dotted path of its final nn.Linear>'."
                )
        else:
            raise RcvlabError(
                f"binary_head cannot tell which module of a {name} network is its classifier; "
                "pass head='fc' (the dotted path of its final nn.Linear)."
            )
    paths = [p for p, _ in module.named_modules() if p]
    if head not in paths:
        raise UnknownNameError(
            f"The network has no module '{head}'.{did_you_mean(head, paths)} Pass the dotted "
            "path of its final nn.Linear as head=."
        )
    target = module.get_submodule(head)
    if not isinstance(target, nn.Linear):
        raise RcvlabError(
            f"Module '{head}' is a {type(target).__name__}, not an nn.Linear; pass the dotted "
            "path of the network's final nn.Linear as head=."
        )
    return head


def replace_classifier(module: nn.Module, path: str, seed: int) -> None:
    """Put ``Linear(in_features, 1)`` at ``path`` in ``module`` (in place).

    The new layer's weight is Xavier-uniform from a ``torch.Generator`` seeded with
    ``seed`` (Keras' default for a Dense layer; the global RNG is not used) and its bias
    zero; it takes the old layer's device and dtype.
    """
    old = module.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise RcvlabError(f"Module '{path}' is a {type(old).__name__}, not an nn.Linear.")
    new = nn.Linear(old.in_features, 1, bias=True)
    w = torch.empty(new.weight.shape)
    nn.init.xavier_uniform_(w, generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        new.weight.copy_(w)
        new.bias.zero_()
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.train(old.training)
    parent_path, _, leaf = path.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else module
    setattr(parent, leaf, new)
    if hasattr(module, "num_classes"):  # timm reads it in reset_classifier / pretrained_cfg
        module.num_classes = 1


def binary_specs(specs: Sequence[LayerSpec], path: str, positive: str) -> tuple[LayerSpec, ...]:
    """``specs`` without the multi-class head layers, ending in ``logits`` and ``sigmoid``
    read at the single-logit module ``path``."""
    keep = [s for s in specs if s.name not in HEAD_LAYERS and s.kind != "softmax"]
    return (
        *keep,
        LayerSpec("logits", path, note=f"the single logit (sigmoid: P({positive}))", layout="NC"),
        LayerSpec("sigmoid", path, "sigmoid", note=f"P({positive})", layout="NC"),
    )


def is_binary(model: Model) -> bool:
    """Whether ``model`` has a single-logit head (it has a ``sigmoid`` layer)."""
    return any(s.kind == "sigmoid" for s in model.layer_specs)


def head_module(model: Model) -> str | None:
    """Dotted path of a single-logit model's classifier (None if the model is not binary)."""
    return next((s.module for s in model.layer_specs if s.kind == "sigmoid"), None)


def binary_builder(
    builder: Callable[[str, int], Model], positive: str, path: str
) -> Callable[[str, int], Model]:
    """A twin builder whose models get the same single-logit head (a weights file that
    already holds one keeps its own)."""

    def build(weights: str, seed: int) -> Model:
        m = builder(weights, seed)
        return m if is_binary(m) else binary_head(m, positive=positive, seed=seed, head=path)

    return build


def binary_head(
    model: Model, *, positive: str = "tumour", seed: int = 0, head: str | None = None
) -> Model:
    """A copy of ``model`` whose classifier is one logit for the class ``positive``.

    Parameters
    ----------
    model : Model
        Any model rcvlab loads. The classifier is ``fc`` (InceptionV3, ResNet50),
        ``classifier.1`` (MobileNetV2; its dropout is kept), timm's ``get_classifier()``
        (EfficientNet-Lite0 and ``timm:NAME``), or ``head`` for a custom module.
    positive : str
        The class whose probability ``sigmoid(logit)`` is; ``categories == (positive,)``.
    seed : int
        Seed of the new layer's Xavier-uniform weights (its bias is zero).
    head : str, optional
        Dotted path of the network's final ``nn.Linear``; required for a custom module.

    Returns
    -------
    Model
        A deep copy (``model`` is not changed) in the same mode, with the layers
        ``logits`` and ``sigmoid`` instead of ``pre-softmax`` and ``softmax``.

    Raises
    ------
    RcvlabError
        Not a Model, an empty ``positive``, a custom module without ``head``, a head that
        is not an ``nn.Linear`` (:class:`UnknownNameError` for a path that does not exist).
    """
    # duck-typed: rcvlab.models.registry imports this module (no import cycle)
    if not all(hasattr(model, a) for a in ("module", "layer_specs", "builder", "weights_id")):
        raise RcvlabError(
            f"binary_head takes a Model from rcvlab.load_model, got {type(model).__name__}."
        )
    if not isinstance(positive, str) or not positive:
        raise RcvlabError(f"positive must be a non-empty class name, got {positive!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RcvlabError(f"seed must be an integer, got {seed!r}.")
    path = classifier_path(model.module, model.name, head)
    module = copy.deepcopy(model.module)
    replace_classifier(module, path, seed)
    build = model.builder
    return replace(
        model,
        module=module,
        layer_specs=binary_specs(model.layer_specs, path, positive),
        categories=(positive,),
        weights_id=f"{model.weights_id}+binary:{positive}:{seed}",
        builder=None if build is None else binary_builder(build, positive, path),
    )


__all__ = [
    "CLASSIFIERS",
    "HEAD_LAYERS",
    "binary_builder",
    "binary_head",
    "binary_specs",
    "classifier_path",
    "head_module",
    "is_binary",
    "replace_classifier",
]
