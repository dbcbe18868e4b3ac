"""The resizing sweep's figure (rcvlab.viz.resize) and run folder (rcvlab.report.resize)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rcvlab.analyses.resize import ResizeSweepResult
from rcvlab.data.base import Skip
from rcvlab.report.resize import write_resize_run
from rcvlab.runio import RUN_FILE, prepare_out
from rcvlab.viz.resize import plot_resize_sweep

SIZES = (75, 150, 224, 300, 500)


@pytest.fixture
def result() -> ResizeSweepResult:
    """A made-up sweep peaking at 224 px (after paper 000, Figure 6)."""
    rng = np.random.default_rng(0)
    n = 12
    centre = np.exp(-(((np.log(SIZES) - np.log(224)) / 0.6) ** 2))  # 1 at 224
    p = np.clip(centre[None, :, None] * 0.8 + rng.normal(0, 0.05, (2, len(SIZES), n)), 0, 1)
    top1 = p > 0.5
    top5 = top1 | (p > 0.2)
    return ResizeSweepResult(
        model="efficientnet_lite0",
        weights="imagenet",
        sizes=SIZES,
        interps=("lanczos", "nearest"),
        ids=tuple(f"filled/cat/{i:05d}" for i in range(n)),
        labels=((281, 282, 285),) * n,
        p=p,
        top1=top1,
        top5=top5,
        pred=np.full(p.shape, 281, dtype=np.int64),
        input_size=224,
        skipped=(Skip("x.png", "cannot decode image x.png"),),
        meta={
            "command": "rcvlab resize-sweep --model efficientnet_lite0 --data filled:cat",
            "seed": 0,
            "data_source": "filled:cat",
            "seconds": 1.5,
            "device": "cpu",
            "batch_size": 32,
        },
    )


def test_plot(result: ResizeSweepResult) -> None:
    fig = plot_resize_sweep(result)
    assert isinstance(fig, Figure)
    ax_p, ax_k = fig.axes[:2]
    assert len(ax_p.lines) == 2 + 1  # one per interpolation + the training size
    assert len(ax_k.lines) == 2 * 2 + 1  # top-5 and top-1 per interpolation
    np.testing.assert_allclose(ax_p.lines[0].get_xdata(), SIZES)
    np.testing.assert_allclose(ax_p.lines[0].get_ydata(), result.p[0].mean(axis=1))
    assert [t.get_text() for t in ax_p.get_legend().get_texts()] == ["lanczos", "nearest"]
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_run(result: ResizeSweepResult, tmp_path) -> None:
    out = prepare_out(tmp_path / "run")
    files = write_resize_run(out, result)
    assert set(files) == {"sweep.json", "sweep.csv", "summary.md", "sweep.png", "skipped.csv"}
    assert all(p.is_file() for p in files.values())
    # prepare_out's run.json aside, only these files: no temporary file left
    assert sorted(p.name for p in out.iterdir() if p.name != RUN_FILE) == sorted(files)
    csv = pd.read_csv(files["sweep.csv"])
    assert list(csv["size"]) == list(SIZES) * 2
    assert {"p_mean", "p_ci95_low", "p_ci95_high", "top5", "top5_ci95_low", "top1"} <= set(
        csv.columns
    )
    back = ResizeSweepResult.from_json(files["sweep.json"])
    np.testing.assert_array_equal(back.p, result.p)
    assert back.skipped == result.skipped
    summary = files["summary.md"].read_text()
    assert "| lanczos | 224 |" in summary and result.meta["command"] in summary
    assert pd.read_csv(files["skipped.csv"]).path.tolist() == ["x.png"]


def test_written_summary_equals_a_recomputation_from_the_stored_per_image_values(
    result: ResizeSweepResult, tmp_path
) -> None:
    """sweep.csv (what the command prints from) recomputed from sweep.json's per-image
    arrays with plain json, numpy, scipy (Student t) and statsmodels (Wilson)."""
    import json

    import scipy.stats
    from statsmodels.stats.proportion import proportion_confint

    out = prepare_out(tmp_path / "run")
    files = write_resize_run(out, result)
    d = json.loads(files["sweep.json"].read_text())
    csv = pd.read_csv(files["sweep.csv"])
    p, top5 = np.asarray(d["p"]), np.asarray(d["top5"])
    assert p.shape == (2, len(SIZES), 12)
    for a, interp in enumerate(d["interps"]):
        for b, size in enumerate(d["sizes"]):
            row = csv[(csv.interp == interp) & (csv["size"] == size)].iloc[0]
            v = p[a, b]
            lo, hi = scipy.stats.t.interval(
                0.95, v.size - 1, loc=v.mean(), scale=scipy.stats.sem(v)
            )
            assert row.p_mean == pytest.approx(v.mean(), abs=1e-12)
            assert (row.p_ci95_low, row.p_ci95_high) == pytest.approx(
                (max(lo, 0.0), min(hi, 1.0)), abs=1e-12
            )
            k = int(top5[a, b].sum())
            assert row.top5 == pytest.approx(k / v.size)
            assert (row.top5_ci95_low, row.top5_ci95_high) == pytest.approx(
                proportion_confint(k, v.size, method="wilson"), abs=1e-12
            )
        # the printed peak: argmax of the mean over images
        means = p[a].mean(axis=1)
        assert d["peaks"][interp]["size"] == d["sizes"][int(np.argmax(means))]
