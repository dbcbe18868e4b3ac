"""Pruning a network after a layer: keep the backbone up to it, then global average pooling.

This is the transfer set-up of Graziani et al. (MAKE 2021, §3.3, §4.4): the layer where a
concept is most linearly encoded becomes the network's last layer, and a new head is trained
on its globally averaged features. :func:`prune` builds a *new* module from the kept
submodules, in the network's forward order; nothing after the layer is part of it, so it is
neither executed nor counted.

How the forward order is known
------------------------------
For the registered architectures it is written down from their ``forward`` methods:
torchvision InceptionV3 (``transform_input`` re-mapping, then ``Conv2d_1a_3x3 …
maxpool1 … maxpool2, Mixed_5b … Mixed_7c``), torchvision ResNet (``conv1, bn1, relu,
maxpool, layer1 … layer4``), torchvision MobileNetV2 (``features``) and timm EfficientNet
(``conv_stem, bn1, blocks, conv_head, bn2``). A plain ``nn.Sequential`` is its own chain.
For any other network the chain is guessed (top-level children in registration order, up to
the first pooling/classifier child such as ``global_pool``, ``avgpool``, ``head``, ``fc``)
and then checked on a random input against the layer's features read by hooks in the full
network; a network whose forward is not such a chain is refused.

Inside the chain, containers whose forward is ``nn.Sequential``'s (``layer3``, ``features``,
timm's ``blocks`` and its stages) are cut between their children; any other module (an
Inception block, a residual block) is kept or cut as a whole.
"""

from __future__ import annotations

import copy as _copy
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from rcvlab.errors import RcvlabError, WeightsError
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import gap
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model, Preprocessing, load_model
from rcvlab.models.state import borrowed, module_device
from rcvlab.runio import write_torch

_FORMAT = "rcvlab-pruned-model"
_FORMAT_VERSION = 1

# Top-level children that come after a network's last feature map (pooling, dropout,
# classifier); the first one met ends a guessed backbone chain.
_HEAD_NAMES = frozenset(
    {
        "avgpool",
        "global_pool",
        "pool",
        "dropout",
        "head_drop",
        "flatten",
        "pre_logits",
        "fc_norm",
        "head",
        "fc",
        "classifier",
        "last_linear",
    }
)


class PruneError(RcvlabError):
    """A layer at which a network cannot be pruned (inside a branch, after the pooling...)."""


@dataclass(frozen=True)
class _Step:
    """One element of a backbone's forward chain."""

    name: str
    module: nn.Module
    path: str | None  # dotted path in the source network; None for an added parameter-free op


@dataclass(frozen=True)
class _Plan:
    """A network's backbone as a forward chain, and what lies outside it."""

    steps: tuple[_Step, ...]
    head: tuple[str, ...]  # top-level children after the backbone
    side: tuple[str, ...]  # top-level children off the main path (auxiliary classifiers)
    known: bool  # written from the architecture's forward (else guessed, to be checked)


