"""rcvlab: where inside a pretrained CNN is a continuous concept linearly encoded?

Layer-wise Regression Concept Vectors (linear probes of pooled features) with held-out R²,
random-weights and shuffled-measure baselines.
"""

__version__ = "0.1.0"

from rcvlab.distributed import open_client
from rcvlab.errors import DataError, RcvlabError, UnknownNameError, WeightsError
from rcvlab.features import FeatureSet, extract_features, layer_dims
from rcvlab.models import Model, available_models, load_model
from rcvlab.probe.profile import probe_layers
from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.prune import PrunedModel, prune
from rcvlab.result import Result, load_result

__all__ = [
    "DataError",
    "FeatureSet",
    "LayerScore",
    "Model",
    "ProfileResult",
    "PrunedModel",
    "RcvlabError",
    "Result",
    "UnknownNameError",
    "WeightsError",
    "__version__",
    "available_models",
    "extract_features",
    "layer_dims",
    "load_model",
    "load_result",
    "open_client",
    "probe_layers",
    "prune",
]
