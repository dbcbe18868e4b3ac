"""Benchmark: ``probe_layers`` against the naive per-fit way (statsmodels OLS or RidgeCV).

Synthetic GAP-like features for 13 layers (d from 64 to 2048, n = 441 images, the paper's
albatross class size), a measure planted in a low-rank latent space, and a softmax-like last
layer (rows summing to 1: an ill-conditioned design).

``--regressor ols`` (the default): ``probe_layers(reps=25, shuffled=False)`` is timed, then the
naive way on the same splits: for each layer and repetition, ``StandardScaler`` on the
training split and ``statsmodels OLS(y, add_constant(Z)).fit()`` (its default ``pinv``
method).

``--regressor ridge``: ``probe_layers(reps=25, regressor="ridge")`` with the shuffled
baseline (alpha chosen per fit by leave-one-out among ``RIDGE_ALPHAS``) is timed, then
scikit-learn's way per fit on the same splits and the same permutations: for each layer,
repetition and target (the measure and its shuffled copy), ``StandardScaler`` on the training
split, ``RidgeCV(alphas=RIDGE_ALPHAS).fit`` and ``predict``. The chosen alphas and the R² of
both profiles are compared.

The naive way is slow, so it runs on a subset of repetitions and its time is extrapolated to
all of them (said so in the output); the R² of the two on those repetitions are compared.
With ``--min-std M`` both sides use the standardisation guard (the naive side clips
``StandardScaler``'s scale at ``M`` x the median std of the non-constant columns by hand).
``--device cuda`` also times the batched float64 torch kernel
(:func:`rcvlab.probe.kernels.ridge_split_predictions_torch`) on that device for the ridge
profile and compares its R² with the CPU ones.

``--single-thread`` runs both sides on one thread (``n_jobs=1``, BLAS limited to one thread
for the baseline too): the per-fit arithmetic compared like with like.

Usage: ``python bench/probe.py [--quick] [--regressor ols|ridge] [--reps 25]
[--baseline-reps 3] [--min-std M] [--device cuda] [--single-thread]``. The last line is ``time_s=...
baseline_s=... speedup=...``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import statsmodels.api as sm
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from rcvlab.probe import probe_layers, r2_score, repeated_splits
from rcvlab.probe.fit import RIDGE_ALPHAS

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


def _scaler(X: np.ndarray, min_std: float | None) -> StandardScaler:
    sc = StandardScaler().fit(X)
    if min_std:
        std = np.sqrt(sc.var_)
        varying = std > 0
        sc.scale_ = np.where(varying, np.maximum(std, min_std * np.median(std[varying])), 1.0)
    return sc


def naive_ridge(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    min_std: float | None = None,
) -> tuple[float, float]:
    """One fit scikit-learn's way: ``RidgeCV`` on standardised features; (R², alpha)."""
    sc = _scaler(X[train], min_std)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(sc.transform(X[train]), y[train])
    return r2_score(y[test], model.predict(sc.transform(X[test]))), float(model.alpha_)


def naive_r2(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    min_std: float | None = None,
) -> float:
    """One repetition the straightforward way (statsmodels OLS on standardised features)."""
    sc = _scaler(X[train], min_std)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.OLS(y[train], sm.add_constant(sc.transform(X[train]))).fit()
        pred = res.predict(sm.add_constant(sc.transform(X[test]), has_constant="add"))
    return r2_score(y[test], pred)


def shuffled_measures(y: np.ndarray, reps: int, seed: int) -> tuple[list, list[np.ndarray]]:
    """The splits and shuffled measures ``probe_layers`` draws for a pooled profile."""
    (child,) = np.random.SeedSequence(seed).spawn(1)
    split_seed, shuffle_seed = child.spawn(2)
    splits = repeated_splits(y.size, reps, 0.3, split_seed)
    rng = np.random.default_rng(shuffle_seed)
    return splits, [y[rng.permutation(y.size)] for _ in splits]


