"""Figures and run folders of the sparsity, alignment and consistency analyses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rcvlab.analyses.alignment import AlignmentResult, alignment_from_arrays
from rcvlab.analyses.consistency import ConsistencyResult, consistency_from_arrays
from rcvlab.analyses.sparsity import SparsityResult, sparsity_from_arrays
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
    return sparsity_from_arrays(
        X,
        y,
        alphas=[0.0, 0.001, 0.05, 0.3],
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
    dead = sparsity_from_arrays(
        X, y, alphas=[0.0, 100.0], reps=2
    )  # alpha 100 keeps nothing: 0 on the x axis
    assert dead.n_nonzero[1].tolist() == [0, 0]
    assert plot_sparsity(dead).get_axes()[0].get_xscale() == "symlog"


def test_plot_alignment_and_consistency():
    X, y = planted()
    res = alignment_from_arrays(X, y, alpha=0.3, max_dims=40, meta={"layer": "mixed8"})
    fig = plot_alignment(res)
    (ax,) = fig.get_axes()
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), res[1].curve)
    assert lines[1].get_xdata()[0] == 1 and lines[1].get_xdata()[-1] == 40
    assert "mixed8" in ax.get_title()
    dead = alignment_from_arrays(X, y, regressors="lasso", alpha=1e3, max_dims=40)[0]
    fig = plot_alignment({"plain": res["ols"], "dead": dead})
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels[0].startswith("plain") and "no direction" in labels[1]
    c = consistency_from_arrays({"a": planted(seed=1), "b": planted(seed=2)}, reps=2, alpha=0.1)
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
    back = SparsityResult.from_json(files["sparsity.json"])
    np.testing.assert_array_equal(back.r2_test, sparse_result.r2_test)
    assert "Table 1" in files["summary.md"].read_text()
    assert files["sparsity.png"].read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_write_alignment_run(tmp_path):
    X, y = planted()
    res = alignment_from_arrays(X, y, alpha=1e3, max_dims=10)
    out = _mkdir(tmp_path / "a")
    files = write_alignment_run(out, res)
    assert set(files) == {"alignment.csv", "alignment.json", "alignment.png", "summary.md"}
    assert json.loads(files["alignment.json"].read_text())["kind"] == "alignment"
    again = AlignmentResult.from_json(files["alignment.json"])
    np.testing.assert_allclose(again["ols"].curve, res["ols"].curve)
    assert len(pd.read_csv(files["alignment.csv"])) == 20
    assert "| lasso (alpha=1000) | 0 of 30 |" in files["summary.md"].read_text()
    assert files["alignment.png"].read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*"))


def test_alignment_json_of_earlier_versions_is_read(tmp_path):
    """``alignment.json`` as the earlier command wrote it: {"analysis", "results": [...]}."""
    X, y = planted()
    res = alignment_from_arrays(X, y, alpha=0.3, max_dims=10, meta={"layer": "mixed8"})
    old = {
        "analysis": "alignment",
        "results": [
            {**c.to_dict(), "analysis": "alignment", "meta": {"layer": "mixed8"}} for c in res
        ],
    }
    path = tmp_path / "alignment.json"
    path.write_text(json.dumps(old))
    back = AlignmentResult.from_json(path)
    assert back.regressors == ("ols", "lasso") and back.meta == {"layer": "mixed8"}
    np.testing.assert_array_equal(back["lasso"].direction, res["lasso"].direction)


def test_write_consistency_run(tmp_path):
    c = consistency_from_arrays({"a": planted(seed=1), "b": planted(seed=2)}, reps=2, alpha=0.1)
    out = _mkdir(tmp_path / "c")
    files = write_consistency_run(out, c)
    assert {"consistency.csv", "consistency.json", "summary.md"} <= set(files)
    assert ConsistencyResult.from_json(files["consistency.json"]) == c
    f = pd.read_csv(files["consistency.csv"])
    assert {"a", "b", "regressor", "angle_mean", "angle_std", "cos_mean", "cos_std", "n"} <= set(
        f.columns
    )
    assert "a (shuffled)" in files["summary.md"].read_text()


def _mkdir(p):
    p.mkdir()
    return p


def test_encoding_section_tables_and_figures(sparse_result):
    from rcvlab.report.encoding import encoding_section

    X, y = planted()
    al = alignment_from_arrays(X, y, alpha=1e3, max_dims=10)  # the Lasso RCV is zero
    c = consistency_from_arrays({"a": planted(seed=1), "b": planted(seed=2)}, reps=2, alpha=1e3)
    html = encoding_section(sparse_result, c, al, notes=("<b>note</b>",))
    assert "&lt;b&gt;note&lt;/b&gt;" in html and "<b>note" not in html
    assert html.count("<table") == 2 and html.count("<img") == 3
    assert "lasso: 0 non-zero, a zero RCV" in html
    # Table 1's Lasso R² of the 'kite' set, formatted with 3 decimals
    t = sparse_result.cross_class_table([0.0, 0.001])
    assert f"{t.r2_mean.iloc[3]:.3f}" in html
    # the undefined Lasso angles are shown as '–', not 'nan'
    text = html.split("<figure")[0]  # without the base64 images
    assert "<td>–</td>" in text and "nan" not in text.lower()
