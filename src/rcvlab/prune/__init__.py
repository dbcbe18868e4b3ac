"""Pruning a network after the layer that encodes a concept best (transfer set-up)."""

from rcvlab.prune.prune import PrunedModel, PruneError, check_prune_layer, prune, prune_summary

__all__ = ["PruneError", "PrunedModel", "check_prune_layer", "prune", "prune_summary"]
