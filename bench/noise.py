"""Noise-input experiment time, and the cost of corrected GAP relative to regular GAP.

1. The whole experiment (`rcvlab.analyses.noise.noise_size`) for InceptionV3 (random weights:
   the finding does not need pretraining, and speed does not depend on the values) with its
   defaults: the widths :data:`rcvlab.analyses.noise.DEFAULT_SIZES` (150 to 500 px, step 50),
   5 training + 20 test images, 10 repetitions, all 13 layers. Each image goes through the
   network once; both poolings are taken in that pass.
2. Extraction of 64 images at the model's own size (299 px) with ``pooling="gap"`` and with
   ``pooling="corrected-gap"`` once the masks are cached (the first corrected call computes
   them: one forward pass of a NaN-padded input, timed separately; 299 px is not among the
   experiment's widths, so that first call is a real computation). Interleaved, best of
   ``--repeat``.

Last line: ``noise_s=<experiment> overhead=<corrected/regular extraction time> mask_s=<one
mask computation>``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from rcvlab import extract_features, load_model
from rcvlab.analyses.noise import DEFAULT_SIZES, noise_size
from rcvlab.features.receptive import padding_masks
from rcvlab.sizes import parse_sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="inception_v3")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-experiment", action="store_true")
    args = ap.parse_args()

    m = load_model(args.model, "random", seed=0)
    sizes = parse_sizes(DEFAULT_SIZES)
    noise_s = float("nan")
    if not args.skip_experiment:
        t = time.perf_counter()
        res = noise_size(m, sizes=sizes, n_train=5, n_test=20, reps=args.reps, seed=0)
        noise_s = time.perf_counter() - t
        for e in res.layers:
            g, c = e.summary("gap"), e.summary("corrected-gap")
            cor = "no positions" if c["r2_mean"] is None else f"{c['r2_mean']:.3f}"
            print(f"  {e.layer:12s} regular {g['r2_mean']:.3f}  corrected {cor}")

    s = m.input_size
    if s in sizes:  # the mask timing below must be a first computation, not a cache hit
        raise SystemExit(f"{s} px is among the experiment's sizes; the mask timing needs another")
    images = np.random.default_rng(0).integers(0, 256, (args.n, s, s, 3), dtype=np.uint8)
    t = time.perf_counter()
    padding_masks(m.module, m.resolve(None), s)
    mask_s = time.perf_counter() - t
    extract_features(m, images[:16], pooling="corrected-gap")  # warm-up (masks cached)
    plain, corrected = [], []
    for _ in range(args.repeat):
        for pooling, store in (("gap", plain), ("corrected-gap", corrected)):
            t = time.perf_counter()
            extract_features(m, images, pooling=pooling)
            store.append(time.perf_counter() - t)
    overhead = min(corrected) / min(plain)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(
        f"noise experiment, {args.model}, sizes {sizes}, 5 train + 20 test x {args.reps} reps: "
        f"{noise_s:.1f} s"
    )
    print(f"masks for {len(m.resolve(None))} layers at {s}px: {mask_s:.2f} s (once, then cached)")
    print(
        f"extraction of {args.n} images: gap {min(plain):.2f} s, "
        f"corrected GAP {min(corrected):.2f} s"
    )
    print(f"noise_s={noise_s:.1f} overhead={overhead:.3f} mask_s={mask_s:.2f}")


if __name__ == "__main__":
    main()
