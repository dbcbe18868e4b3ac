"""Benchmark: the sparsity sweep with one Lasso path per split against refitting per alpha.

Synthetic GAP-like features at the paper's size (paper 001: InceptionV3 ``mixed8``, d = 1280;
albatross, n = 440 images split 220 / 220), with a sparse planted signal: 40 of the 1280
feature maps (the paper's Lasso count at alpha 0.001) carry the measure through a shared
latent, the rest are correlated nuisance (a low-rank latent plus noise, ReLU-like). The
sweep is the paper's: 21 alphas from 0 to 0.01, 10 repetitions.

* ``path``: :func:`rcvlab.analyses.sparsity.sparsity_from_arrays` (per repetition: one
  standardisation, the plain OLS fit for alpha 0, one exact Lasso homotopy path for the 20
  alphas > 0, each solution checked against scikit-learn's duality-gap stopping rule
  (:func:`rcvlab.probe.kernels.lasso_path_certified`), R² on the held-out split).
* ``refit``: the straightforward way on the same splits, per repetition and alpha: the same
  standardised training matrix, then a fresh ``sklearn.linear_model.Lasso(alpha,
  max_iter=10000, tol=1e-4)`` (fit_rcv's settings) from zero for every alpha > 0 (OLS for 0).
  Its time is measured on a subset of repetitions and extrapolated (said so in the output);
  the R² of the two on those repetitions are compared.
* For reference, the Lasso part alone on the same repetitions: the homotopy against one
  warm-started ``sklearn.linear_model.lasso_path`` (what the path used before) and the
  largest coefficient difference of both from a tightly solved (``tol=1e-12``) path.

Usage: ``python bench/sparsity.py [--quick] [--reps 10] [--baseline-reps 3]``. The last line
is ``path_s=... refit_s=... speedup=...``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, lasso_path

from rcvlab.analyses.sparsity import sparsity_from_arrays
from rcvlab.probe.fit import LASSO_MAX_ITER, LASSO_TOL, Design
from rcvlab.probe.kernels import lasso_path_certified
from rcvlab.probe.splits import repeated_splits
from rcvlab.probe.stats import r2_score

N_IMAGES = 440
DIM = 1280
N_SIGNAL = 40
ALPHAS = np.linspace(0.0, 0.01, 21)


def make_features(
    n: int = N_IMAGES, d: int = DIM, k: int = N_SIGNAL, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 ReLU-like features; ``k`` columns carry the measure ``y`` (a sqrt scale ratio)."""
    rng = np.random.default_rng(seed)
    y = np.sqrt(rng.uniform(0.02, 1.0, n))
    latent = rng.standard_normal((n, 16))
    mix = rng.standard_normal((16, d)) * 0.6
    X = latent @ mix + rng.standard_normal((n, d))
    z = (y - y.mean()) / y.std()
    X[:, :k] += np.outer(z, rng.uniform(0.8, 1.6, k))
    X = np.maximum(X + 0.5, 0.0) * rng.uniform(0.1, 3.0, d)
    return X.astype(np.float32), y


