"""The noise experiment's figure (rcvlab.viz.noise) and run folder (rcvlab.report.noise)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rcvlab.analyses.noise import NoiseLayer, NoiseSizeResult
from rcvlab.report.noise import noise_markdown, write_noise_run
from rcvlab.result import provenance
from rcvlab.runio import RUN_FILE, prepare_out
from rcvlab.viz.noise import FLOOR, plot_noise


@pytest.fixture
def result() -> NoiseSizeResult:
    """Made-up scores after paper 000's Figure 7: regular GAP near 1, corrected below 0, a
    repetition far below -1, and a deep layer without positions."""
    sizes = (150, 200, 250)
    layers = (
        NoiseLayer("mixed0", {150: 121, 200: 289, 250: 529}, (0.9, 0.8, 0.95), (-0.4, -3.0, 0.1)),
        NoiseLayer("mixed1", {150: 49, 200: 169, 250: 361}, (0.97, 0.99, 0.9), (-1.5, -2.0, -1.8)),
        NoiseLayer("mixed5", {150: 0, 200: 0, 250: 0}, (0.99, 0.98, 0.97), None),
    )
    return NoiseSizeResult(
        model="inception_v3",
        weights="random",
        sizes=sizes,
        n_train=5,
        n_test=20,
        reps=3,
        regressor="ols",
        alpha=None,
        layers=layers,
        widths=((150, 200, 250, 150, 200, 250, 150),) * 3,
        meta=provenance(command="rcvlab noise-size --model inception_v3", seed=0),
    )


def test_plot_shows_medians_and_marks_layers_without_positions(result) -> None:
    fig = plot_noise(result)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    gap, cor = ax.lines[0], ax.lines[1]
    np.testing.assert_allclose(gap.get_ydata(), [0.9, 0.97, 0.98])  # medians
    # corrected GAP: medians clipped to the floor, the layer without positions not drawn
    y = np.asarray(cor.get_ydata(), dtype=float)
    np.testing.assert_allclose(y[:2], [-0.4, FLOOR])
    assert np.isnan(y[2])
    assert any("no positions" in t.get_text() for t in ax.texts)


def test_write_run_and_summary(result, tmp_path) -> None:
    out = prepare_out(tmp_path / "run")
    files = write_noise_run(out, result)
    names = {"noise.json", "noise.csv", "noise.png", "summary.md"}
    assert set(files) == names
    assert {p.name for p in out.iterdir()} - {RUN_FILE} == names  # no temporary file left
    assert files["noise.png"].read_bytes()[:4] == b"\x89PNG"
    back = NoiseSizeResult.from_json(files["noise.json"])
    assert back.layer("mixed0").r2_corrected == (-0.4, -3.0, 0.1)
    csv = pd.read_csv(files["noise.csv"])
    assert list(csv.columns) == list(NoiseSizeResult.frame_columns)
    summary = files["summary.md"].read_text()
    assert summary == noise_markdown(result)
    assert "| mixed5 |" in summary and "no positions" in summary
    assert result.meta["command"] in summary


def test_printed_means_equal_a_recomputation_from_the_stored_scores(result, tmp_path) -> None:
    """What the command prints (mean R² per layer and pooling) and the intervals of
    noise.csv, from noise.json's per-repetition R² with plain json, numpy and scipy."""
    import scipy.stats

    files = write_noise_run(prepare_out(tmp_path / "run"), result)
    d = json.loads(files["noise.json"].read_text())
    csv = pd.read_csv(files["noise.csv"])
    for e in d["layers"]:
        for pooling, key in (("gap", "r2_gap"), ("corrected-gap", "r2_corrected")):
            row = csv[(csv.layer == e["layer"]) & (csv.pooling == pooling)].iloc[0]
            if e[key] is None:
                assert np.isnan(row.r2_mean) and row.positions_min == 0
                continue
            v = np.asarray(e[key])
            lo, hi = scipy.stats.t.interval(
                0.95, v.size - 1, loc=v.mean(), scale=scipy.stats.sem(v)
            )
            assert row.r2_mean == pytest.approx(v.mean(), abs=1e-12)
            assert (row.r2_ci95_low, row.r2_ci95_high) == pytest.approx((lo, hi), abs=1e-12)
            assert row.r2_median == pytest.approx(np.median(v), abs=1e-12)
            assert (row.r2_q25, row.r2_q75) == pytest.approx(np.percentile(v, [25, 75]))
