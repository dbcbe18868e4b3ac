"""Layer-wise probing with Regression Concept Vectors (linear probes of GAP features)."""

from rcvlab.probe.fit import RCV, REGRESSORS, RIDGE_ALPHAS, fit_rcv
from rcvlab.probe.insample import InsampleFit, insample_fit, insample_r2
from rcvlab.probe.profile import check_measure, measure_array, probe_layers
from rcvlab.probe.result import PROFILE_KINDS, SPLITS, LayerScore, ProfileResult
from rcvlab.probe.splits import repeated_splits
from rcvlab.probe.stats import mean_ci95, normalised_r2, pooled_ci95, r2_score, summarise

__all__ = [
    "PROFILE_KINDS",
    "RCV",
    "REGRESSORS",
    "RIDGE_ALPHAS",
    "SPLITS",
    "InsampleFit",
    "LayerScore",
    "ProfileResult",
    "check_measure",
    "fit_rcv",
    "insample_fit",
    "insample_r2",
    "mean_ci95",
    "measure_array",
    "normalised_r2",
    "pooled_ci95",
    "probe_layers",
    "r2_score",
    "repeated_splits",
    "summarise",
]
