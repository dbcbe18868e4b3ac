"""Figure and run folder of an RCV relevance result (viz.relevance, report.relevance)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rcvlab.analyses.relevance import relevance_from_arrays
from rcvlab.report.relevance import write_relevance_run
from rcvlab.viz.relevance import plot_relevance


def make_result(constant_gradient: bool = False):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    G = (
        np.ones((30, 5))
        if constant_gradient
        else rng.normal(size=(30, 5)) + np.array([2, 0, 0, 0, 0])
    )
    y = X @ [1.0, 0.2, 0, 0, 0] + rng.normal(scale=0.1, size=30)
    noise = rng.normal(size=30)
    res = relevance_from_arrays(
        X,
        G,
        {"scale_ratio": y, "noise": noise},
        layer="features.7",
        target_class=281,
        reps=4,
        ids=[f"img{i}.png" for i in range(30)],
        classes=["cat"] * 30,
    )
    return res.with_meta(model="mobilenet_v2", weights="imagenet", target_name="tabby")


def test_plot_relevance_has_histograms_and_br_bars():
    res = make_result()
    fig = plot_relevance(res)
    assert isinstance(fig, Figure)
    ax1, ax2 = fig.axes[:2]
    assert [t.get_text() for t in ax1.get_legend().get_texts()] == ["scale_ratio", "noise"]
    bars = [p.get_height() for p in ax2.patches]
    np.testing.assert_allclose(bars, [res.score("scale_ratio").br, res.score("noise").br])
    assert "tabby" in ax1.get_xlabel()


def test_plot_relevance_with_infinite_br():
    res = make_result(constant_gradient=True)  # S constant -> std 0 -> Br = ±inf
    assert not np.isfinite(res.score("scale_ratio").br)
    fig = plot_relevance(res)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any("inf" in t for t in texts)


def test_write_relevance_run(tmp_path):
    res = make_result()
    files = write_relevance_run(tmp_path, res)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["relevance.csv", "relevance.json", "summary.md", "relevance.png"]
    )
    assert set(files) == {"relevance.csv", "relevance.json", "summary.md", "relevance.png"}
    per_image = pd.read_csv(files["relevance.csv"])
    assert list(per_image.columns) == ["measure", "index", "id", "class", "value", "sensitivity"]
    assert len(per_image) == 60
    sub = per_image[per_image.measure == "scale_ratio"]
    np.testing.assert_allclose(sub.sensitivity, res.sensitivities["scale_ratio"])
    d = json.loads(files["relevance.json"].read_text())
    assert d["kind"] == "relevance" and d["target_class"] == 281 and d["layer"] == "features.7"
    assert [m["measure"] for m in d["measures"]] == ["scale_ratio", "noise"]
    assert d["measures"][0]["br"] == res.score("scale_ratio").br
    md = files["summary.md"].read_text()
    assert "| scale_ratio |" in md and "Br" in md and "tabby" in md
    assert files["relevance.png"].read_bytes()[:4] == b"\x89PNG"
