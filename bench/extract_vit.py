"""Extraction speed on transformers: all layers in one pass vs the bare forward.

timm ViT-S/16 (12 token blocks, ``NLC`` with a class token) and Swin-T (4 channels-last
``NHWC`` stages) at 224 px, random weights (speed does not depend on the values), every
named layer of each, the same images. Extraction is timed as users run it: decoding,
preprocessing, hooks, layout handling and pooling, no cache.

Last line: ``vit_ratio=<extraction/bare throughput> swin_ratio=<same for Swin-T>``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from PIL import Image

from rcvlab import extract_features, load_model

MODELS = {"vit": "timm:vit_small_patch16_224", "swin": "timm:swin_tiny_patch4_window7_224"}


def bench(name: str, n: int, batch_size: int, repeat: int) -> tuple[float, float, int]:
    """Best-of-``repeat`` seconds of the bare forward and of extraction, and the layer count."""
    m = load_model(name, "random")
    s = m.input_size
    images = np.random.default_rng(0).integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    module = m.module.eval()
    plain = [
        m.preprocessing([Image.fromarray(im) for im in images[i : i + batch_size]])
        for i in range(0, n, batch_size)
    ]
    last = [b.contiguous(memory_format=torch.channels_last) for b in plain]

    def timed(f) -> float:
        t = time.perf_counter()
        f()
        return time.perf_counter() - t

    def bare(batches, fmt) -> float:
        module.to(memory_format=fmt)
        with torch.inference_mode():
            module(batches[0])  # warm-up
            return timed(lambda: [module(b) for b in batches])

    bare_t, extract_t = [], []
    # interleaved, best of each (this VM's speed drifts between runs); the bare forward in
    # whichever memory format is faster for this network
    for _ in range(repeat):
        bare_t.append(min(bare(plain, torch.contiguous_format), bare(last, torch.channels_last)))
        module.to(memory_format=torch.contiguous_format)
        extract_t.append(timed(lambda: extract_features(m, images, batch_size=batch_size)))
    return min(bare_t), min(extract_t), len(m.layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2, help="take the best of this many runs")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; {args.n} images, batch {args.batch_size}"
    )
    ratios = {}
    for key, name in MODELS.items():
        bare, extract, n_layers = bench(name, args.n, args.batch_size, args.repeat)
        ratios[key] = bare / extract
        print(
            f"{name} @ 224px, {n_layers} layers: bare {args.n / bare:6.2f} img/s, "
            f"all-layers extraction {args.n / extract:6.2f} img/s"
        )
    print(" ".join(f"{k}_ratio={v:.3f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
