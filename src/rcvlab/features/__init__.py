"""One-pass feature extraction, pooling inside the hooks, and the on-disk cache."""

from rcvlab.features.cache import FeatureCache, cache_key
from rcvlab.features.extract import FeatureSet, extract_features, layer_dims
from rcvlab.features.pooling import corrected_gap, get_pooling, layer_pools
from rcvlab.features.receptive import n_positions, padding_masks

__all__ = [
    "FeatureCache",
    "FeatureSet",
    "cache_key",
    "corrected_gap",
    "extract_features",
    "get_pooling",
    "layer_dims",
    "layer_pools",
    "n_positions",
    "padding_masks",
]
