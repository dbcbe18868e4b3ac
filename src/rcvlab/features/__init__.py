"""One-pass feature extraction, pooling inside the hooks, and the on-disk cache."""

from rcvlab.features.cache import CacheError, FeatureCache, cache_key, check_cache_dir
from rcvlab.features.extract import FeatureSet, choose_device, extract_features, layer_dims
from rcvlab.features.pooling import corrected_gap, get_pooling, layer_pools
from rcvlab.features.receptive import n_positions, padding_masks

__all__ = [
    "CacheError",
    "FeatureCache",
    "FeatureSet",
    "cache_key",
    "check_cache_dir",
    "choose_device",
    "corrected_gap",
    "extract_features",
    "get_pooling",
    "layer_dims",
    "layer_pools",
    "n_positions",
    "padding_masks",
]
