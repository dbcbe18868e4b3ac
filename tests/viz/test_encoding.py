"""Figures and run folders of the sparsity, alignment and consistency analyses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rcvlab.analyses.alignment import AlignmentResult, alignment
from rcvlab.analyses.consistency import ConsistencyResult, consistency
from rcvlab.analyses.sparsity import SparsityResult, sparsity
from rcvlab.report.encoding import write_alignment_run, write_consistency_run, write_sparsity_run
from rcvlab.viz.encoding import plot_alignment, plot_consistency, plot_sparsity


def planted(n=120, d=30, k=3, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    return Z * 3 + 5, Z[:, :k] @ np.ones(k) + 0.3 * rng.standard_normal(n)


@pytest.fixture(scope="module")
def sparse_result():
    X, y = planted()
    X, y, Xo, yo = X[:90], y[:90], X[90:], y[90:]
    return sparsity(
        X,
        y,
        [0.0, 0.001, 0.05, 0.3],
        reps=3,
        test_sets={"kite": (Xo, yo), "far": (Xo + 50.0, yo)},
        meta={"model": "m", "layer": "mixed8", "measure": "scale_ratio_sqrt", "train_class": "a"},
    )


def test_plot_sparsity_one_panel_per_test_set(sparse_result):
    fig = plot_sparsity(sparse_result)
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 3
    assert axes[0].get_title().startswith("test set: same")
    # train + test lines and their CI bands in every panel
    assert all(len(ax.collections) >= 2 for ax in axes)
    assert axes[0].get_xscale() == "log"
    # the shifted set's R² is far below the floor: drawn on it
    far = axes[2]
    ys = np.concatenate([ln.get_ydata() for ln in far.get_lines() if len(ln.get_ydata())])
    assert ys.min() >= -1.0 - 1e-12
    assert "a" in fig.get_suptitle() and "mixed8" in fig.get_suptitle()
    X, y = planted(n=40, seed=3)
    dead = sparsity(X, y, [0.0, 100.0], reps=2)  # alpha 100 keeps nothing: 0 on the x axis
    assert dead.n_nonzero[1].tolist() == [0, 0]
    assert plot_sparsity(dead).get_axes()[0].get_xscale() == "symlog"


def test_plot_alignment_and_consistency():
    X, y = planted()
    res = [alignment(X, y, "ols", max_dims=40), alignment(X, y, "lasso", 0.3, max_dims=40)]
    fig = plot_alignment(res)
    (ax,) = fig.get_axes()
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), res[1].curve)
    assert lines[1].get_xdata()[0] == 1 and lines[1].get_xdata()[-1] == 40
    dead = alignment(X, y, "lasso", 1e3, max_dims=40)
    fig = plot_alignment({"plain": res[0], "dead": dead})
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels[0].startswith("plain") and "no direction" in labels[1]
    c = consistency({"a": planted(seed=1), "b": planted(seed=2)}, reps=2, alpha=0.1)
    fig = plot_consistency(c)
    (ax,) = fig.get_axes()
    assert len(ax.patches) == 5 * 2  # (a, a), (a, a shuffled), (b, b), (b, b shuffled), (a, b)
    assert len(ax.get_xticklabels()) == 5


def test_write_sparsity_run(tmp_path, sparse_result):
    out = _mkdir(tmp_path / "s")
    files = write_sparsity_run(out, sparse_result)
    assert set(files) == {
        "sparsity.csv",
        "sparsity.json",
        "sparsity.png",
        "cross_class.csv",
        "summary.md",
    }
    assert all(p.exists() and p.stat().st_size > 0 for p in files.values())
    table = pd.read_csv(files["cross_class.csv"])
    assert table.test_set.tolist() == ["same", "same", "kite", "kite", "far", "far"]
    assert table.alpha.tolist() == [0.0, 0.001] * 3
    back = SparsityResult.from_json(files["sparsity.json"].read_text())
    np.testing.assert_array_equal(back.r2_test, sparse_result.r2_test)
    assert "Table 1" in files["summary.md"].read_text()
    assert files["sparsity.png"].read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_write_alignment_run(tmp_path):
    X, y = planted()
    res = [alignment(X, y, "ols", max_dims=10), alignment(X, y, "lasso", 1e3, max_dims=10)]
    out = _mkdir(tmp_path / "a")
    files = write_alignment_run(out, res)
    assert set(files) == {"alignment.csv", "alignment.json", "alignment.png", "summary.md"}
    d = json.loads(files["alignment.json"].read_text())
    again = AlignmentResult.from_dict(d["results"][0])
    np.testing.assert_allclose(again.curve, res[0].curve)
    assert len(pd.read_csv(files["alignment.csv"])) == 20
    assert "| lasso (alpha=1000) | 0 of 30 |" in files["summary.md"].read_text()


def test_write_consistency_run(tmp_path):
    c = consistency({"a": planted(seed=1), "b": planted(seed=2)}, reps=2, alpha=0.1)
    out = _mkdir(tmp_path / "c")
    files = write_consistency_run(out, c)
    assert {"consistency.csv", "consistency.json", "summary.md"} <= set(files)
    assert ConsistencyResult.from_json(files["consistency.json"].read_text()) == c
    f = pd.read_csv(files["consistency.csv"])
    assert {"a", "b", "regressor", "angle_mean", "angle_std", "cos_mean", "cos_std", "n"} <= set(
        f.columns
    )
    assert "a (shuffled)" in files["summary.md"].read_text()


def _mkdir(p):
    p.mkdir()
    return p
