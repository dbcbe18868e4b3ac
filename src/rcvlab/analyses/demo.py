"""The offline demo: the embedded scale set through two ImageNet-pretrained networks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from rcvlab.analyses.profile import layer_profile
from rcvlab.probe.result import ProfileResult
from rcvlab.report.run import write_profile_run
from rcvlab.runio import prepare_out

DEMO_NOTES = (
    "Data: the embedded scale set — real photographs shipped with scikit-image and "
    "scikit-learn (object crops pasted at exact, random area ratios onto crops of other real "
    "photographs, colour statistics matched and jittered). It is not ImageNet or PASCAL VOC: "
    "the placements are synthetic, so absolute R² values are not the papers'. Cues that may "
    "remain are the paste outline (feathered) and the resampling of the object crop.",
    "Baselines: 'random weights' is the same architecture with its own seeded initialisation "
    "(BatchNorm running statistics left at their defaults), 'shuffled measures' the pretrained "
    "features regressed on permuted scale ratios. e^(R²-1) below 1/e means worse than "
    "predicting the mean.",
)


def run_demo(
    out: str | os.PathLike[str] = "runs/demo",
    *,
    models: Sequence[str] = ("efficientnet_lite0", "mobilenet_v2"),
    n_per_class: int = 300,
    reps: int = 10,
    seed: int = 0,
    regressor: str = "ridge",
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    command: str = "",
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> list[ProfileResult]:
    """Profile each of ``models`` (ImageNet weights) on the embedded scale set and write the run.

    Returns
    -------
    list of ProfileResult
        One per model, in the order given (the first is ``profile.json``).
    """
    from rcvlab.data.scaleset import scaleset

    out_dir = prepare_out(out, force=force)
    data = scaleset(n_per_class=n_per_class, seed=seed)
    echo(f"embedded scale set: {len(data)} images, classes {sorted(set(data.classes.tolist()))}")
    results = []
    for name in models:
        t0 = time.perf_counter()
        res = layer_profile(
            name,
            data,
            weights="imagenet",
            regressor=regressor,
            reps=reps,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
            command=command,
        )
        best = res.score(res.best_layer)
        rnd = max(s.r2_mean for s in res.profiles["random"])
        echo(
            f"{name}: best layer {res.best_layer} R² {best.r2_mean:.3f}; random-weights peak "
            f"{rnd:.3f} ({time.perf_counter() - t0:.0f} s)"
        )
        results.append(res)
    write_profile_run(
        out_dir, results, title="rcvlab demo: where is object scale encoded?", notes=DEMO_NOTES
    )
    return results


__all__ = ["run_demo"]
