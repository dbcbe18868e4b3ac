"""Capturing many layers in one forward pass with hooks that pool as they go.

Each hook first brings its layer's output to the form pooling expects, from the layer's
declared layout (:class:`rcvlab.models.layers.LayerSpec`): an ``(N, C, H, W)`` map, or an
``(N, C)`` vector. Channels-last maps are permuted (a view), token sequences ``(N, L, C)``
become the map ``(N, C, L - k, 1)`` of their patch tokens (the ``k`` prefix tokens left
out), or their class token ``(N, C)`` for a pooling that reads it (:func:`reads_class_token`).
An output whose layout is not known is an error naming ``layout=``, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

from rcvlab.errors import RcvlabError
from rcvlab.models.layers import LayerSpec

# A layer's output (n, c, ...) -> one vector per image (n, c). Defined here, not in
# pooling.py: pooling needs receptive, which needs capture, so hooks.py imports neither.
Pool = Callable[[torch.Tensor], torch.Tensor]


class LayoutError(RcvlabError):
    """A layer's output does not have the layout it was declared with, or none is known."""


def reads_class_token(pool: Pool) -> bool:
    """Whether ``pool`` wants a token layer's class token rather than its patch tokens."""
    return bool(getattr(pool, "class_token", False))


def _fix(name: str) -> str:
    return (
        f"pass layout='NCHW', 'NHWC' or 'NLC' (or layout={{'{name}': ...}}), or "
        "reshape=f with f(output) an (N, C, H, W) tensor"
    )


def to_pooling_input(y: object, spec: LayerSpec, class_token: bool = False) -> torch.Tensor:
    """A layer's output as pooling takes it: ``(N, C, H, W)``, or ``(N, C)``.

    Parameters
    ----------
    y : object
        The module's output.
    spec : LayerSpec
        Its layout, prefix tokens and reshape function.
    class_token : bool
        Return a token layer's class token (token 0) instead of its patch tokens.

    Returns
    -------
    torch.Tensor
        A map (patch tokens as an ``(N, C, L, 1)`` map) or a vector per image.

    Raises
    ------
    LayoutError
        Not a tensor, a shape that does not fit the layout, an unknown layout, or a class
        token asked of a layer without one.
    """
    layout = spec.layout
    if spec.reshape is not None:
        y = spec.reshape(y)  # type: ignore[arg-type]
        layout = "NCHW"
    if not isinstance(y, torch.Tensor):
        raise LayoutError(
            f"Layer {spec.name} outputs a {type(y).__name__}, not a tensor; pass "
            "reshape=f with f(output) an (N, C, H, W) tensor."
        )
    if y.ndim == 2:
        return y
    shape = tuple(y.shape)
    if layout is None:
        raise LayoutError(
            f"Layer {spec.name} outputs shape {shape}, whose layout rcvlab cannot know; "
            f"{_fix(spec.name)}."
        )
    if layout in ("NCHW", "NHWC"):
        if y.ndim != 4:
            raise LayoutError(
                f"Layer {spec.name} is read as {layout} but outputs shape {shape}; "
                f"{_fix(spec.name)}."
            )
        if class_token:
            raise LayoutError(
                f"pooling='cls' needs a class token, and layer {spec.name} is a map "
                f"({layout}); use pooling='gap'."
            )
        return y.permute(0, 3, 1, 2) if layout == "NHWC" else y
    if layout == "NLC" and y.ndim == 3:
        k = spec.prefix_tokens
        if class_token:
            if k < 1:
                raise LayoutError(
                    f"pooling='cls' needs a class token, and layer {spec.name} has none "
                    "(NLC without prefix tokens); use pooling='gap' or layout='NLC+1'."
                )
            return y[:, 0]
        if y.shape[1] <= k:
            raise LayoutError(
                f"Layer {spec.name} outputs {y.shape[1]} tokens, not more than its {k} "
                f"prefix tokens; {_fix(spec.name)}."
            )
        return y[:, k:].transpose(1, 2).unsqueeze(-1)
    raise LayoutError(
        f"Layer {spec.name} is read as {spec.layout_label} but outputs shape {shape}; "
        f"{_fix(spec.name)}."
    )


