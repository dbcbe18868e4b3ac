"""A small reproduce result: two steps, one run and one skipped (NaN seconds)."""

from __future__ import annotations

import math

from rcvlab.reproduce.runner import ReproduceResult, StepRecord
from rcvlab.result import provenance


def example() -> ReproduceResult:
    return ReproduceResult(
        name="tiny",
        paper="000",
        title="two steps",
        config_hash="0" * 64,
        steps=(
            StepRecord("profile", "profile", "ran", 1.5, "steps/profile/profile.json", 32),
            StepRecord("transfer", "transfer", "skipped", math.nan, "", 0, "input not given"),
        ),
        meta=provenance(command="example", seed=0, inputs={"scale": "embedded:scaleset"}),
    )