class InceptionInputTransform(nn.Module):
    """torchvision InceptionV3's ``transform_input``: ImageNet-normalised input to [-1, 1].

    The same arithmetic, in the same order, as ``torchvision.models.Inception3._transform_input``
    (the Google weights expect inputs normalised with mean = std = 0.5).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((x_ch0, x_ch1, x_ch2), 1)


class ResidualSum(nn.Module):
    """A torchvision ResNet block that stops at its residual sum, before the last ReLU.

    Keras' ``add_k`` layers (rcvlab's ``add1 … add16``). The block's submodules are registered
    under their own names, so the state-dict keys are the block's.

    Parameters
    ----------
    block : torchvision.models.resnet.Bottleneck or BasicBlock
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock, Bottleneck

        if not isinstance(block, Bottleneck | BasicBlock):
            raise PruneError(
                f"A residual sum can only be cut from a torchvision ResNet block, "
                f"not from {type(block).__name__}."
            )
        self.bottleneck = isinstance(block, Bottleneck)
        for name, child in block.named_children():
            self.add_module(name, child)
        if "downsample" not in self._modules:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(self.relu(out)))
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class PrunedModel(nn.Module):
    """A network cut after one layer: ``(n, 3, H, W)`` preprocessed images -> ``(n, d)``.

    The output is the global average of the layer's feature map (the layer's rcvlab
    features). Build it with :func:`prune`.

    Attributes
    ----------
    backbone : torch.nn.Sequential
        The kept modules in forward order; nested containers keep the source network's
        child names, so ``backbone.state_dict()`` keys are the source's keys.
    model_name : str
        Registry name of the source network (``inception_v3``, ``timm:resnet18``, ``custom``).
    layer : str
        The layer it was pruned at (``mixed8``, ``add15``, ``layer3.2`` ...).
    layer_module : str
        That layer's dotted module path in the source network (``Mixed_7a``).
    kind : str
        How the layer is read (``output`` or ``residual_sum``, see :class:`LayerSpec`).
    kept_modules : list of str
        Dotted paths, in the source network, of the modules kept whole.
    full_n_params : int
        Parameters of the source network's whole backbone (classifier and auxiliary heads
        excluded; BatchNorm running statistics are buffers, not parameters).
    out_dim : int
        Feature dimension ``d``.
    preprocessing : Preprocessing
        How images become the input tensors (a copy of the source model's).
    weights, weights_id : str
        The source model's weights and their identifier.
    seed : int
        The source model's seed (for the architecture's random initialisation).
    """

    def __init__(
        self,
        backbone: nn.Sequential,
        *,
        model_name: str,
        layer: str,
        layer_module: str,
        kind: str,
        kept_modules: Sequence[str],
        full_n_params: int,
        out_dim: int,
        preprocessing: Preprocessing,
        weights: str,
        weights_id: str,
        seed: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.model_name = model_name
        self.layer = layer
        self.layer_module = layer_module
        self.kind = kind
        self.kept_modules = list(kept_modules)
        self.full_n_params = int(full_n_params)
        self.out_dim = int(out_dim)
        self.preprocessing = preprocessing
        self.weights = weights
        self.weights_id = weights_id
        self.seed = int(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the layer's GAP features, ``(n, out_dim)``."""
        return gap(self.backbone(x))

    @property
    def n_params(self) -> int:
        """Parameters of the pruned backbone."""
        return _count(self.backbone)

    @property
    def reduction(self) -> float:
        """Fraction of the full backbone's parameters removed, ``1 - n_params / full_n_params``."""
        return 1.0 - self.n_params / self.full_n_params if self.full_n_params else 0.0

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (model, layer, parameter counts, preprocessing)."""
        return {
            "model": self.model_name,
            "weights": self.weights,
            "weights_id": self.weights_id,
            "layer": self.layer,
            "layer_module": self.layer_module,
            "kind": self.kind,
            "kept_modules": list(self.kept_modules),
            "n_params": self.n_params,
            "full_n_params": self.full_n_params,
            "reduction": self.reduction,
            "out_dim": self.out_dim,
            "preprocessing": self.preprocessing.key(),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the pruned network (metadata + backbone state dict) to ``path``.

        The file holds tensors and plain values only (it loads with ``weights_only=True``);
        :meth:`load` rebuilds the architecture from ``model_name``. A network pruned from a
        custom module cannot be rebuilt by name: save it with ``torch.save(pruned, path)``
        and read it with ``torch.load(path, weights_only=False)``.
        """
        if self.model_name == "custom":
            raise RcvlabError(
                "A network pruned from a custom module cannot be rebuilt by name; use "
                "torch.save(pruned, path) and torch.load(path, weights_only=False) instead."
            )
        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            **{k: v for k, v in self.describe().items() if k != "reduction"},
            "seed": self.seed,
            "state_dict": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
        }
        write_torch(path, payload)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> PrunedModel:
        """Read a network written by :meth:`save` (in eval mode, on ``map_location``)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise RcvlabError(f"No pruned network at '{path}'.")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # unpickling errors have no common base class
            raise RcvlabError(f"'{path}' is not a pruned network saved by rcvlab: {e}") from e
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise RcvlabError(f"'{path}' is not a pruned network saved by rcvlab.")
        if payload.get("format_version") != _FORMAT_VERSION:
            raise RcvlabError(
                f"'{path}' has pruned-network format version {payload.get('format_version')}; "
                f"this rcvlab reads version {_FORMAT_VERSION}."
            )
        p = payload["preprocessing"]
        pre = Preprocessing(
            int(p["input_size"]),
            tuple(p["mean"]),
            tuple(p["std"]),
            p["interpolation"],
            float(p["crop_pct"]),
        )
        source = load_model(
            payload["model"], "random", seed=payload["seed"], input_size=pre.input_size
        )
        source = replace(source, preprocessing=pre)
        pm = prune(source, payload["layer"], copy=False, verify=False)
        if pm.kept_modules != list(payload["kept_modules"]):
            raise WeightsError(
                f"'{path}' was pruned from a different {payload['model']} architecture "
                f"(kept {payload['kept_modules']}, now {pm.kept_modules})."
            )
        try:
            pm.backbone.load_state_dict(payload["state_dict"])
        except RuntimeError as e:
            raise WeightsError(f"The weights in '{path}' do not fit {payload['model']}: {e}") from e
        pm.weights = payload["weights"]
        pm.weights_id = payload["weights_id"]
        return pm.to(map_location).eval()


def check_prune_layer(model: Model, layer: str) -> LayerSpec:
    """Raise the error :func:`prune` raises for ``layer``; return the layer's spec otherwise.

    The one check of where a network can be cut: :func:`prune` runs it first, and
    :func:`rcvlab.analyses.transfer.transfer` runs it on every ``pruned:LAYER`` variant before
    any work, so both accept and refuse the same layers with the same message. For the
    registered architectures and ``nn.Sequential`` it reads the module tree only; a network
    whose forward order rcvlab guesses is, in addition, run once on a random input and
    compared with the layer's features read by hooks.

    Parameters
    ----------
    model : Model
        From :func:`rcvlab.load_model`.
    layer : str
        An rcvlab layer name or a dotted module path.

    Returns
    -------
    LayerSpec
        The resolved layer.

    Raises
    ------
    RcvlabError
        ``layer`` is not a string.
    UnknownNameError
        ``layer`` is not a layer or module of the network.
    PruneError
        ``layer`` is off the main path, after the pooling, or the network's forward is not
        a chain rcvlab can cut (see :func:`prune`).
    """
    if not isinstance(layer, str):
        raise RcvlabError(f"Prune at one layer name (a string), not {type(layer).__name__}.")
    (spec,) = model.resolve([layer])
    plan = _plan(model)
    backbone, kept = _cut(model, plan, spec)
    if not plan.known:
        _run_cut(model, spec, backbone, kept, verify=True)
    return spec


def prune(model: Model, at: str, *, copy: bool = True, verify: bool = True) -> PrunedModel:
    """Cut a network after layer ``at`` and add global average pooling.

    Parameters
    ----------
    model : Model
        From :func:`rcvlab.load_model`.
    at : str
        A layer on the network's main path: an rcvlab name (``mixed8``, ``add15``,
        ``block4a``, ``features.14``) or a dotted module path (``layer3.2``, ``Mixed_7a``).
        For ``add_k`` the pruned network ends at the block's residual sum, before its ReLU.
    copy : bool
        Deep-copy the kept modules (default), so that training the pruned network leaves
        ``model`` untouched. ``False`` shares them with ``model.module``: the pruned network
        is then a view of the source, and what is done to it later (``.train()``, ``.to()``,
        an optimiser step) is done to the source's kept modules too. Either way ``prune``
        itself leaves ``model.module`` as it was given (device, memory format, every
        submodule's ``training`` flag, no hooks).
    verify : bool
        Check on one random input that the pruned network reproduces the layer's features
        as read by hooks in the full network. Networks whose forward order rcvlab guessed
        (not a registered architecture or an ``nn.Sequential``) are always checked.

    Returns
    -------
    PrunedModel
        On the source module's device. Kept modules have their own ``training`` flags
        (copied or shared); the modules :func:`prune` adds (the containers, the residual
        sum) take the source module's top-level flag.

    Raises
    ------
    UnknownNameError
        ``at`` is not a layer or module of the network.
    PruneError
        ``at`` is not on the main path (inside an Inception branch or a residual block, an
        auxiliary classifier) or after the pooling (``pre-softmax``, ``softmax``), or the
        network's forward is not a chain rcvlab can cut.
    """
    spec = check_prune_layer(model, at)
    plan = _plan(model)
    backbone, kept = _cut(model, plan, spec)
    source = {id(m) for m in model.module.modules()}
    for m in backbone.modules():
        if id(m) not in source:  # a container added by the cut: the source's mode
            m.training = model.module.training
    if copy:
        backbone = _copy.deepcopy(backbone)
    pm = PrunedModel(
        backbone,
        model_name=model.name,
        layer=spec.name,
        layer_module=spec.module,
        kind=spec.kind,
        kept_modules=kept,
        full_n_params=_count_steps(plan.steps),
        out_dim=0,
        preprocessing=replace(model.preprocessing),
        weights=model.weights,
        weights_id=model.weights_id,
        seed=model.seed,
    )
    pm.training = model.module.training
    # a guessed chain was already checked against the forward by check_prune_layer
    y = _run_cut(model, spec, pm.backbone, kept, verify=verify and plan.known, pruned=pm)
    pm.out_dim = int(y.shape[1])
    return pm


def _run_cut(
    model: Model,
    spec: LayerSpec,
    backbone: nn.Module,
    kept: Sequence[str],
    *,
    verify: bool,
    pruned: nn.Module | None = None,
) -> torch.Tensor:
    """GAP of ``backbone`` on one random input; with ``verify``, compared with the hooks'."""
    module = model.module
    device = module_device(module)
    size = model.input_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    # Eval mode for the check (a training-mode pass would update BatchNorm statistics),
    # borrowed: every submodule of the source and of the cut, shared or copied, gets its
    # own mode back.
    with (
        borrowed(module, device),
        borrowed(pruned if pruned is not None else backbone, device),
        torch.inference_mode(),
    ):
        y = gap(backbone(x))
        if verify:
            _verify(model, spec, kept, y, x)
    return y


def prune_summary(pm: PrunedModel) -> str:
    """One line: ``inception_v3 pruned at mixed8: 10,664,160 of 21,785,568 backbone ...``."""
    return (
        f"{pm.model_name} pruned at {pm.layer}: {pm.n_params:,} of {pm.full_n_params:,} "
        f"backbone parameters ({100 * pm.reduction:.1f} % fewer); output dim {pm.out_dim}"
    )


# -- the forward chain ------------------------------------------------------------------


def _plan(model: Model) -> _Plan:
    """The backbone's forward chain of ``model.module``."""
    import timm.models.efficientnet as timm_efficientnet
    import torchvision.models as tvm

    m = model.module
    children = dict(m.named_children())

    def steps(names: Sequence[str]) -> list[_Step]:
        return [_Step(n, children[n], n) for n in names if n in children]

    if isinstance(m, tvm.Inception3):
        order = [
            "Conv2d_1a_3x3",
            "Conv2d_2a_3x3",
            "Conv2d_2b_3x3",
            "maxpool1",
            "Conv2d_3b_1x1",
            "Conv2d_4a_3x3",
            "maxpool2",
            *(f"Mixed_{b}" for b in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e")),
            *(f"Mixed_{b}" for b in ("7a", "7b", "7c")),
        ]
        chain = steps(order)
        if m.transform_input:
            chain.insert(0, _Step("transform_input", InceptionInputTransform(), None))
        return _Plan(tuple(chain), ("avgpool", "dropout", "fc"), ("AuxLogits",), True)
    if isinstance(m, tvm.ResNet):
        order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        return _Plan(tuple(steps(order)), ("avgpool", "fc"), (), True)
    if isinstance(m, tvm.MobileNetV2):
        return _Plan(tuple(steps(["features"])), ("classifier",), (), True)
    if isinstance(m, timm_efficientnet.EfficientNet):
        order = ["conv_stem", "bn1", "blocks", "conv_head", "bn2"]
        return _Plan(tuple(steps(order)), ("global_pool", "classifier"), (), True)
    if _is_chain(m):
        return _Plan(tuple(steps(list(children))), (), (), True)
    if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(False)):
        raise PruneError(
            f"Cannot prune {model.name}: its forward uses the network's own parameters "
            f"({', '.join(n for n, _ in m.named_parameters(recurse=False))}) besides its "
            "submodules, so it is not a chain of modules that rcvlab can cut."
        )
    names = list(children)
    cut = next((i for i, n in enumerate(names) if n in _HEAD_NAMES), len(names))
    return _Plan(tuple(steps(names[:cut])), tuple(names[cut:]), (), False)


def _is_chain(m: nn.Module) -> bool:
    """Whether ``m``'s forward is ``nn.Sequential``'s: its children applied in order."""
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _cut(model: Model, plan: _Plan, spec: LayerSpec) -> tuple[nn.Sequential, list[str]]:
    """The chain up to ``spec`` as a new (nested) Sequential, and the kept modules' paths."""
    parts = spec.module.split(".")
    top = parts[0]
    index = next((i for i, s in enumerate(plan.steps) if s.path == top), None)
    if index is None:
        raise _off_path_error(model, plan, spec, top)
    kept: list[str] = []
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for step in plan.steps[:index]:
        out[step.name] = step.module
        if step.path is not None:
            kept.append(step.path)
    step = plan.steps[index]
    out[step.name] = _cut_inside(model, spec, step.module, top, parts[1:], kept)
    return nn.Sequential(out), kept


def _cut_inside(
    model: Model, spec: LayerSpec, module: nn.Module, path: str, rest: list[str], kept: list[str]
) -> nn.Module:
    """``module`` (at ``path``) cut after its descendant ``rest``; appends kept paths."""
    if not rest:
        kept.append(path)
        return ResidualSum(module) if spec.kind == "residual_sum" else module
    if not _is_chain(module):
        raise _branch_error(model, spec, module, path)
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for name, child in module.named_children():
        child_path = f"{path}.{name}"
        if name == rest[0]:
            out[name] = _cut_inside(model, spec, child, child_path, rest[1:], kept)
            return nn.Sequential(out)
        out[name] = child
        kept.append(child_path)
    raise PruneError(f"'{spec.module}' is not a submodule of {model.name}.")  # pragma: no cover


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count_steps(steps: Sequence[_Step]) -> int:
    # A parameter shared by two steps counts once, as in nn.Module.parameters().
    seen: dict[int, int] = {}
    for s in steps:
        for p in s.module.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def _verify(
    model: Model, spec: LayerSpec, kept: Sequence[str], y: torch.Tensor, x: torch.Tensor
) -> None:
    """Raise unless ``y`` equals the layer's GAP features of ``x`` read by hooks in the network."""
    with capture(model.module, [spec], gap) as out:
        model.module(x)
    ref = out.get(spec.name)
    scale = float(ref.abs().max()) if ref is not None and ref.numel() else 0.0
    if (
        ref is None
        or ref.shape != y.shape
        or not torch.allclose(y.float(), ref, rtol=1e-4, atol=1e-4 * scale + 1e-30)
    ):
        raise PruneError(
            f"Cannot prune {model.name} at '{spec.name}': its forward is not the chain of "
            f"modules rcvlab assumed ({', '.join(kept)}), checked on a random input."
        )


# -- errors -------------------------------------------------------------------------------


def _layers_hint(model: Model) -> str:
    return "" if model.name == "custom" else f" (see `rcvlab layers {model.name}`)"


def _last_layer(model: Model, plan: _Plan) -> str | None:
    tops = {s.path for s in plan.steps}
    names = [s.name for s in model.layer_specs if s.module.split(".")[0] in tops]
    return names[-1] if names else (plan.steps[-1].path if plan.steps else None)


def _off_path_error(model: Model, plan: _Plan, spec: LayerSpec, top: str) -> PruneError:
    where = f"Cannot prune {model.name} at '{spec.name}'"
    last = _last_layer(model, plan)
    advice = f"prune at the last block '{last}' or earlier" if last else "prune at a block"
    if top in plan.head:
        if spec.kind == "softmax":
            what = f"the classifier's softmax ('{top}'), after the global average pooling"
        elif top in ("fc", "classifier", "head", "last_linear"):
            what = f"the classifier's output ('{top}'), after the global average pooling"
        else:
            what = f"'{top}', part of the pooling and classifier head after the last feature map"
        return PruneError(
            f"{where}: it is {what}, not a feature map; {advice}{_layers_hint(model)}."
        )
    if top in plan.side:
        return PruneError(
            f"{where}: '{top}' is an auxiliary classifier, off the network's main path; "
            f"{advice}{_layers_hint(model)}."
        )
    return PruneError(f"{where}: '{top}' is not on the network's main path; {advice}.")


def _branch_error(model: Model, spec: LayerSpec, block: nn.Module, path: str) -> PruneError:
    names = [s.name for s in model.layer_specs if s.module == path] or [path]
    if path not in names:
        names.append(path)
    choice = " or ".join(f"'{n}'" for n in names)
    if type(block).__module__ == "torchvision.models.inception" and type(block).__name__.startswith(
        "Inception"
    ):
        inside = f"it is inside a branch of {path}, not on the network's main path"
    else:
        inside = (
            f"it is inside {path} ({type(block).__name__}), a block that is kept or cut whole "
            "because its forward is not a plain chain of its submodules"
        )
    return PruneError(
        f"Cannot prune {model.name} at '{spec.name}': {inside}; prune at the block itself, "
        f"{choice}{_layers_hint(model)}."
    )


__all__ = [
    "InceptionInputTransform",
    "PruneError",
    "PrunedModel",
    "ResidualSum",
    "check_prune_layer",
    "prune",
    "prune_summary",
]
