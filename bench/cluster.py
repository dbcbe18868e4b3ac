"""Extraction on a Dask LocalCluster: one process vs 1 and 2 local workers.

EfficientNet-Lite0 (ImageNet weights) at 224 px, all its probed layers, the same images in
all three runs, each into a fresh cache folder (the cluster needs one; the single process
writes one too, so the comparison is like with like). The single process runs with torch's
default thread count; each worker with one thread (``threads_per_worker=1``), so on a
machine with C cores the fair ideal of k workers is k single-thread processes: the
parallel efficiency is ``w2 / (2 * w1)``. Each cluster is warmed up first (worker start,
imports, the first model load are not counted); with CUDA, each worker takes one GPU.

Last line: ``single_img_s=... w1_img_s=... w2_img_s=... speedup=<w2/w1> efficiency=<speedup/2>``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

from rcvlab import extract_features, load_model
from rcvlab.distributed import open_client


def timed_extraction(model, images, batch_size: int, repeat: int, client=None) -> float:
    """Best seconds of ``repeat`` extractions, each into a new cache folder."""
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="rcvlab-bench-") as root:
            t = time.perf_counter()
            f = extract_features(
                model, images, batch_size=batch_size, cache_dir=root, client=client
            )
            best = min(best, time.perf_counter() - t)
            if f.n_computed != len(images):
                raise RuntimeError(f"computed {f.n_computed} of {len(images)} images")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--input-size", type=int, default=None, help="default: the model's")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="take the best of this many runs")
    ap.add_argument(
        "--quick", action="store_true", help="32 images at 96 px, one run: checks it works"
    )
    args = ap.parse_args()
    if args.quick:
        args.n, args.input_size, args.repeat = 32, 96, 1

    torch.manual_seed(0)
    m = load_model(args.model, args.weights, input_size=args.input_size)
    s = m.input_size
    images = np.random.default_rng(0).integers(0, 256, (args.n, s, s, 3), dtype=np.uint8)
    warm = images[: 2 * args.batch_size]

    extract_features(m, warm, batch_size=args.batch_size)  # oneDNN picks its kernels
    single = timed_extraction(m, images, args.batch_size, args.repeat)
    per_workers = {}
    for k in (1, 2):
        with open_client(f"local:{k}") as client:
            timed_extraction(m, warm, args.batch_size, 1, client)  # imports, first load
            per_workers[k] = timed_extraction(m, images, args.batch_size, args.repeat, client)

    n = args.n
    single_ips, w1, w2 = n / single, n / per_workers[1], n / per_workers[2]
    speedup = w2 / w1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, {gpus} GPU(s), "
        f"torch {torch.__version__}"
    )
    print(
        f"{args.model} ({args.weights}) @ {s}px, {len(m.resolve(None))} layers, {n} images, "
        f"batch {args.batch_size}, best of {args.repeat}"
    )
    print(f"single process:   {single_ips:7.2f} img/s ({torch.get_num_threads()} threads)")
    print(f"1 local worker:   {w1:7.2f} img/s (1 thread)")
    print(f"2 local workers:  {w2:7.2f} img/s (1 thread each)")
    print(f"speed-up 2 vs 1 worker {speedup:.2f}, parallel efficiency {speedup / 2:.2f}")
    print(f"2 workers vs the single process: {w2 / single_ips:.2f}")
    print(
        f"single_img_s={single_ips:.2f} w1_img_s={w1:.2f} w2_img_s={w2:.2f} "
        f"speedup={speedup:.2f} efficiency={speedup / 2:.2f}"
    )


if __name__ == "__main__":
    main()
