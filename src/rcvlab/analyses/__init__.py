"""Each paper experiment as a function returning a result object."""

from rcvlab.analyses.profile import layer_profile

__all__ = ["layer_profile"]