@contextmanager
def capture(
    module: nn.Module,
    specs: Sequence[LayerSpec],
    pool: Pool | Mapping[str, Pool],
    *,
    linear: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Register hooks that store each layer's pooled ``(n, d)`` output in the yielded dict.

    The pooled outputs are float32 whatever the pass's precision: under a 16-bit autocast
    the poolings of :mod:`rcvlab.features.pooling` average the 16-bit maps in float32.

    ``pool`` is one pooling for every layer, or one per layer name (corrected GAP averages
    a different set of positions in each layer). Each output is first brought to the
    form pooling takes by its spec's layout (:func:`to_pooling_input`). The dict is
    filled by every forward pass of ``module`` inside the ``with`` block (values are
    overwritten per pass). Hooks are always removed on exit, also on errors and Ctrl-C.
    """
    out: dict[str, torch.Tensor] = {}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def pool_of(name: str) -> Pool:
        return pool[name] if isinstance(pool, Mapping) else pool

    def store(spec: LayerSpec, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        layer_pool = pool_of(spec.name)
        cls = reads_class_token(layer_pool)

        def hook(_m: nn.Module, _inp: object, output: torch.Tensor) -> None:
            y = output if transform is None else transform(output)
            out[spec.name] = layer_pool(to_pooling_input(y, spec, cls)).float()

        return hook

    try:
        for spec in specs:
            target = module.get_submodule(spec.module)
            if spec.kind == "output":
                handles.append(target.register_forward_hook(store(spec)))
            elif spec.kind == "softmax":
                handles.append(
                    target.register_forward_hook(
                        store(spec, lambda t: torch.softmax(t.float(), dim=-1))
                    )
                )
            elif spec.kind == "sigmoid":
                handles.append(
                    target.register_forward_hook(store(spec, lambda t: torch.sigmoid(t.float())))
                )
            elif spec.kind == "residual_sum":
                if not linear:
                    raise RcvlabError(
                        f"Layer {spec.name} (a residual sum) needs a linear pooling such as GAP."
                    )
                handles.extend(_residual_sum_hooks(target, spec, pool_of(spec.name), out))
            else:  # pragma: no cover - LayerSpec.kind is a closed set
                raise RcvlabError(f"Unknown layer kind {spec.kind!r}")
        yield out
    finally:
        for h in handles:
            h.remove()


def _residual_sum_hooks(
    block: nn.Module, spec: LayerSpec, pool: Pool, out: dict[str, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks giving pool(bn3(...) + identity) of a torchvision Bottleneck/BasicBlock.

    pool is linear, so pool(a + b) = pool(a) + pool(b): the two branches are pooled as they
    are produced, before the block adds them in place and applies its in-place ReLU.
    """
    name = spec.name
    cls = reads_class_token(pool)
    last_bn = "bn3" if hasattr(block, "bn3") else "bn2"
    if not hasattr(block, last_bn):
        raise RcvlabError(f"Layer {name}: {type(block).__name__} is not a ResNet block.")
    parts: dict[str, torch.Tensor] = {}

    def on_input(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if getattr(block, "downsample", None) is None:
            parts["identity"] = pool(to_pooling_input(args[0], spec, cls)).float()

    def on_downsample(_m: nn.Module, _i: object, y: torch.Tensor) -> None:
        parts["identity"] = pool(to_pooling_input(y, spec, cls)).float()

    def on_bn(_m: nn.Module, _i: object, y: torch.Tensor) -> None:
        parts["residual"] = pool(to_pooling_input(y, spec, cls)).float()

    def on_block(_m: nn.Module, _i: object, _y: torch.Tensor) -> None:
        out[name] = parts.pop("residual") + parts.pop("identity")

    hs = [
        block.register_forward_pre_hook(on_input),
        block.get_submodule(last_bn).register_forward_hook(on_bn),
        block.register_forward_hook(on_block),
    ]
    if getattr(block, "downsample", None) is not None:
        hs.append(block.downsample.register_forward_hook(on_downsample))
    return hs


__all__ = ["LayoutError", "Pool", "capture", "reads_class_token", "to_pooling_input"]
