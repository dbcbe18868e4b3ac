"""Networks by name, their probe-able layers, weights found offline and preprocessing."""

from rcvlab.models.heads import binary_head, is_binary
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import (
    Model,
    Preprocessing,
    available_models,
    load_model,
    save_weights,
)

__all__ = [
    "LayerSpec",
    "Model",
    "Preprocessing",
    "available_models",
    "binary_head",
    "is_binary",
    "load_model",
    "save_weights",
]