def time_device(
    feats: dict[str, np.ndarray], y: np.ndarray, reps: int, seed: int, res, device: str, min_std
) -> None:
    """The batched torch ridge kernel on ``device``: time and agreement with the CPU R²."""
    from rcvlab.probe.kernels import ridge_split_predictions_torch, torch_device_available

    if not torch_device_available(device):
        print(f"device {device}: not available here, skipped")
        return
    splits, shuffled = shuffled_measures(y, reps, seed)
    train = [tr for tr, _ in splits]
    test = [te for _, te in splits]
    Ytr = [np.column_stack([y[tr], ys[tr]]) for (tr, _), ys in zip(splits, shuffled, strict=True)]
    Yte = np.stack(
        [np.column_stack([y[te], ys[te]]) for (_, te), ys in zip(splits, shuffled, strict=True)]
    )
    X0 = feats["layer00"]
    ridge_split_predictions_torch(X0, train, test, Ytr, RIDGE_ALPHAS, device=device)  # warm-up
    t0 = time.perf_counter()
    out = {
        name: ridge_split_predictions_torch(
            X, train, test, Ytr, RIDGE_ALPHAS, min_std=min_std, device=device
        )
        for name, X in feats.items()
    }
    took = time.perf_counter() - t0
    diff = 0.0
    for name, o in out.items():
        for col, kind in enumerate(("model", "shuffled")):
            r2 = [r2_score(Yte[r, :, col], o.predictions[r, :, col]) for r in range(reps)]
            diff = max(diff, float(np.max(np.abs(np.array(r2) - res.score(name, kind).r2))))
    print(
        f"torch kernel on {device}: {took:.2f} s for {len(feats)} layers x {reps} repetitions "
        f"x 2 targets; max |R2 difference| against the CPU profile {diff:.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 repetitions, 1 naive repetition")
    ap.add_argument("--regressor", choices=("ols", "ridge"), default="ols")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--baseline-reps", type=int, default=3, help="naive reps actually run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument("--min-std", type=float, default=None, help="standardisation guard")
    ap.add_argument("--device", default=None, help="also time the torch ridge kernel there")
    ap.add_argument(
        "--single-thread",
        action="store_true",
        help="one thread on both sides (n_jobs=1; the baseline's BLAS limited to 1 thread)",
    )
    args = ap.parse_args()
    if args.single_thread:
        threadpool_limits(1)
        args.n_jobs = 1
    reps = 5 if args.quick else args.reps
    base_reps = 1 if args.quick else min(args.baseline_reps, reps)
    ridge = args.regressor == "ridge"

    feats, y = make_features(seed=args.seed)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = "1 thread" if args.single_thread else f"n_jobs={args.n_jobs or cpus}"
    print(
        f"machine: {platform.processor() or platform.machine()}, {cpus} CPUs available, "
        f"probe_layers {threads}"
    )
    what = "ridge (LOO alpha) + shuffled baseline" if ridge else "OLS"
    print(f"data: n={y.size}, {len(feats)} layers, d={list(DIMS)}, reps={reps}, {what}")

    opts = {"regressor": args.regressor, "shuffled": ridge}
    probe_layers({"w": feats["layer00"]}, y, reps=1, **opts)  # warm-up (imports)
    t0 = time.perf_counter()
    res = probe_layers(
        feats, y, reps=reps, seed=args.seed, n_jobs=args.n_jobs, min_std=args.min_std, **opts
    )
    ours = time.perf_counter() - t0
    n_fits = len(feats) * reps * (2 if ridge else 1)
    print(f"probe_layers: {ours:.2f} s for {n_fits} fits")
    for s in res.profiles["model"]:
        print(
            f"  {s.layer}  d={s.dim:5d}  R2 {s.r2_mean:8.3f} +- {s.r2_std:.3f}"
            f"  [{s.r2_ci95[0]:.3f}, {s.r2_ci95[1]:.3f}]  median {s.r2_median:8.3f}"
            f"  constant={s.n_constant} floored={s.n_floored}"
        )

    # The same splits (and permutations) as probe_layers draws them.
    splits, shuffled = shuffled_measures(y, reps, args.seed)
    splits, shuffled = splits[:base_reps], shuffled[:base_reps]
    chosen = res.extra.get("ridge_alpha_chosen", {})
    t0 = time.perf_counter()
    max_diff = 0.0
    alpha_mismatch = 0
    for name, X in feats.items():
        X64 = X.astype(np.float64)
        for r, (tr, te) in enumerate(splits):
            if not ridge:
                r2 = naive_r2(X64, y, tr, te, args.min_std)
                max_diff = max(max_diff, abs(r2 - res.score(name).r2[r]))
                continue
            for kind, target in (("model", y), ("shuffled", shuffled[r])):
                r2, alpha = naive_ridge(X64, target, tr, te, args.min_std)
                max_diff = max(max_diff, abs(r2 - res.score(name, kind).r2[r]))
                alpha_mismatch += alpha != chosen[kind][name][r]
    measured = time.perf_counter() - t0
    baseline = measured * reps / base_reps
    naive = "scikit-learn RidgeCV per fit" if ridge else "naive statsmodels OLS"
    print(
        f"{naive}: {measured:.2f} s for {base_reps} of {reps} repetitions "
        f"x {len(feats)} layers; extrapolated to {reps} repetitions: {baseline:.1f} s"
    )
    print(f"max |R2 difference| on those repetitions: {max_diff:.2e}")
    if ridge:
        print(f"fits whose alpha differs from RidgeCV's: {alpha_mismatch}")
    if args.device and ridge:
        time_device(feats, y, reps, args.seed, res, args.device, args.min_std)
    print(f"time_s={ours:.2f} baseline_s={baseline:.1f} speedup={baseline / ours:.1f}")


if __name__ == "__main__":
    main()
