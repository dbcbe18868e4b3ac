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
``sigmoid``
    the sigmoid of the output of ``module`` (a single-logit head, :mod:`rcvlab.models.heads`).

A spec's ``layout`` says how its output is laid out, so that pooling averages the right
axes (timm's Swin stages give ``(N, H, W, C)``, ViT blocks ``(N, T, C)`` tokens):

``NCHW``
    a map ``(N, C, H, W)`` (torchvision and most CNNs).
``NHWC``
    a channels-last map ``(N, H, W, C)``, brought to ``(N, C, H, W)`` before pooling.
``NLC``
    tokens ``(N, L, C)``, of which the first ``prefix_tokens`` are class/register tokens:
    GAP averages the patch tokens only, ``pooling="cls"`` takes token 0.
``NC``
    a vector per image (logits). A 2-D output is a vector under every layout.
``None``
    not known: a 3-D or 4-D output is an error that says to pass ``layout=``.

For timm models the layouts are read from the network itself (:func:`infer_layouts`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, cast

import torch
import torch.nn as nn

from rcvlab.errors import RcvlabError, UnknownNameError, did_you_mean
from rcvlab.models.state import borrowed, module_device

Kind = Literal["output", "residual_sum", "softmax", "sigmoid"]
Layout = Literal["NCHW", "NHWC", "NLC", "NC"]
#: The layouts a layer can be declared with (``NLC+k``: tokens with ``k`` prefix tokens).
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC", "NLC", "NC")
#: Turns a layer's output into an ``(N, C, H, W)`` map or an ``(N, C)`` vector.
Reshape = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LayerSpec:
    """Where a probe-able layer is read in the network.

    Attributes
    ----------
    name : str
        The layer's rcvlab name (``mixed8``, ``add15``, ``block4a``, ``features.3`` ...).
    module : str
        Dotted module path in the PyTorch model.
    kind : {"output", "residual_sum", "softmax", "sigmoid"}
        How the value is read (see the module docstring).
    note : str
        What the name means in the source framework (shown by ``rcvlab layers``).
    layout : {"NCHW", "NHWC", "NLC", "NC"} or None
        How the output is laid out (see the module docstring); None: not known.
    prefix_tokens : int
        For ``NLC``: leading class/register tokens, left out of GAP.
    reshape : callable, optional
        Turns the output into ``(N, C, H, W)`` (or ``(N, C)``) before pooling, as
        pytorch-grad-cam's ``reshape_transform``; it overrides ``layout``.
    """

    name: str
    module: str
    kind: Kind = "output"
    note: str = ""
    layout: Layout | None = "NCHW"
    prefix_tokens: int = 0
    reshape: Reshape | None = field(default=None, compare=False)

    @property
    def layout_label(self) -> str:
        """The layout as ``rcvlab layers`` shows it: ``NCHW``, ``NLC+1``, ``reshape``, ``?``."""
        if self.reshape is not None:
            return "reshape"
        if self.layout is None:
            return "?"
        if self.layout == "NLC":
            return f"NLC+{self.prefix_tokens}"
        return self.layout

    def key(self) -> tuple[str, ...]:
        """What identifies how the layer is read, for cache keys.

        Maps and vectors read as before layouts existed keep their old key, so caches
        written by earlier versions stay valid.
        """
        base = (self.name, self.module, self.kind)
        if self.reshape is None and self.layout in ("NCHW", "NC"):
            return base
        return (*base, self.layout_label, callable_id(self.reshape))


#: Keras InceptionV3's stem convolutions (``keras.applications.inception_v3``, Keras 2.2
#: numbering from 1, as the papers' code ran) and the torchvision ``BasicConv2d`` each is:
#: Keras ``conv2d_k`` is the ``Conv2D`` alone, before its ``BatchNormalization`` and ReLU,
#: which is torchvision's ``<block>.conv``. ``conv2d_6`` onwards are inside ``mixed0``.
KERAS_INCEPTION_STEM: dict[str, str] = {
    "conv2d_1": "Conv2d_1a_3x3",
    "conv2d_2": "Conv2d_2a_3x3",
    "conv2d_3": "Conv2d_2b_3x3",
    "conv2d_4": "Conv2d_3b_1x1",
    "conv2d_5": "Conv2d_4a_3x3",
}
#: The six depths of paper 004's texture RCVs (its code's Keras layer names, METHOD.md §7).
PAPER004_LAYERS: tuple[str, ...] = ("conv2d_3", "conv2d_5", "mixed0", "mixed3", "mixed6", "mixed7")
#: Stem convolutions offered as InceptionV3 layers (the two paper 004 probes).
_STEM_LAYERS = ("conv2d_3", "conv2d_5")


def inception_v3_layers() -> list[LayerSpec]:
    """The papers' Keras names for torchvision's InceptionV3 (METHOD.md §2).

    ``conv2d_3`` and ``conv2d_5`` (Keras' 3rd and 5th convolutions, before their
    BatchNorm: torchvision ``Conv2d_2b_3x3.conv`` and ``Conv2d_4a_3x3.conv``, see
    :data:`KERAS_INCEPTION_STEM`), then ``mixed0 … mixed10`` = ``Mixed_5b … Mixed_7c``,
    then the logits and the softmax.
    """
    stem = [
        LayerSpec(
            k,
            f"{KERAS_INCEPTION_STEM[k]}.conv",
            note=f"Keras {k} = torchvision {KERAS_INCEPTION_STEM[k]}.conv (conv before its "
            "BatchNorm; Keras conv2d_1..5 = Conv2d_1a, 2a, 2b, 3b, 4a)",
        )
        for k in _STEM_LAYERS
    ]
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
    # paper 004's Figure 3 labels Keras mixed6 and mixed7 by Inception-v3 paper block names
    fig3 = {
        i: f" (paper 004's Figure 3 label: {lab})" for i, lab in ((6, "mixed6e"), (7, "mixed7a"))
    }
    specs = [
        LayerSpec(f"mixed{i}", m, note=f"Keras mixed{i} = torchvision {m}{fig3.get(i, '')}")
        for i, m in enumerate(tv)
    ]
    return [*stem, *specs, *_head("fc")]


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
        LayerSpec("pre-softmax", logits_module, note="logits", layout="NC"),
        LayerSpec("softmax", logits_module, "softmax", note="class probabilities", layout="NC"),
    ]


def callable_id(f: Callable[..., object] | None) -> str:
    """A stable identity of a function for cache keys: its qualified name and a digest
    of its code (two different lambdas in one file do not share a cache entry)."""
    if f is None:
        return ""
    code = getattr(f, "__code__", None)
    body = b"" if code is None else code.co_code + repr(code.co_consts).encode()
    name = f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', type(f).__name__)}"
    return f"{name}:{hashlib.sha1(body).hexdigest()[:12]}"


def parse_layout(value: str, layer: str) -> tuple[Layout, int | None]:
    """``"NHWC"`` -> ``("NHWC", None)``; ``"NLC+1"`` -> ``("NLC", 1)``.

    The prefix count is None when not given (the model's own is used).

    Raises
    ------
    RcvlabError
        For anything else.
    """
    v = str(value).strip().upper()
    head, plus, tail = v.partition("+")
    if head in LAYOUTS and not plus:
        return cast(Layout, head), None
    if head == "NLC" and tail.isdigit():
        return "NLC", int(tail)
    raise RcvlabError(
        f"Unknown layout {value!r} for layer {layer}; use NCHW, NHWC, NLC, NLC+k "
        "(k class/register tokens first) or NC."
    )


def with_layouts(
    specs: Iterable[LayerSpec],
    layout: str | Mapping[str, str] | None = None,
    reshape: Reshape | Mapping[str, Reshape] | None = None,
    *,
    prefix_tokens: int = 0,
) -> list[LayerSpec]:
    """The specs with user-declared layouts and reshape functions.

    Parameters
    ----------
    specs : iterable of LayerSpec
    layout : str or mapping of str to str, optional
        One layout for every map/token layer, or one per layer name: ``NCHW``, ``NHWC``,
        ``NLC`` (with the layer's or model's number of prefix tokens), ``NLC+k``, ``NC``.
    reshape : callable or mapping of str to callable, optional
        Output -> ``(N, C, H, W)``, for every layer or per layer name.
    prefix_tokens : int
        Prefix tokens of a plain ``NLC`` when the layer does not know its own.

    Raises
    ------
    UnknownNameError
        A per-layer mapping names a layer that was not requested.
    RcvlabError
        An unknown layout, or a reshape that is not callable.
    """
    specs = list(specs)
    names = [s.name for s in specs]
    for opt, given in (("layout", layout), ("reshape", reshape)):
        if isinstance(given, Mapping):
            for k in given:
                if k not in names:
                    raise UnknownNameError(
                        f"{opt}= names layer '{k}', which is not among the layers requested "
                        f"({', '.join(names)}).{did_you_mean(k, names)}"
                    )
    out = []
    for s in specs:
        lay = layout.get(s.name) if isinstance(layout, Mapping) else layout
        if lay is not None and not (isinstance(layout, str) and s.kind in ("softmax", "sigmoid")):
            kind, k = parse_layout(lay, s.name)
            if k is None:
                k = s.prefix_tokens if s.layout == "NLC" else prefix_tokens
            s = replace(s, layout=kind, prefix_tokens=k if kind == "NLC" else 0)
        f = reshape.get(s.name) if isinstance(reshape, Mapping) else reshape
        if f is not None:
            if not callable(f):
                raise RcvlabError(
                    f"reshape= for layer {s.name} must be a function of the output, "
                    f"got {type(f).__name__}."
                )
            s = replace(s, reshape=f)
        out.append(s)
    return out


LayerLayout = tuple[Layout | None, int]


def infer_layouts(module: nn.Module, size: int | tuple[int, int]) -> dict[str, LayerLayout]:
    """The layout of every module's output in a timm network, from the network itself.

    One forward pass of a blank batch of 2 records every module's output shape. A module
    that timm lists in ``feature_info`` is ``NCHW`` or ``NHWC`` by which axis holds its
    ``num_chs`` channels (timm's own ``output_fmt`` decides a tie); another 4-D output by
    which pair of axes is the (square) spatial grid. A 3-D output whose first axis is the
    batch is tokens: with the model's ``num_prefix_tokens`` (ViT's class and register
    tokens) when it has the length of the blocks' token sequence, none when it is a square
    grid of patches. Anything else is None (not known: reading it needs ``layout=``).

    Parameters
    ----------
    module : torch.nn.Module
        A timm model (weights do not matter).
    size : int or (int, int)
        Input height and width.

    Returns
    -------
    dict of str to (layout, prefix_tokens)
        For every module reached in the forward pass, by dotted path.

    Raises
    ------
    RcvlabError
        The network cannot run on this input size.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    shapes: dict[str, tuple[int, ...] | None] = {}

    def record(name: str):
        def hook(_m: nn.Module, _i: object, y: object) -> None:
            shapes[name] = tuple(y.shape) if isinstance(y, torch.Tensor) else None

        return hook

    param = next(module.parameters(), None)
    dev = module_device(module)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    handles = [m.register_forward_hook(record(n)) for n, m in module.named_modules() if n]
    try:
        # every submodule's own mode comes back (a frozen BatchNorm stays frozen)
        with borrowed(module, dev), torch.inference_mode():
            module(torch.zeros(2, 3, h, w, device=dev, dtype=dtype))
    except (RuntimeError, AssertionError, ValueError) as e:
        msg = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
        raise RcvlabError(
            f"Cannot run {type(module).__name__} on a {h}x{w} input: {msg}. "
            "Use the model's own input size."
        ) from None
    finally:
        for hd in handles:
            hd.remove()
    info = getattr(module, "feature_info", None)
    chs: dict[str, int] = {}
    if isinstance(info, list):
        chs = {d["module"]: int(d["num_chs"]) for d in info if isinstance(d, dict)}
    fmt = getattr(module, "output_fmt", None)
    fmt = fmt if isinstance(fmt, str) else None
    prefix = getattr(module, "num_prefix_tokens", None)
    token_lengths = {
        sh[1] for n, sh in shapes.items() if n in chs and sh is not None and len(sh) == 3
    }
    out: dict[str, LayerLayout] = {}
    for name, sh in shapes.items():
        out[name] = _classify(sh, chs.get(name), fmt, prefix, token_lengths)
    return out


def _classify(
    sh: tuple[int, ...] | None,
    chs: int | None,
    fmt: str | None,
    prefix: int | None,
    token_lengths: set[int],
) -> LayerLayout:
    if sh is None or sh[0] != 2:  # not a tensor, or not one row per image (windows)
        return None, 0
    if len(sh) == 2:
        return "NC", 0
    if len(sh) == 4:
        _, a, b, c = sh
        if chs is not None:
            cands = [lay for lay, ok in (("NCHW", a == chs), ("NHWC", c == chs)) if ok]
        else:
            cands = [lay for lay, ok in (("NCHW", b == c), ("NHWC", a == b)) if ok]
        if len(cands) == 2 and fmt in cands:
            return cast(Layout, fmt), 0
        return (cast(Layout, cands[0]), 0) if len(cands) == 1 else (None, 0)
    if len(sh) == 3:
        t, c = sh[1], sh[2]
        if chs is not None and c != chs:
            return None, 0
        if prefix:
            if t in token_lengths or (not token_lengths and _square(t - prefix)):
                return "NLC", int(prefix)
            if any(t == n - prefix for n in token_lengths):
                return "NLC", 0
            return None, 0
        return ("NLC", 0) if _square(t) else (None, 0)
    return None, 0


def _square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def discover_layers(
    module: nn.Module, layouts: Mapping[str, LayerLayout] | None = None
) -> list[LayerSpec]:
    """Guess a network's block-level layers (any timm/torchvision CNN).

    Takes the blocks of the first of ``blocks``, ``stages``, ``layers``, ``features`` (or
    torchvision ResNet's ``layer1…4``) that exists, descending one level into stages that
    are themselves sequences of blocks, then the classifier output and its softmax.
    With ``layouts`` (:func:`infer_layouts`), each layer gets its layout from it (None
    where the network's output there is not known); without, maps are ``NCHW``.
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
    if layouts is None:
        return specs
    return [
        s
        if s.kind == "softmax"
        else replace(
            s,
            layout=layouts.get(s.module, (None, 0))[0],
            prefix_tokens=layouts.get(s.module, (None, 0))[1],
        )
        for s in specs
    ]


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, nn.Conv2d) for x in m.modules())


def _plain(name: str) -> str:
    return name.replace("_", "").lower()


def resolve_layers(
    requested: Iterable[str] | str | None,
    specs: list[LayerSpec],
    module: nn.Module,
    model_name: str,
    layouts: Mapping[str, LayerLayout] | None = None,
) -> list[LayerSpec]:
    """Turn user layer names into specs, in the order given.

    Accepts rcvlab names, ``"all"``/``None`` (every named layer), dotted module paths
    (read as the module's output, nothing added) and a named layer's module name written
    without case or underscores (``mixed6a`` for InceptionV3's ``Mixed_6a``, i.e. ``mixed3``:
    the names of paper 004's Figure 1). A dotted path's layout comes from
    ``layouts`` (:func:`infer_layouts`) when given (None where not known there), else it
    is ``NCHW``. Unknown names raise :class:`UnknownNameError`.
    """
    if requested is None or requested == "all":
        return list(specs)
    if isinstance(requested, str):
        requested = [x.strip() for x in requested.split(",") if x.strip()]
    by_name = {s.name: s for s in specs}
    modules = dict(module.named_modules())
    # a named layer also answers to its module's name spelled without case or underscores
    # (paper 004's Figure 1 says mixed6a for torchvision's Mixed_6a, rcvlab's mixed3)
    by_module = {_plain(s.module): s for s in specs if s.kind == "output"}
    out = []
    for name in requested:
        if name in by_name:
            out.append(by_name[name])
        elif name and name in modules:
            lay, k = ("NCHW", 0) if layouts is None else layouts.get(name, (None, 0))
            out.append(LayerSpec(name, name, note="module output", layout=lay, prefix_tokens=k))
        elif _plain(name) in by_module:
            out.append(by_module[_plain(name)])
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
    "KERAS_INCEPTION_STEM",
    "LAYOUTS",
    "PAPER004_LAYERS",
    "LayerLayout",
    "LayerSpec",
    "Layout",
    "Reshape",
    "callable_id",
    "discover_layers",
    "efficientnet_layers",
    "inception_v3_layers",
    "infer_layouts",
    "mobilenet_v2_layers",
    "parse_layout",
    "resnet50_layers",
    "resolve_layers",
    "with_layouts",
]
