"""Transfer cost: linear mode (features once, heads only) vs finetuning the whole network.

EfficientNet-Lite0 (ImageNet weights), the embedded histology set, variants pretrained,
scratch and pruned at ``--layer``. Finetuning is timed for one epoch per variant (one seed)
and extrapolated to ``--epochs`` x ``--seeds``; linear mode is timed in full with an empty
feature cache (feature extraction included).

Last line: ``linear_s=... finetune_epoch_s=... finetune_total_s=... speedup=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from rcvlab import load_model
from rcvlab.analyses.transfer import transfer
from rcvlab.data.histo import histoset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layer", default="block6b")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-slides", type=int, default=6)
    args = ap.parse_args()

    data = histoset(source="synthetic", n_slides=args.n_slides)
    m = load_model(args.model, "imagenet")
    variants = ["pretrained", "scratch", f"pruned:{args.layer}"]
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        transfer(m, data, variants, seeds=args.seeds, epochs=args.epochs, cache_dir=cache)
        linear = time.perf_counter() - t
    t = time.perf_counter()
    transfer(m, data, variants, seeds=1, epochs=1, mode="finetune")
    epoch = time.perf_counter() - t  # one epoch of each of the three variants
    total = epoch * args.epochs * args.seeds
    print(f"{args.model}, {len(data)} patches, {torch.get_num_threads()} threads")
    print(f"linear mode, {args.seeds} seeds x {args.epochs} epochs x 3 variants: {linear:.1f} s")
    print(
        f"finetune: one epoch of the 3 variants {epoch:.1f} s; x {args.epochs} epochs x "
        f"{args.seeds} seeds = {total:.0f} s (extrapolated)"
    )
    print(
        f"linear_s={linear:.1f} finetune_epoch_s={epoch:.1f} finetune_total_s={total:.0f} "
        f"speedup={total / linear:.1f}"
    )


if __name__ == "__main__":
    main()
