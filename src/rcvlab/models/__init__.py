"""Networks by name, their probe-able layers, weights found offline and preprocessing."""

from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model, Preprocessing, available_models, load_model

__all__ = ["LayerSpec", "Model", "Preprocessing", "available_models", "load_model"]
