"""What the papers' real scale costs: InceptionV3 features of 1.28 M ImageNet images.

Two rates are measured on this machine, then combined into an estimate for N devices:

* the network: rcvlab's all-layer extraction (InceptionV3, its 13 probed layers, GAP in the
  hooks, random weights: speed does not depend on the values) from already preprocessed
  float32 tensors at 299 px, in fp32 and in bf16 (``precision=``), on ``--device``;
* the input: decoding a JPEG of ImageNet's typical size (500 x 375, quality 90) and
  preprocessing it as rcvlab does (resize to 299, normalise), per CPU core;
* and both together: the whole extraction from JPEG files on disk, as a user's folder runs
  (several batches decoded at once on a GPU, :func:`rcvlab.features.extract.load_threads`).

A device is fed by the cores beside it: a worker reaches ``min(network rate, cores x decode
rate)``. The estimate for 1.28 M images on N such workers is ``1.28e6 / (N x that rate)``.

Usage: ``python bench/scale_estimate.py [--device cuda] [--n 512] [--batch-size 128]
[--cores-per-device 8] [--devices 1,4,8]``. Last line:
``fp32_img_s=... bf16_img_s=... decode_img_s_per_core=... hours_1dev_fp32=... hours_1dev_bf16=...``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from rcvlab import extract_features, load_model
from rcvlab.data.base import FileImageSet

N_IMAGENET = 1_281_167


def network_rate(model, device: str, n: int, batch_size: int, precision: str, repeat: int):
    """Images per second of the all-layer extraction from preprocessed float tensors."""
    s = model.input_size
    x = torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(0))
    extract_features(
        model, x[:batch_size], device=device, batch_size=batch_size, precision=precision
    )  # warm-up: kernels, autotuning, allocator
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        extract_features(model, x, device=device, batch_size=batch_size, precision=precision)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return n / best


def photo_jpegs(k: int = 8) -> list[bytes]:
    """``k`` photo-like JPEGs of ImageNet's typical size (500 x 375, quality 90)."""
    rng = np.random.default_rng(0)
    # A smooth picture with grain (pure noise compresses unlike photographs).
    yy, xx = np.mgrid[0:375, 0:500]
    base = np.stack([np.sin(xx / 17.0), np.cos(yy / 23.0), np.sin((xx + yy) / 31.0)], -1)
    out = []
    for _ in range(k):
        arr = ((base + 0.2 * rng.standard_normal(base.shape)) * 60 + 128).clip(0, 255)
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def file_rate(model, device: str, n: int, batch_size: int, precision: str) -> float:
    """Images per second of the whole extraction from JPEG files on disk (decode, resize,
    normalise, forward, pool), as a user's ImageNet folder runs."""
    jpegs = photo_jpegs()
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(n):
            p = os.path.join(d, f"{i:05d}.jpg")
            with open(p, "wb") as f:
                f.write(jpegs[i % len(jpegs)])
            paths.append(p)
        data = FileImageSet(paths, {})
        extract_features(
            model,
            FileImageSet(paths[:batch_size], {}),
            device=device,
            batch_size=batch_size,
            precision=precision,
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        extract_features(model, data, device=device, batch_size=batch_size, precision=precision)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t)


def decode_rate(model, n: int = 64) -> float:
    """JPEG decode + rcvlab preprocessing, images per second on one core."""
    torch.set_num_threads(1)
    jpegs = photo_jpegs()
    t = time.perf_counter()
    for i in range(n):
        im = Image.open(io.BytesIO(jpegs[i % len(jpegs)])).convert("RGB")
        model.preprocessing([im], mode="resize")
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores-per-device", type=int, default=8)
    ap.add_argument("--devices", default="1,4,8")
    ap.add_argument("--quick", action="store_true", help="16 images, batch 8, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.n, args.batch_size, args.repeat = 16, 8, 1

    torch.manual_seed(0)
    model = load_model("inception_v3", "random")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(f"device {args.device} ({name}), torch {torch.__version__}, {os.cpu_count()} CPUs")
    threads = torch.get_num_threads()
    rates = {}
    for precision in ("fp32", "bf16"):
        rates[precision] = network_rate(
            model, args.device, args.n, args.batch_size, precision, args.repeat
        )
        print(
            f"network {precision}: {rates[precision]:.1f} img/s "
            f"({args.n} images, batch {args.batch_size}, best of {args.repeat})"
        )
    files = {}
    for precision in ("fp32", "bf16"):
        files[precision] = file_rate(model, args.device, args.n, args.batch_size, precision)
        print(f"from JPEG files {precision}: {files[precision]:.1f} img/s (decode included)")
    torch.set_num_threads(threads)
    dec = decode_rate(model)
    print(f"JPEG decode + preprocessing: {dec:.1f} img/s per core")
    feed = dec * args.cores_per_device
    print(f"\n1.28 M images, {args.cores_per_device} decoding cores per device:")
    hours = {}
    for p in ("fp32", "bf16"):
        per_dev = min(rates[p], feed)
        bound = "network" if rates[p] <= feed else "decode"
        for k in [int(v) for v in args.devices.split(",")]:
            h = N_IMAGENET / (k * per_dev) / 3600
            hours[(p, k)] = h
            print(f"  {p}, {k} device(s): {per_dev * k:8.0f} img/s -> {h:6.2f} h ({bound}-bound)")
    print(
        f"fp32_img_s={rates['fp32']:.1f} bf16_img_s={rates['bf16']:.1f} "
        f"decode_img_s_per_core={dec:.1f} files_fp32_img_s={files['fp32']:.1f} "
        f"files_bf16_img_s={files['bf16']:.1f} hours_1dev_fp32={hours[('fp32', 1)]:.2f} "
        f"hours_1dev_bf16={hours[('bf16', 1)]:.2f}"
    )


if __name__ == "__main__":
    main()
