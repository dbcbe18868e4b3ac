"""rcvlab: where inside a pretrained CNN is a continuous concept linearly encoded?

Layer-wise Regression Concept Vectors (linear probes of pooled features) with held-out R²,
random-weights and shuffled-measure baselines.
"""

__version__ = "0.1.0"

from rcvlab.analyses.cam import CamComparison, CamResult, cam, compare_cams
from rcvlab.analyses.finetune import FinetuneResult, finetune
from rcvlab.analyses.profile import layer_profile
from rcvlab.analyses.visualize import VisualizeResult, visualize
from rcvlab.analyses.weights import WeightsComparison, compare_weights
from rcvlab.data import open_data, read_camelyon, tumour_set
from rcvlab.distributed import open_client
from rcvlab.errors import DataError, RcvlabError, UnknownNameError, WeightsError
from rcvlab.features import FeatureSet, extract_features, layer_dims
from rcvlab.measures import segment_nuclei
from rcvlab.models import Model, available_models, binary_head, load_model, save_weights
from rcvlab.probe.profile import probe_layers
from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.prune import PrunedModel, prune
from rcvlab.result import Result, load_result

__all__ = [
    "CamComparison",
    "CamResult",
    "DataError",
    "FeatureSet",
    "FinetuneResult",
    "LayerScore",
    "Model",
    "ProfileResult",
    "PrunedModel",
    "RcvlabError",
    "Result",
    "UnknownNameError",
    "VisualizeResult",
    "WeightsComparison",
    "WeightsError",
    "__version__",
    "available_models",
    "binary_head",
    "cam",
    "compare_cams",
    "compare_weights",
    "extract_features",
    "finetune",
    "layer_dims",
    "layer_profile",
    "load_model",
    "load_result",
    "open_client",
    "open_data",
    "probe_layers",
    "prune",
    "read_camelyon",
    "save_weights",
    "segment_nuclei",
    "tumour_set",
    "visualize",
]
