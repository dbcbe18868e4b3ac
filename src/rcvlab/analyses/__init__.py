"""Each paper experiment as a function returning a result object.

* :func:`layer_profile` — where a concept is linearly encoded, layer by layer (part 1);
* :func:`transfer` — pruned vs full networks transferred to histopathology (part 2);
* :func:`resize_sweep`, :func:`noise_size` — input size versus object scale (part 3);
* :func:`sparsity`, :func:`alignment`, :func:`consistency`, :func:`relevance` — how the
  concept is encoded and whether it moves the decision (part 4);
* :func:`compare_weights` — concept RCVs under random, pretrained and finetuned weights
  (part 5).
"""

from rcvlab.analyses.alignment import AlignmentResult, alignment, alignment_from_arrays
from rcvlab.analyses.cam import CamComparison, CamResult, cam, compare_cams
from rcvlab.analyses.consistency import (
    ConsistencyResult,
    angle_between,
    consistency,
    consistency_from_arrays,
)
from rcvlab.analyses.finetune import FinetuneResult, finetune
from rcvlab.analyses.noise import NoiseSizeResult, noise_size
from rcvlab.analyses.profile import layer_profile
from rcvlab.analyses.relevance import RelevanceResult, relevance, relevance_from_arrays
from rcvlab.analyses.resize import ResizeSweepResult, resize_sweep
from rcvlab.analyses.sparsity import SparsityResult, sparsity, sparsity_from_arrays
from rcvlab.analyses.transfer import TransferResult, transfer
from rcvlab.analyses.visualize import VisualizeResult, rcv_direction, visualize
from rcvlab.analyses.weights import WeightsComparison, compare_weights

__all__ = [
    "AlignmentResult",
    "CamComparison",
    "CamResult",
    "ConsistencyResult",
    "FinetuneResult",
    "NoiseSizeResult",
    "RelevanceResult",
    "ResizeSweepResult",
    "SparsityResult",
    "TransferResult",
    "VisualizeResult",
    "WeightsComparison",
    "alignment",
    "alignment_from_arrays",
    "angle_between",
    "cam",
    "compare_cams",
    "compare_weights",
    "consistency",
    "consistency_from_arrays",
    "finetune",
    "layer_profile",
    "noise_size",
    "rcv_direction",
    "relevance",
    "relevance_from_arrays",
    "resize_sweep",
    "sparsity",
    "sparsity_from_arrays",
    "transfer",
    "visualize",
]
