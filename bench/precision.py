"""fp32 against bf16 (or fp16) extraction: throughput, and what it does to the probe's R².

On the demo set (the embedded scale set, ``rcvlab demo``'s images: 4 classes x
``--n-per-class``) through ImageNet-pretrained networks (EfficientNet-Lite0 and
MobileNetV2, the offline ones): every named layer is extracted in fp32 and in the 16-bit
precision, and the demo's profile (per class, ridge, ``--reps`` splits, seed 0; and the
leave-one-class-out profile) is fitted on each. Reported per network: the extractor's
throughput in both precisions (the demo's pictures held in memory as uint8 pixels, so that
their synthesis is not timed; preprocessing included, no cache), the bare forward pass's
(preprocessed batches on the device, nothing captured), and the largest change of a
layer's mean R² between the two.

Random-weight networks are left out on purpose: their features vary so little between
images that 16-bit rounding can move them by as much as their own spread; pretrained
features are what the R² claim is about.

On a CPU without AMX or AVX512-BF16 (``grep -o 'amx[a-z_]*\\|avx512_bf16' /proc/cpuinfo``
prints nothing) bf16 is emulated and slower than fp32; run it with ``--device cuda`` on a
GPU, or on a CPU with AMX.

Last line: ``fp32_img_s=... bf16_img_s=... speedup=... max_r2_change=...`` (the first
network's throughput; the largest change over every network and layer of the per-class
profile), then ``bare_speedup=``, ``max_r2_change_loco=``, ``worst=<model:layer>``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import numpy as np
import torch

from rcvlab import extract_features, load_model
from rcvlab.data.scaleset import scaleset
from rcvlab.features.extract import check_precision_on, choose_device
from rcvlab.models.state import borrowed
from rcvlab.probe.profile import probe_layers


def r2_by_layer(feats, y, classes, split: str, reps: int) -> dict[str, float]:
    """The demo's profile (ridge, seed 0, no baselines): mean R² of every layer."""
    res = probe_layers(
        dict(feats), y, classes=classes, regressor="ridge", reps=reps, seed=0,
        shuffled=False, split=split,
    )  # fmt: skip
    return {s.layer: s.r2_mean for s in res.profiles["model"]}


def bare_img_s(model, data, dev, dtype, batch_size: int, n: int, repeat: int) -> float:
    """Best-of-``repeat`` throughput of the bare forward pass on ``n`` preprocessed images."""
    batches = [
        model.preprocessing([data.load(i) for i in range(i0, min(i0 + batch_size, n))])
        .contiguous(memory_format=torch.channels_last)
        .to(dev)
        for i0 in range(0, n, batch_size)
    ]
    ctx = contextlib.nullcontext if dtype is None else (lambda: torch.autocast(dev.type, dtype))
    best = np.inf
    with (
        borrowed(model.module, dev, channels_last=True) as module,
        torch.inference_mode(),
        ctx(),
    ):
        module(batches[0])
        for _ in range(repeat):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = time.perf_counter()
            for b in batches:
                module(b)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    ap.add_argument("--n-per-class", type=int, default=300, help="the demo's 300 by default")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    ap.add_argument("--low", default="bf16", choices=["bf16", "fp16"], help="16-bit precision")
    ap.add_argument("--repeat", type=int, default=3, help="best of, for the bare forward pass")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: MobileNetV2, 30 images per class, 3 reps (its R² changes mean nothing)",
    )
    args = ap.parse_args()
    if args.quick:
        args.models, args.n_per_class, args.reps, args.repeat = "mobilenet_v2", 30, 3, 1
    dev = choose_device(args.device)
    low = args.low
    dtype = check_precision_on(low, dev)
    data = scaleset(n_per_class=args.n_per_class, seed=0)
    y, classes = data.measure("scale_ratio"), data.classes
    n = len(data)
    pixels = np.stack([np.asarray(data.load(i)) for i in range(n)])
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    )
    print(f"demo set: {n} images, {args.reps} reps; fp32 against {low}")
    first: dict[str, float] = {}
    worst = (0.0, "")
    worst_loco = 0.0
    for name in args.models.split(","):
        model = load_model(name, "imagenet")
        # warm-up (kernel choice, first allocations) outside the timing
        for p in ("fp32", low):
            extract_features(
                model, pixels[: args.batch_size], precision=p, batch_size=args.batch_size,
                device=dev,
            )  # fmt: skip
        feats, speed = {}, {}
        for p in ("fp32", low):
            t = time.perf_counter()
            feats[p] = extract_features(
                model, pixels, precision=p, batch_size=args.batch_size, device=dev
            )
            speed[p] = n / (time.perf_counter() - t)
            if any(v.dtype != np.float32 for v in feats[p].values()):
                raise SystemExit(f"{p} features of {name} are not float32")
        n_bare = min(n, 4 * args.batch_size)
        bare = {
            p: bare_img_s(model, data, dev, t, args.batch_size, n_bare, args.repeat)
            for p, t in (("fp32", None), (low, dtype))
        }
        print(
            f"{name}: extractor fp32 {speed['fp32']:.1f} img/s, {low} {speed[low]:.1f} "
            f"({speed[low] / speed['fp32']:.2f}x); bare forward fp32 {bare['fp32']:.1f}, "
            f"{low} {bare[low]:.1f} ({bare[low] / bare['fp32']:.2f}x)"
        )
        if not first:
            first = {
                "fp32": speed["fp32"],
                "low": speed[low],
                "bare": bare[low] / bare["fp32"],
            }
        for split in ("per-class", "leave-one-class-out"):
            r2 = {p: r2_by_layer(feats[p], y, classes, split, args.reps) for p in feats}
            print(f"  {split} profile: layer, R² fp32, R² {low}, change")
            for layer, a in r2["fp32"].items():
                b = r2[low][layer]
                d = b - a
                print(f"    {layer:14s} {a:8.4f} {b:8.4f} {d:+.4f}")
                if split == "per-class" and np.isfinite(d) and abs(d) > worst[0]:
                    worst = (abs(d), f"{name}:{layer}")
                if split != "per-class" and np.isfinite(d):
                    worst_loco = max(worst_loco, abs(d))
        print(f"  largest change so far: {worst[0]:.4f} at {worst[1]}")
    print(
        f"fp32_img_s={first['fp32']:.2f} {low}_img_s={first['low']:.2f} "
        f"speedup={first['low'] / first['fp32']:.3f} max_r2_change={worst[0]:.4f} "
        f"bare_speedup={first['bare']:.3f} max_r2_change_loco={worst_loco:.4f} "
        f"worst={worst[1]}"
    )


if __name__ == "__main__":
    main()
