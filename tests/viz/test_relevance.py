"""Figure and run folder of an RCV relevance result (viz.relevance, report.relevance)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rcvlab.analyses.relevance import RelevanceResult, relevance_from_arrays
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
    return dataclasses.replace(res, model="mobilenet_v2", weights="imagenet", target_name="tabby")


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
    names = ["relevance.csv", "relevance.json", "summary.md", "relevance.png", "skipped.csv"]
    files = write_relevance_run(tmp_path, res)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary file
    assert set(files) == set(names)
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
    assert pd.read_csv(files["skipped.csv"]).empty
    back = RelevanceResult.from_json(files["relevance.json"])
    np.testing.assert_array_equal(back.sensitivities["noise"], res.sensitivities["noise"])
    np.testing.assert_array_equal(back.directions["noise"], res.directions["noise"])


def test_printed_numbers_equal_a_recomputation_from_the_written_files(tmp_path):
    """What the command prints (R², mean S, Br) and the t-test, from relevance.json's
    per-split R² and relevance.csv's sensitivities with plain json, numpy and scipy."""
    from scipy import stats

    files = write_relevance_run(tmp_path, make_result())
    d = json.loads(files["relevance.json"].read_text())
    per_image = pd.read_csv(files["relevance.csv"])
    for m in d["measures"]:
        s = per_image.loc[per_image.measure == m["measure"], "sensitivity"].to_numpy()
        r2 = float(np.mean(m["r2"]))
        assert m["n"] == s.size == 30
        assert m["r2_mean"] == pytest.approx(r2, abs=1e-12)
        assert m["sens_mean"] == pytest.approx(s.mean(), rel=1e-12)
        assert m["sens_std"] == pytest.approx(s.std(ddof=1), rel=1e-12)
        assert m["frac_positive"] == pytest.approx(np.mean(s > 0))
        assert m["br"] == pytest.approx(r2 * s.mean() / s.std(ddof=1), rel=1e-12)
        t = stats.ttest_1samp(s, 0.0)
        assert (m["t_stat"], m["p_value"]) == pytest.approx((t.statistic, t.pvalue), rel=1e-9)
