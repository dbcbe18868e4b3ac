"""A DemoResult assembled from the other examples: two profiles and the encoding results."""

from __future__ import annotations

import runpy
from pathlib import Path

from rcvlab.pipelines import DemoResult
from rcvlab.result import provenance

sibling = runpy.run_path(str(Path(__file__).with_name("_load.py")))["sibling"]


def example() -> DemoResult:
    prof = sibling("profile")
    return DemoResult(
        profiles=(prof, prof.with_meta(model="toy2")),
        sparsity=sibling("sparsity"),
        alignment=sibling("alignment"),
        consistency=None,
        meta=provenance(command="rcvlab demo", seed=0, models=["toy", "toy2"]),
    )
