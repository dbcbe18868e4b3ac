"""Extraction speed: all layers in one pass vs the bare forward vs one truncated pass per layer.

InceptionV3 at 299 px, its 13 probed layers, the same 64 images (random weights: speed does
not depend on the values). The original code built one Keras model per layer, each running
the network up to that layer; that baseline is emulated by stopping the forward pass in a hook
once the layer's output is pooled. The ideal speed-up of one pass over that baseline is
sum_l FLOPs(up to l) / FLOPs(full), counted with torch's FlopCounterMode.

Last line: ``ratio=<extraction/bare throughput> speedup=<measured> ideal=<from FLOPs>``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from rcvlab import extract_features, load_model
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import gap


class _Stop(Exception):
    pass


def truncated_forward(model, x, spec):
    """Run the network until ``spec``'s output is pooled, then stop (one Keras sub-model)."""
    module = model.module
    target = module.get_submodule(spec.module)
    with capture(module, [spec], gap) as out:
        # registered after capture's hooks, so it fires once the output is pooled
        h = target.register_forward_hook(lambda m, i, o: (_ for _ in ()).throw(_Stop()))
        try:
            module(x)
        except _Stop:
            pass
        finally:
            h.remove()
        return out[spec.name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="inception_v3")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="take the best of this many runs")
    args = ap.parse_args()

    torch.manual_seed(0)
    m = load_model(args.model, "random")
    s = m.input_size
    images = np.random.default_rng(0).integers(0, 256, (args.n, s, s, 3), dtype=np.uint8)
    module = m.module.to(memory_format=torch.channels_last).eval()
    batches = [
        m.preprocessing(
            [__import__("PIL").Image.fromarray(im) for im in images[i : i + args.batch_size]]
        ).contiguous(memory_format=torch.channels_last)
        for i in range(0, args.n, args.batch_size)
    ]
    specs = m.resolve(None)

    def timed(f):
        t = time.perf_counter()
        f()
        return time.perf_counter() - t

    with torch.inference_mode():
        module(batches[0])  # warm-up: oneDNN picks its kernels on the first full batch
    bare_t, extract_t = [], []
    # interleaved, best of each: this VM's speed drifts by +-20 % between runs
    for _ in range(args.repeat):
        with torch.inference_mode():
            bare_t.append(timed(lambda: [module(b) for b in batches]))
        # extraction as users run it: decoding, preprocessing, hooks, pooling; no cache
        extract_t.append(timed(lambda: extract_features(m, images, batch_size=args.batch_size)))
    bare, extract = min(bare_t), min(extract_t)
    with torch.inference_mode():
        per_layer = timed(lambda: [truncated_forward(m, b, sp) for sp in specs for b in batches])

    x1 = batches[0][:1]
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            module(x1)
        full = fc.get_total_flops()
        partial = []
        for sp in specs:
            with FlopCounterMode(display=False) as fc:
                truncated_forward(m, x1, sp)
            partial.append(fc.get_total_flops())
    ideal = sum(partial) / full

    n = args.n
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(f"{args.model} @ {s}px, {len(specs)} layers, {n} images, batch {args.batch_size}")
    print(f"bare forward:            {n / bare:7.2f} img/s")
    print(f"all-layers extraction:   {n / extract:7.2f} img/s (incl. preprocessing and pooling)")
    print(f"one pass per layer:      {n / per_layer:7.2f} img/s (stopping at each layer)")
    print(f"FLOPs full pass: {full / 1e9:.2f} GFLOP/img; ideal speed-up {ideal:.2f}")
    print(f"ratio={bare / extract:.3f} speedup={per_layer / extract:.2f} ideal={ideal:.2f}")


if __name__ == "__main__":
    main()
