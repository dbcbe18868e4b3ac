"""One-pass feature extraction, pooling inside the hooks, and the on-disk cache."""

from rcvlab.features.cache import FeatureCache, cache_key
from rcvlab.features.extract import FeatureSet, extract_features, layer_dims
from rcvlab.features.pooling import get_pooling

__all__ = [
    "FeatureCache",
    "FeatureSet",
    "cache_key",
    "extract_features",
    "get_pooling",
    "layer_dims",
]
