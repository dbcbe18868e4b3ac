"""Extraction speed: rcvlab against the bare forward and its peers, and one pass per layer.

InceptionV3 at 299 px, its 13 probed layers, the same 64 images (random weights: speed does
not depend on the values). Measured in the same run, interleaved (this VM's speed drifts),
best of ``--repeat``; every peer pools each layer's map by its spatial mean and returns
float32 numpy arrays, from the same preprocessed batches on the CPU:

- ``bare``: the forward pass alone, batches already on the device, nothing captured (the
  ceiling every extractor is compared to; ratios are throughput / bare);
- ``hooks``: a hand-written extractor, forward hooks taking the spatial mean;
- ``fx``: torchvision's ``create_feature_extractor`` on the same layers, then the mean
  (traced once, outside the timing);
- ``captum``: captum's ``LayerActivation`` on the same layers, then the mean;
- ``rcvlab (tensor)``: ``extract_features`` on the same preprocessed float tensor;
- ``rcvlab``: ``extract_features`` on the uint8 images, as users run it (reading and
  preprocessing included).

The module is put into channels-last format once, outside the timing, for everybody
(``extract_features`` would otherwise convert its weights on every call). ``--precision
bf16`` runs every peer under ``torch.autocast`` and rcvlab with ``precision="bf16"``.

The original code built one Keras model per layer, each running the network up to that
layer; that baseline is emulated by stopping the forward pass in a hook once the layer's
output is pooled. The ideal speed-up of one pass over that baseline is
sum_l FLOPs(up to l) / FLOPs(full), counted with torch's FlopCounterMode.

Last line: ``ratio=<rcvlab/bare throughput> speedup=<measured> ideal=<from FLOPs>
tensor_ratio=... hooks_ratio=... fx_ratio=... captum_ratio=... bare_img_s=...
rcvlab_img_s=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from rcvlab import extract_features, load_model
from rcvlab.features.extract import PRECISIONS, check_precision_on, choose_device
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


def pooled(y: torch.Tensor, kind: str) -> np.ndarray:
    """A layer's output as the peers hand it back: spatial mean (softmax for that kind)."""
    if kind == "softmax":
        y = torch.softmax(y.float(), dim=-1)
    elif y.ndim == 4:
        y = y.mean(dim=(2, 3), dtype=torch.float32)
    return y.float().cpu().numpy()


def peers(module, specs, dev, autocast) -> dict[str, Callable[[list[torch.Tensor]], list]]:
    """The peer extractors, each ``f(cpu_batches) -> [{layer: (n, d) array}, ...]``."""
    from captum.attr import LayerActivation
    from torchvision.models.feature_extraction import create_feature_extractor

    for s in specs:
        if s.kind not in ("output", "softmax") or s.reshape is not None:
            raise SystemExit(f"the peers handle plain module outputs only, not {s.name}")
    paths = list(dict.fromkeys(s.module for s in specs))
    fx = create_feature_extractor(module, return_nodes={p: p for p in paths})
    captum = LayerActivation(module, [module.get_submodule(p) for p in paths])

    def run(forward):
        def f(batches):
            res = []
            with torch.inference_mode(), autocast():
                for b in batches:
                    outs = forward(b.to(dev, non_blocking=True))
                    res.append({s.name: pooled(outs[s.module], s.kind) for s in specs})
            return res

        return f

    def hooks_forward(x):
        outs: dict[str, torch.Tensor] = {}
        hs = [
            module.get_submodule(p).register_forward_hook(
                lambda m, i, o, p=p: outs.__setitem__(p, o)
            )
            for p in paths
        ]
        try:
            module(x)
        finally:
            for h in hs:
                h.remove()
        return outs

    return {
        "hooks": run(hooks_forward),
        "fx": run(fx),
        "captum": run(lambda x: dict(zip(paths, captum.attribute(x), strict=True))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="inception_v3")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=6, help="take the best of this many runs")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    ap.add_argument("--quick", action="store_true", help="8 images, batch 4, best of 2")
    args = ap.parse_args()
    if args.quick:
        args.n, args.batch_size, args.repeat = 8, 4, 2
    dev = choose_device(args.device)
    dtype = check_precision_on(args.precision, dev)

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(dev.type, dtype=dtype)

    torch.manual_seed(0)
    m = load_model(args.model, "random")
    s = m.input_size
    images = np.random.default_rng(0).integers(0, 256, (args.n, s, s, 3), dtype=np.uint8)
    module = m.module.to(dev).to(memory_format=torch.channels_last).eval()
    pil = [Image.fromarray(im) for im in images]
    batches = [
        m.preprocessing(pil[i : i + args.batch_size]).contiguous(memory_format=torch.channels_last)
        for i in range(0, args.n, args.batch_size)
    ]
    tensor = torch.cat(batches)  # channels-last, as the peers get it
    on_dev = [b.to(dev) for b in batches]
    specs = m.resolve(None)
    others = peers(module, specs, dev, autocast)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def timed(f):
        sync()
        t = time.perf_counter()
        out = f()
        sync()
        return time.perf_counter() - t, out

    def bare():
        with torch.inference_mode(), autocast():
            for b in on_dev:
                module(b)

    kw = dict(batch_size=args.batch_size, device=dev, precision=args.precision)
    runs: dict[str, Callable[[], object]] = {
        "bare": bare,
        **{k: (lambda f=f: f(batches)) for k, f in others.items()},
        "rcvlab (tensor)": lambda: extract_features(m, tensor, **kw),
        "rcvlab": lambda: extract_features(m, images, **kw),
    }
    # warm-up: oneDNN / cuDNN pick their kernels on the first full batch
    outputs = {k: f() for k, f in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeat):
        for k, f in runs.items():
            times[k].append(timed(f)[0])
    best = {k: min(v) for k, v in times.items()}

    # every peer computes the same features (up to float rounding)
    ref = outputs["rcvlab"]
    worst = 0.0
    for k in others:
        for s_ in specs:
            got = np.concatenate([b[s_.name] for b in outputs[k]])  # type: ignore[attr-defined]
            want = ref[s_.name]  # type: ignore[index]
            worst = max(worst, float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12)))

    with torch.inference_mode():
        per_layer, _ = timed(lambda: [truncated_forward(m, b, sp) for sp in specs for b in on_dev])
        x1 = on_dev[0][:1]
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
        f"torch {torch.__version__}, device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    )
    print(
        f"{args.model} @ {s}px, {len(specs)} layers, {n} images, batch {args.batch_size}, "
        f"{args.precision}, best of {args.repeat}"
    )
    for k, t in best.items():
        print(f"{k:16s} {n / t:8.2f} img/s  ({best['bare'] / t:.3f} of bare)")
    print(f"one pass per layer: {n / per_layer:8.2f} img/s (stopping at each layer)")
    print(f"largest difference between the peers' and rcvlab's features: {worst:.1e} (relative)")
    print(f"FLOPs full pass: {full / 1e9:.2f} GFLOP/img; ideal speed-up {ideal:.2f}")
    r = {k: best["bare"] / t for k, t in best.items()}
    print(
        f"ratio={r['rcvlab']:.3f} speedup={per_layer / best['rcvlab']:.2f} ideal={ideal:.2f} "
        f"tensor_ratio={r['rcvlab (tensor)']:.3f} hooks_ratio={r['hooks']:.3f} "
        f"fx_ratio={r['fx']:.3f} captum_ratio={r['captum']:.3f} "
        f"bare_img_s={n / best['bare']:.2f} rcvlab_img_s={n / best['rcvlab']:.2f}"
    )


if __name__ == "__main__":
    main()
