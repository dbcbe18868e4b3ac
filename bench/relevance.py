"""Relevance: one forward + backward pass for features and gradients vs extraction + gradients.

MobileNetV2 (random weights: speed does not depend on the values), 64 images at 128 px,
layer ``features.7``, batch 16. ``two`` is what relevance did before: ``extract_features``
for the RCV's features, then the gradient pass; ``one`` is
:func:`rcvlab.probe.sensitivity.gradient_pass`, which takes the GAP features from the same
forward pass. Interleaved, best of ``--repeat``.

Last line: ``one_s=... two_s=... speedup=...``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rcvlab import extract_features, load_model
from rcvlab.probe.sensitivity import gradient_pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.n)]
    m = load_model("mobilenet_v2", "random", input_size=args.size)
    gradient_pass(m, imgs[:4], "features.7", 1)  # warm-up
    one, two = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        extract_features(m, imgs, ["features.7"], batch_size=16)
        gradient_pass(m, imgs, "features.7", 1, batch_size=16)
        two.append(time.perf_counter() - t)
        t = time.perf_counter()
        gradient_pass(m, imgs, "features.7", 1, batch_size=16)
        one.append(time.perf_counter() - t)
    print(f"mobilenet_v2 features.7, {args.n} images at {args.size} px")
    print(f"extraction + gradient pass: {min(two):.2f} s; one pass: {min(one):.2f} s")
    print(f"one_s={min(one):.2f} two_s={min(two):.2f} speedup={min(two) / min(one):.2f}")


if __name__ == "__main__":
    main()
