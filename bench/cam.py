"""CAM speed: rcvlab's batched grad-CAM + grad-CAM++ against calling pytorch-grad-cam per image.

MobileNetV2 (random weights: speed does not depend on the values) at 224 px, its last
convolutional block (``features.18``), the same uint8 images, both methods, target class
``--target`` for every image. Measured in the same run, interleaved (this VM's speed drifts),
best of ``--repeat``:

- ``rcvlab``: :func:`rcvlab.cam` on the uint8 images, as users run it (preprocessing, one
  forward and one backward pass per batch for both methods, the backward stopping at the
  layer, upsampling; nuclei mass off);
- ``baseline``: the library as its README shows it, per image: ``with GradCAM(model,
  target_layers=[layer]) as c: c(input_tensor=x[None], targets=[...])``, then the same with
  ``GradCAMPlusPlus`` (one forward + backward per image and method), from the same
  preprocessed tensor (its preprocessing is not timed).

The normalised maps of both are compared (largest absolute difference printed).

Last line: ``maps_s=<rcvlab maps per second> baseline_maps_s=<...> speedup=<ratio>``
(a map is one image and one method).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from rcvlab import load_model
from rcvlab.analyses.cam import cam
from rcvlab.features.extract import choose_device


def baseline(model, x: torch.Tensor, layer: str, target: int, dev: torch.device) -> np.ndarray:
    """pytorch-grad-cam called directly, one image and one method at a time."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = model.module.to(dev)
    target_layer = module.get_submodule(layer)
    out = []
    for cls in (GradCAM, GradCAMPlusPlus):
        maps = []
        for i in range(len(x)):
            with cls(model=module, target_layers=[target_layer]) as c:
                maps.append(
                    c(input_tensor=x[i : i + 1].to(dev), targets=[ClassifierOutputTarget(target)])
                )
        out.append(np.concatenate(maps))
    module.to("cpu")
    return np.stack(out, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="take the best of this many runs")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    ap.add_argument("--quick", action="store_true", help="4 images at 128 px, best of 1")
    args = ap.parse_args()
    if args.quick:
        args.n, args.batch_size, args.size, args.repeat = 4, 4, 128, 1
    dev = choose_device(args.device)
    torch.manual_seed(0)
    model = load_model(args.model, "random", input_size=args.size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)
    x = model.preprocessing.normalise(torch.from_numpy(images).permute(0, 3, 1, 2))
    opts = {
        "method": "gradcam,gradcam++",
        "target": args.target,
        "batch_size": args.batch_size,
        "nuclei": False,
        "device": dev,
    }
    r = cam(model, images[:2], **opts)  # warm-up (imports, allocator)
    layer = r.module
    baseline(model, x[:1], layer, args.target, dev)
    best = {"rcvlab": np.inf, "baseline": np.inf}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        r = cam(model, images, **opts)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best["rcvlab"] = min(best["rcvlab"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = baseline(model, x, layer, args.target, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best["baseline"] = min(best["baseline"], time.perf_counter() - t0)
    diff = float(np.abs(r.all_normalised - ref).max())
    maps = 2 * args.n
    ours, theirs = maps / best["rcvlab"], maps / best["baseline"]
    print(
        f"{args.model} random weights, {args.size} px, layer {r.layer} ({layer}), {args.n} "
        f"images, batch {args.batch_size}, device {dev}, {platform.processor() or 'cpu'}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"rcvlab   {ours:8.2f} maps/s  ({best['rcvlab']:.2f} s)")
    print(f"baseline {theirs:8.2f} maps/s  ({best['baseline']:.2f} s)")
    print(f"largest difference between the normalised maps: {diff:.1e}")
    print(f"maps_s={ours:.3f} baseline_maps_s={theirs:.3f} speedup={ours / theirs:.2f}")


if __name__ == "__main__":
    main()
