"""Pruning a network after the layer that encodes a concept best (transfer set-up)."""

from rcvlab.prune.prune import PrunedModel, PruneError, prune, prune_summary

__all__ = ["PruneError", "PrunedModel", "prune", "prune_summary"]
