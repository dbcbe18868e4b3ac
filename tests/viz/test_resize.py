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
from rcvlab.runio import prepare_out
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
        data="filled:cat",
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
        command="rcvlab resize-sweep --model efficientnet_lite0 --data filled:cat",
        meta={"seconds": 1.5, "device": "cpu", "batch_size": 32},
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
    assert sorted(p.name for p in out.iterdir()) == sorted(files)  # no temporary files left
    csv = pd.read_csv(files["sweep.csv"])
    assert list(csv["size"]) == list(SIZES) * 2
    assert {"p_mean", "p_ci95_low", "p_ci95_high", "top5", "top5_ci95_low", "top1"} <= set(
        csv.columns
    )
    back = ResizeSweepResult.from_json(files["sweep.json"])
    np.testing.assert_array_equal(back.p, result.p)
    assert back.skipped == result.skipped
    summary = files["summary.md"].read_text()
    assert "| lanczos | 224 |" in summary and result.command in summary
    assert pd.read_csv(files["skipped.csv"]).path.tolist() == ["x.png"]
