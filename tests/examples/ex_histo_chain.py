"""A HistoChainResult assembled from the profile and transfer examples."""

from __future__ import annotations

import runpy
from pathlib import Path

from rcvlab.pipelines import HistoChainResult
from rcvlab.result import provenance

sibling = runpy.run_path(str(Path(__file__).with_name("_load.py")))["sibling"]


def example() -> HistoChainResult:
    prof = sibling("profile")
    return HistoChainResult(
        profiles=(prof,),
        pruned=({"model": "toy", "layer": prof.best_layer, "n_params": 10, "full_n_params": 20},),
        transfers=(sibling("transfer"),),
        meta=provenance(command="rcvlab demo --histo", seed=0, models=["toy"]),
    )