def refit_sweep(
    X: np.ndarray, y: np.ndarray, splits: list, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Test R² and non-zero counts (alphas x reps) refitting every alpha from scratch."""
    r2 = np.zeros((alphas.size, len(splits)))
    nz = np.zeros((alphas.size, len(splits)), dtype=int)
    for r, (tr, te) in enumerate(splits):
        design = Design(X[tr])
        Z = design.Z
        Zte = design.standardise(X[te])
        for j, a in enumerate(alphas):
            if a == 0:
                c, b = design.ols(y[tr])
                coef, intercept = c[:, 0], float(b[0])
            else:
                m = Lasso(alpha=a, max_iter=LASSO_MAX_ITER, tol=LASSO_TOL).fit(Z, y[tr])
                coef, intercept = m.coef_, float(m.intercept_)
            r2[j, r] = r2_score(y[te], Zte @ coef + intercept)
            nz[j, r] = np.count_nonzero(coef)
    return r2, nz


def lasso_only(X: np.ndarray, y: np.ndarray, splits: list, alphas: np.ndarray) -> None:
    """The Lasso part alone: homotopy vs warm-started coordinate descent, both vs exact."""
    a = alphas[alphas > 0][::-1]
    t_hom = t_cd = 0.0
    d_hom = d_cd = 0.0
    for tr, _ in splits:
        Z = Design(X[tr]).Z
        yc = y[tr] - y[tr].mean()
        Zf = np.asfortranarray(Z)
        t0 = time.perf_counter()
        hom = lasso_path_certified(Z, yc, a, tol=LASSO_TOL, max_iter=LASSO_MAX_ITER)
        t_hom += time.perf_counter() - t0
        t0 = time.perf_counter()
        _, cd, _ = lasso_path(Zf, yc, alphas=a, tol=LASSO_TOL, max_iter=LASSO_MAX_ITER)
        t_cd += time.perf_counter() - t0
        _, tight, _ = lasso_path(Zf, yc, alphas=a, tol=1e-12, max_iter=1_000_000)
        d_hom = max(d_hom, float(np.abs(hom - tight).max()))
        d_cd = max(d_cd, float(np.abs(cd - tight).max()))
    print(
        f"Lasso part alone, {len(splits)} repetition(s): homotopy {t_hom:.3f} s, "
        f"scikit-learn lasso_path (warm-started, tol {LASSO_TOL:g}) {t_cd:.3f} s "
        f"({t_cd / t_hom:.1f}x); max |coef - tight solution|: homotopy {d_hom:.1e}, "
        f"lasso_path {d_cd:.1e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions, 1 refit repetition")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--baseline-reps", type=int, default=3, help="refit reps actually run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reps = 3 if args.quick else args.reps
    base_reps = 1 if args.quick else min(args.baseline_reps, reps)

    X, y = make_features(seed=args.seed)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"machine: {platform.processor() or platform.machine()}, {cpus} CPUs available, "
        f"OMP_NUM_THREADS={threads}"
    )
    print(
        f"data: n={y.size} (train {y.size // 2} / test {y.size - y.size // 2}), d={DIM}, "
        f"{N_SIGNAL} planted signal dims, {ALPHAS.size} alphas 0..{ALPHAS[-1]:g}, reps={reps}"
    )

    sparsity_from_arrays(X[:60], y[:60], alphas=[0.0, 0.01], reps=1)  # warm-up (imports, BLAS)
    warnings.simplefilter("ignore", ConvergenceWarning)  # counted below instead
    t0 = time.perf_counter()
    res = sparsity_from_arrays(X, y, alphas=ALPHAS, reps=reps, seed=args.seed, test_fraction=0.5)
    ours = time.perf_counter() - t0
    print(f"path (sparsity_from_arrays()): {ours:.2f} s for {ALPHAS.size * reps} fits")
    f = res.to_frame()
    for row in f.itertuples():
        print(
            f"  alpha={row.alpha:.4f}  non-zero {row.n_nonzero_mean:7.1f}  "
            f"train R2 {row.r2_train_mean:6.3f}  test R2 {row.r2_test_mean:7.3f} "
            f"[{row.r2_test_ci95_low:.3f}, {row.r2_test_ci95_high:.3f}]"
        )

    splits = repeated_splits(y.size, reps, 0.5, args.seed)[:base_reps]
    X64 = X.astype(np.float64)
    t0 = time.perf_counter()
    r2_refit, nz_refit = refit_sweep(X64, y, splits, ALPHAS)
    measured = time.perf_counter() - t0
    baseline = measured * reps / base_reps
    print(
        f"refit (Lasso per alpha from scratch): {measured:.2f} s for {base_reps} of {reps} "
        f"repetitions; extrapolated to {reps}: {baseline:.1f} s"
    )
    d_r2 = np.abs(r2_refit - res.r2_test[0][:, :base_reps])
    d_nz = np.abs(nz_refit - res.n_nonzero[:, :base_reps])
    print(
        f"on those repetitions: max |R2 difference| {d_r2.max():.2e}, "
        f"max |non-zero difference| {d_nz.max()}"
    )
    lasso_only(X64, y, splits, ALPHAS)
    print(f"path_s={ours:.2f} refit_s={baseline:.2f} speedup={baseline / ours:.1f}")


if __name__ == "__main__":
    main()
