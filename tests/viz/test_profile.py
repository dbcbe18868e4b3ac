"""Tests of the Figure-8 style profile plots (rcvlab.viz.profile)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from scipy import stats

from rcvlab.probe.result import PROFILE_KINDS, LayerScore, ProfileResult
from rcvlab.viz import normalised, normalised_ci95, plot_profile, plot_profiles

LAYERS = ("mixed0", "mixed3", "mixed8", "mixed10", "softmax")
# Per-repetition test R² chosen by hand (after paper 000, Table A1): the model peaks at mixed8
# and collapses at softmax; the baselines stay below 0.
MODEL_REPS = {
    "mixed0": (-0.9, -0.5, -0.7),
    "mixed3": (0.55, 0.62, 0.60),
    "mixed8": (0.83, 0.85, 0.84),
    "mixed10": (0.50, 0.58, 0.54),
    "softmax": (-3861.0, -1200.0, -9000.0),
}
RANDOM_REPS = {
    "mixed0": (-280.0, -10.0, -5.0),
    "mixed3": (-0.4, -0.5, -0.6),
    "mixed8": (-0.1, 0.0, -0.2),
    "mixed10": (0.1, 0.05, 0.08),
    "softmax": (-0.1, -0.15, -0.12),
}
SHUFFLED_REPS = {
    "mixed0": (-5.0, -6.0, -6.5),
    "mixed3": (-1.8, -1.9, -1.7),
    "mixed8": (-1.0, -0.9, -1.1),
    "mixed10": (-1.2, -1.3, -1.25),
    "softmax": (-11077.0, -200.0, -30.0),
}


def score(layer: str, reps: tuple[float, ...], dim: int = 64) -> LayerScore:
    r = np.asarray(reps)
    half = stats.t.ppf(0.975, r.size - 1) * r.std(ddof=1) / math.sqrt(r.size)
    return LayerScore(
        layer=layer,
        dim=dim,
        r2=tuple(reps),
        r2_mean=float(r.mean()),
        r2_std=float(r.std(ddof=1)),
        r2_ci95=(float(r.mean() - half), float(r.mean() + half)),
        r2_norm_mean=float(np.exp(r - 1).mean()),
    )


def make_result(
    model: str = "inception_v3", kinds: tuple[str, ...] = PROFILE_KINDS
) -> ProfileResult:
    tables = {"model": MODEL_REPS, "random": RANDOM_REPS, "shuffled": SHUFFLED_REPS}
    return ProfileResult(
        profiles={k: tuple(score(layer, tables[k][layer]) for layer in LAYERS) for k in kinds},
        reps=3,
        model=model,
        weights="imagenet",
        measure="scale",
    )


def expected_norm(table: dict[str, tuple[float, ...]]) -> np.ndarray:
    return np.array([np.exp(np.asarray(table[layer]) - 1).mean() for layer in LAYERS])


def errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_three_curves_with_normalised_means_in_network_order() -> None:
    fig = plot_profile(make_result())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    containers = errorbars(ax)
    assert [c.get_label() for c in containers] == [
        "ImageNet",
        "random weights",
        "shuffled measures",
    ]
    for c, table in zip(containers, (MODEL_REPS, RANDOM_REPS, SHUFFLED_REPS), strict=True):
        line = c.lines[0]
        np.testing.assert_allclose(line.get_xdata(), np.arange(len(LAYERS)))
        np.testing.assert_allclose(line.get_ydata(), expected_norm(table), rtol=1e-12)


def test_reference_line_ticks_limits_and_labels() -> None:
    fig = plot_profile(make_result())
    ax = fig.axes[0]
    ref = [
        ln
        for ln in ax.lines
        if ln.get_label() == "R² = 0" and np.allclose(ln.get_ydata(), 1 / math.e)
    ]
    assert len(ref) == 1 and ref[0].get_linestyle() == "--"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LAYERS)
    assert all(t.get_rotation() > 0 for t in ax.get_xticklabels())
    assert ax.get_ylim() == pytest.approx((0.0, 1.1))
    assert "e^(R²−1)" in ax.get_ylabel()
    assert "95 % CI" in ax.get_legend().get_title().get_text()
    assert ax.get_title() == "inception_v3 — scale"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "R² = 0",
        "best layer",
        "ImageNet",
        "random weights",
        "shuffled measures",
    ]


def test_best_layer_is_marked_at_its_score() -> None:
    result = make_result()
    assert result.best_layer == "mixed8"
    ax = plot_profile(result).axes[0]
    (star,) = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert list(star.get_xdata()) == [LAYERS.index("mixed8")]
    assert star.get_ydata()[0] == pytest.approx(result.score("mixed8").r2_norm_mean)
    (note,) = ax.texts
    assert note.get_text() == "mixed8"
    assert note.xy == pytest.approx((LAYERS.index("mixed8"), star.get_ydata()[0]))


def test_collapsed_softmax_plots_near_zero() -> None:
    ax = plot_profile(make_result()).axes[0]
    y = errorbars(ax)[0].lines[0].get_ydata()
    assert np.isfinite(y).all()
    assert 0 <= y[-1] < 1e-100


def test_error_bars_are_t_interval_of_normalised_repetitions() -> None:
    result = make_result()
    ax = plot_profile(result).axes[0]
    model_bars = errorbars(ax)[0].lines[2][0]  # LineCollection of the vertical bars
    i = LAYERS.index("mixed3")
    seg = np.asarray(model_bars.get_segments()[i])
    v = np.exp(np.asarray(MODEL_REPS["mixed3"]) - 1)
    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    np.testing.assert_allclose(sorted(seg[:, 1]), [v.mean() - half, v.mean() + half])
    assert normalised_ci95(result.score("mixed3")) == pytest.approx(
        (v.mean() - half, v.mean() + half)
    )


def test_normalised_ci95_edge_cases() -> None:
    one = LayerScore("a", 1, (0.5,), 0.5, math.nan, (math.nan, math.nan), math.exp(-0.5))
    assert normalised_ci95(one) == pytest.approx((math.exp(-0.5), math.exp(-0.5)))
    no_reps = LayerScore("b", 1, (), 0.2, 0.1, (0.0, 0.4), math.exp(-0.8))
    assert normalised_ci95(no_reps) == pytest.approx((math.exp(-1.0), math.exp(-0.6)))
    wide = score("c", (-50.0, 0.9, -60.0))
    assert normalised_ci95(wide)[0] == 0.0  # clipped: the score is positive
    assert normalised(0.0) == pytest.approx(1 / math.e)
    assert normalised(-1e6) == 0.0


def test_missing_baselines_are_left_out() -> None:
    ax = plot_profile(make_result(kinds=("model",))).axes[0]
    assert [c.get_label() for c in errorbars(ax)] == ["ImageNet"]


def test_baseline_is_aligned_to_model_layer_order() -> None:
    result = make_result()
    shuffled_reversed = tuple(reversed(result.profiles["random"]))
    result = ProfileResult(
        profiles={"model": result.profiles["model"], "random": shuffled_reversed},
        weights="imagenet",
    )
    ax = plot_profile(result).axes[0]
    np.testing.assert_allclose(errorbars(ax)[1].lines[0].get_ydata(), expected_norm(RANDOM_REPS))


def test_draws_into_given_axes_and_title_override() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_profile(make_result(), ax=ax, title="custom") is fig
    assert ax.get_title() == "custom" and len(errorbars(ax)) == 3


def test_pure_no_pyplot_state_no_files(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    before = plt.get_fignums()
    fig = plot_profiles([make_result()])
    assert plt.get_fignums() == before
    assert list(tmp_path.iterdir()) == []
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")


def test_plot_profiles_one_panel_per_result() -> None:
    results = [make_result("efficientnet_lite0"), make_result("mobilenetv2_100")]
    fig = plot_profiles(results)
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == [
        "efficientnet_lite0 — scale",
        "mobilenetv2_100 — scale",
    ]
    assert all(len(errorbars(ax)) == 3 for ax in fig.axes)
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert "ImageNet" in [t.get_text() for t in legend.get_texts()]
    titled = plot_profiles(results, titles=["A", "B"])
    assert [ax.get_title() for ax in titled.axes] == ["A", "B"]
    with pytest.raises(ValueError):
        plot_profiles([])
    with pytest.raises(ValueError):
        plot_profiles(results, titles=["only one"])


def test_split_comparison_one_row_per_network_two_panels() -> None:
    from dataclasses import replace

    from rcvlab.viz.profile import ERRORBAR_NOTE_LOCO, plot_split_comparison

    per = [make_result("efficientnet_lite0"), make_result("mobilenet_v2")]
    loco = [replace(r, split="leave-one-class-out") for r in per]
    fig = plot_split_comparison(per, loco)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == [
        "efficientnet_lite0 — scale: per class",
        "efficientnet_lite0 — scale: leave-one-class-out",
        "mobilenet_v2 — scale: per class",
        "mobilenet_v2 — scale: leave-one-class-out",
    ]
    assert all(len(errorbars(ax)) == 3 for ax in fig.axes)
    (legend,) = fig.legends
    assert "held-out classes" in legend.get_title().get_text()
    # a lone leave-one-class-out profile says what its error bars are over
    one = plot_profile(loco[0])
    assert one.axes[0].get_legend().get_title().get_text() == ERRORBAR_NOTE_LOCO
    assert one.axes[0].get_title() == "efficientnet_lite0 — scale (leave-one-class-out)"
    with pytest.raises(ValueError, match="one held-out profile per"):
        plot_split_comparison(per, loco[:1])
    with pytest.raises(ValueError, match="different models"):
        plot_split_comparison(per, loco[::-1])
