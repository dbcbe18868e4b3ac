"""Capturing many layers in one forward pass with hooks that pool as they go."""

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


@contextmanager
def capture(
    module: nn.Module,
    specs: Sequence[LayerSpec],
    pool: Pool | Mapping[str, Pool],
    *,
    linear: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Register hooks that store each layer's pooled ``(n, d)`` output in the yielded dict.

    ``pool`` is one pooling for every layer, or one per layer name (corrected GAP averages
    a different set of positions in each layer). The dict is filled by every forward pass
    of ``module`` inside the ``with`` block (values are overwritten per pass). Hooks are
    always removed on exit, also on errors and Ctrl-C.
    """
    out: dict[str, torch.Tensor] = {}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def pool_of(name: str) -> Pool:
        return pool[name] if isinstance(pool, Mapping) else pool

    def store(name: str, transform=None):
        layer_pool = pool_of(name)

        def hook(_m: nn.Module, _inp: object, output: torch.Tensor) -> None:
            y = output if transform is None else transform(output)
            out[name] = layer_pool(y).float()

        return hook

    try:
        for spec in specs:
            target = module.get_submodule(spec.module)
            if spec.kind == "output":
                handles.append(target.register_forward_hook(store(spec.name)))
            elif spec.kind == "softmax":
                handles.append(
                    target.register_forward_hook(
                        store(spec.name, lambda t: torch.softmax(t.float(), dim=-1))
                    )
                )
            elif spec.kind == "residual_sum":
                if not linear:
                    raise RcvlabError(
                        f"Layer {spec.name} (a residual sum) needs a linear pooling such as GAP."
                    )
                handles.extend(_residual_sum_hooks(target, spec.name, pool_of(spec.name), out))
            else:  # pragma: no cover - LayerSpec.kind is a closed set
                raise RcvlabError(f"Unknown layer kind {spec.kind!r}")
        yield out
    finally:
        for h in handles:
            h.remove()


def _residual_sum_hooks(
    block: nn.Module, name: str, pool: Pool, out: dict[str, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks giving pool(bn3(...) + identity) of a torchvision Bottleneck/BasicBlock.

    pool is linear, so pool(a + b) = pool(a) + pool(b): the two branches are pooled as they
    are produced, before the block adds them in place and applies its in-place ReLU.
    """
    last_bn = "bn3" if hasattr(block, "bn3") else "bn2"
    if not hasattr(block, last_bn):
        raise RcvlabError(f"Layer {name}: {type(block).__name__} is not a ResNet block.")
    parts: dict[str, torch.Tensor] = {}

    def on_input(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if getattr(block, "downsample", None) is None:
            parts["identity"] = pool(args[0]).float()

    def on_downsample(_m: nn.Module, _i: object, y: torch.Tensor) -> None:
        parts["identity"] = pool(y).float()

    def on_bn(_m: nn.Module, _i: object, y: torch.Tensor) -> None:
        parts["residual"] = pool(y).float()

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


__all__ = ["Pool", "capture"]
