"""A ReuseChainResult assembled from the finetune, cam, visualize and weights examples."""

from __future__ import annotations

import runpy
from pathlib import Path

from rcvlab.pipelines.reuse import ReuseChainResult
from rcvlab.result import provenance

sibling = runpy.run_path(str(Path(__file__).with_name("_load.py")))["sibling"]


def example() -> ReuseChainResult:
    c = sibling("cam")
    return ReuseChainResult(
        models=("toy",),
        finetunes=(sibling("finetune"),),
        cams=(c,),
        reference_cams=(c,),
        visualizations=((sibling("visualize"),),),
        textures=(sibling("weights_comparison"),),
        meta=provenance(command="rcvlab demo --reuse", seed=0, models=["toy"]),
    )
