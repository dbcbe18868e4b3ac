"""Activation-maximisation speed: seconds per channel at 128 px, steps per second, and the
gain of optimising several channels as one batch over one channel at a time.

For each model (MobileNetV2 and EfficientNet-Lite0 by default), ``--channels`` channels of
one layer are optimised for ``--steps`` steps (the short mode: one stage, no TV; the cost
of a step does not depend on the stage's lr or TV), first as one batch (``batch=k``), then
one at a time (``batch=1``), with the same seed: the images are the same (each image's
random draws depend only on the seed and its channel), only the time differs. A one-step
run before the timing warms the model up. The paper's full schedule is 3,584 steps; the
seconds per channel for it are extrapolated from the measured step rate.

Random weights by default (the speed does not depend on the values; ``--weights imagenet``
works where the weights are installed).

Last line: ``s_per_channel=<full schedule, batched, first model> steps_s=<batched steps per
second, first model> speedup=<one at a time / batched, first model>`` plus the same per
model.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from rcvlab import load_model
from rcvlab.analyses.visualize import PAPER_SCHEDULE, visualize
from rcvlab.features.extract import choose_device

DEFAULT_LAYERS = {"mobilenet_v2": "features.14", "efficientnet_lite0": "block6a"}
"""A deep layer of each default model (the paper shows mixed5b-mixed7c of InceptionV3)."""
FULL_STEPS = sum(s.steps for s in PAPER_SCHEDULE)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    model, layer: str, channels: list[int], *, steps: int, size: int, batch: int, device
) -> float:
    """Wall seconds of one visualize call."""
    _sync(device)
    t0 = time.perf_counter()
    visualize(model, layer, channels, steps=steps, size=size, batch=batch, device=device, seed=0)
    _sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--layer", default=None, help="default: a deep layer of each model")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--quick", action="store_true", help="2 channels, 3 steps, 64 px, one model"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.channels, args.steps, args.size = 2, 3, 64
        args.models = args.models.split(",")[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {device}; {args.channels} channels, "
        f"{args.steps} steps, {args.size} px"
    )
    out: dict[str, dict[str, float]] = {}
    for name in args.models.split(","):
        model = load_model(name, args.weights)
        layer = args.layer or DEFAULT_LAYERS.get(name, model.layers[-3])
        channels = list(range(args.channels))
        timed(model, layer, channels[:1], steps=1, size=args.size, batch=1, device=device)
        batched = timed(
            model,
            layer,
            channels,
            steps=args.steps,
            size=args.size,
            batch=len(channels),
            device=device,
        )
        single = timed(
            model, layer, channels, steps=args.steps, size=args.size, batch=1, device=device
        )
        k = len(channels)
        row = {
            "s_per_channel": batched / k / args.steps * FULL_STEPS,
            "steps_s": args.steps / batched,
            "single_s_per_channel": single / k / args.steps * FULL_STEPS,
            "speedup": single / batched,
        }
        out[name] = row
        print(
            f"{name} {layer}: batch of {k}: {batched:.2f} s ({row['steps_s']:.2f} steps/s, "
            f"{k * row['steps_s']:.1f} image-steps/s); one at a time: {single:.2f} s; "
            f"full {FULL_STEPS}-step schedule: {row['s_per_channel']:.1f} s/channel batched, "
            f"{row['single_s_per_channel']:.1f} s/channel alone; speedup {row['speedup']:.2f}"
        )
    first = out[next(iter(out))]
    extra = " ".join(
        f"{n}_s_per_channel={r['s_per_channel']:.3g} {n}_steps_s={r['steps_s']:.3g} "
        f"{n}_speedup={r['speedup']:.3g}"
        for n, r in out.items()
    )
    print(
        f"s_per_channel={first['s_per_channel']:.3g} steps_s={first['steps_s']:.3g} "
        f"speedup={first['speedup']:.3g} {extra}"
    )
    return out


if __name__ == "__main__":
    main()
