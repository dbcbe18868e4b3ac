"""Finetuning speed: training images per second per epoch, channels-last memory format or not.

:func:`rcvlab.finetune` (paper 004's training: single-logit head, SGD with Nesterov momentum,
forward + backward + update per batch of 32, the images preprocessed once and kept in
memory) on random uint8 patches, for EfficientNet-Lite0 and MobileNetV2 (random weights:
speed does not depend on the values) at a small input size. Each model is trained for one
epoch in both memory formats, interleaved (this VM's speed drifts), after one warm-up run
each; the best of ``--repeat`` is kept. Throughput is ``meta["train_images_per_second"]``:
training images over the time of the training passes (validation excluded); augmentation
is off unless ``--augment`` (it runs per image and would dominate on a CPU).

Last line (the first model): ``img_s=<contiguous> channels_last_img_s=<channels-last>
speedup=<channels-last / contiguous>``.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from rcvlab import load_model
from rcvlab.analyses.finetune import finetune
from rcvlab.data.base import ArrayImageSet
from rcvlab.features.extract import choose_device


def patches(n: int, size: int, seed: int = 0) -> ArrayImageSet:
    """``n`` random RGB patches, two classes alternating, 20 groups."""
    rng = np.random.default_rng(seed)
    images = list(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    classes = ["tumour" if i % 2 else "non-tumour" for i in range(n)]
    return ArrayImageSet(images, classes=classes, groups=[f"g{i % 20}" for i in range(n)])


def throughput(model, data, *, channels_last: bool, device, batch_size: int, augment: bool):
    r = finetune(
        model,
        data,
        epochs=1,
        batch_size=batch_size,
        device=device,
        channels_last=channels_last,
        augment=augment,
        val_fraction=0.2,
        lr=1e-4,
    )
    return float(r.meta["train_images_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    ap.add_argument("--n", type=int, default=320, help="images (a fifth go to validation)")
    ap.add_argument("--size", type=int, default=128, help="input size in pixels")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="take the best of this many runs")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    ap.add_argument("--augment", action="store_true", help="include the per-image augmentation")
    ap.add_argument("--quick", action="store_true", help="24 images of 48 px, best of 1")
    args = ap.parse_args()
    if args.quick:
        args.n, args.size, args.repeat = 24, 48, 1
    dev = choose_device(args.device)
    torch.manual_seed(0)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"device {dev}, threads {torch.get_num_threads()}, {args.n} images of {args.size} px, "
        f"batch {args.batch_size}, augment {args.augment}"
    )
    data = patches(args.n, args.size)
    first = None
    for name in args.models.split(","):
        model = load_model(name, "random", input_size=args.size)
        opts = {"device": dev, "batch_size": args.batch_size, "augment": args.augment}
        best = {False: 0.0, True: 0.0}
        for cl in (False, True):  # warm-up (allocator, cuDNN algorithm search)
            throughput(model, data, channels_last=cl, **opts)
        for _ in range(args.repeat):
            for cl in (False, True):
                best[cl] = max(best[cl], throughput(model, data, channels_last=cl, **opts))
        speedup = best[True] / best[False]
        print(
            f"{name}: contiguous {best[False]:.1f} img/s, channels-last {best[True]:.1f} img/s, "
            f"speed-up {speedup:.2f}"
        )
        if first is None:
            first = (best[False], best[True], speedup)
    assert first is not None
    print(f"img_s={first[0]:.2f} channels_last_img_s={first[1]:.2f} speedup={first[2]:.3f}")


if __name__ == "__main__":
    main()
