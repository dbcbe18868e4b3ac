"""Benchmark: ``probe_layers`` against the naive per-fit statsmodels OLS.

Synthetic GAP-like features for 13 layers (d from 64 to 2048, n = 441 images, the paper's
albatross class size), a measure planted in a low-rank latent space, and a softmax-like last
layer (rows summing to 1: an ill-conditioned design). ``probe_layers(reps=25,
shuffled=False)`` is timed, then the naive way on the same splits: for each layer and
repetition, ``StandardScaler`` on the training split and ``statsmodels
OLS(y, add_constant(Z)).fit()`` (its default ``pinv`` method). The naive way is slow, so it
runs on a subset of repetitions and its time is extrapolated to all of them (said so in the
output); the R² of the two on those repetitions are compared.

With ``--min-std M`` both sides use the standardisation guard (the naive side clips
``StandardScaler``'s scale at ``M`` x the median std of the non-constant columns by hand).

Usage: ``python bench/probe.py [--quick] [--reps 25] [--baseline-reps 3] [--min-std M]``. The
last line is ``time_s=... baseline_s=... speedup=...``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import statsmodels.api as sm
from sklearn.preprocessing import StandardScaler

from rcvlab.probe import probe_layers, r2_score, repeated_splits

DIMS = (64, 256, 288, 288, 768, 768, 768, 768, 1280, 2048, 2048, 1000, 1000)
N_IMAGES = 441


def make_features(
    n: int = N_IMAGES, dims: tuple[int, ...] = DIMS, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Float32 features whose linear encoding of ``y`` rises then falls with depth."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.02, 0.9, n)
    latent = rng.standard_normal((n, 32))
    latent[:, 0] = (y - y.mean()) / y.std()
    feats: dict[str, np.ndarray] = {}
    for i, d in enumerate(dims):
        strength = np.sin(np.pi * (i + 1) / (len(dims) + 1))  # peaks mid-network
        mix = rng.standard_normal((32, d))
        mix[0] *= 0.3 * strength
        X = np.maximum(latent @ mix + 2.0 * rng.standard_normal((n, d)), 0)  # ReLU-like
        if i == len(dims) - 1:  # softmax of the previous layer's logits
            logits = feats[f"layer{i - 1:02d}"].astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            X = e / e.sum(axis=1, keepdims=True)
        feats[f"layer{i:02d}"] = X.astype(np.float32)
    return feats, y


def naive_r2(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    min_std: float | None = None,
) -> float:
    """One repetition the straightforward way (statsmodels OLS on standardised features)."""
    sc = StandardScaler().fit(X[train])
    if min_std:
        std = np.sqrt(sc.var_)
        varying = std > 0
        sc.scale_ = np.where(varying, np.maximum(std, min_std * np.median(std[varying])), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.OLS(y[train], sm.add_constant(sc.transform(X[train]))).fit()
        pred = res.predict(sm.add_constant(sc.transform(X[test]), has_constant="add"))
    return r2_score(y[test], pred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 repetitions, 1 naive repetition")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--baseline-reps", type=int, default=3, help="naive reps actually run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument("--min-std", type=float, default=None, help="standardisation guard")
    args = ap.parse_args()
    reps = 5 if args.quick else args.reps
    base_reps = 1 if args.quick else min(args.baseline_reps, reps)

    feats, y = make_features(seed=args.seed)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} CPUs available")
    print(f"data: n={y.size}, {len(feats)} layers, d={list(DIMS)}, reps={reps}, OLS")

    probe_layers({"w": feats["layer00"]}, y, reps=1, shuffled=False)  # warm-up (imports)
    t0 = time.perf_counter()
    res = probe_layers(
        feats,
        y,
        reps=reps,
        shuffled=False,
        seed=args.seed,
        n_jobs=args.n_jobs,
        min_std=args.min_std,
    )
    ours = time.perf_counter() - t0
    print(f"probe_layers: {ours:.2f} s for {len(feats) * reps} fits")
    for s in res.profiles["model"]:
        print(
            f"  {s.layer}  d={s.dim:5d}  R2 {s.r2_mean:8.3f} +- {s.r2_std:.3f}"
            f"  [{s.r2_ci95[0]:.3f}, {s.r2_ci95[1]:.3f}]  median {s.r2_median:8.3f}"
            f"  constant={s.n_constant} floored={s.n_floored}"
        )

    # The same splits as probe_layers draws them (one SeedSequence child per class).
    (child,) = np.random.SeedSequence(args.seed).spawn(1)
    splits = repeated_splits(y.size, reps, 0.3, child.spawn(2)[0])[:base_reps]
    t0 = time.perf_counter()
    max_diff = 0.0
    for name, X in feats.items():
        for r, (tr, te) in enumerate(splits):
            r2 = naive_r2(X.astype(np.float64), y, tr, te, args.min_std)
            max_diff = max(max_diff, abs(r2 - res.score(name).r2[r]))
    measured = time.perf_counter() - t0
    baseline = measured * reps / base_reps
    print(
        f"naive statsmodels OLS: {measured:.2f} s for {base_reps} of {reps} repetitions "
        f"x {len(feats)} layers; extrapolated to {reps} repetitions: {baseline:.1f} s"
    )
    print(f"max |R2 difference| on those repetitions: {max_diff:.2e}")
    print(f"time_s={ours:.2f} baseline_s={baseline:.1f} speedup={baseline / ours:.1f}")


if __name__ == "__main__":
    main()
