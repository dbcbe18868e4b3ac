"""Figures of layer-wise concept profiles (pure: they build figures, never write files)."""

from rcvlab.viz.profile import (
    ERRORBAR_NOTE,
    model_label,
    normalised,
    normalised_ci95,
    plot_profile,
    plot_profiles,
    plot_split_comparison,
)

__all__ = [
    "ERRORBAR_NOTE",
    "model_label",
    "normalised",
    "normalised_ci95",
    "plot_profile",
    "plot_profiles",
    "plot_split_comparison",
]
