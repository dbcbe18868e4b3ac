"""Tests of the one-page HTML report (rcvlab.report.html)."""

from __future__ import annotations

import base64
import math
import re
from importlib import metadata

import numpy as np
import pytest
from matplotlib.figure import Figure

from rcvlab.data.base import Skip
from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.report import environment_info, render_report, write_report
from rcvlab.report.html import NOT_INSTALLED, fmt_num

LAYERS = ("stem<conv>", "blocks.2", "blocks.4", "head", "softmax")
MODEL = (-0.7, 0.59, 0.84, 0.54, -3861.2)
RANDOM = (-283.0, -0.47, -0.06, 0.08, -0.13)
SHUFFLED = (-5.75, -1.81, -0.98, -1.24, -11077.0)
COMMAND = 'rcvlab profile --model x --note "<script>alert(1)</script>" & echo'
ENV = {"python": "3.11.9", "torch": "9.9.9-test", "timm": NOT_INSTALLED}


def score(layer: str, mean: float, dim: int = 32) -> LayerScore:
    reps = (mean - 0.01, mean + 0.01)
    return LayerScore(
        layer=layer,
        dim=dim,
        r2=reps,
        r2_mean=mean,
        r2_std=0.0141,
        r2_ci95=(mean - 0.127, mean + 0.127),
        r2_norm_mean=float(np.exp(np.asarray(reps) - 1).mean()),
    )


def make_result(model: str = "efficientnet_lite0") -> ProfileResult:
    return ProfileResult(
        profiles={
            kind: tuple(
                score(layer, m, dim=16 * (i + 1))
                for i, (layer, m) in enumerate(zip(LAYERS, means, strict=True))
            )
            for kind, means in (("model", MODEL), ("random", RANDOM), ("shuffled", SHUFFLED))
        },
        reps=2,
        seed=7,
        model=model,
        weights="imagenet",
        measure="scale",
        data={"source": "scaleset", "n_images": 120, "n_skipped": 3},
        command=COMMAND,
        rcvlab_version="0.1.0",
    )


def render(**kw) -> str:
    kw.setdefault("title", "Scale <profile> & co")
    kw.setdefault("figures", {})
    kw.setdefault("environment", ENV)
    return render_report([make_result()], **kw)


def test_command_and_user_text_are_escaped() -> None:
    html = render(notes=["Shows <b>only</b> scale & nothing else."])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert "&amp; echo" in html
    assert "Scale &lt;profile&gt; &amp; co" in html
    assert "Shows &lt;b&gt;only&lt;/b&gt; scale &amp; nothing else." in html
    assert "<b>only</b>" not in html


def test_metadata_layers_and_best_layer_highlighted() -> None:
    result = make_result()
    assert result.best_layer == "blocks.4"
    html = render()
    for layer in LAYERS:
        assert f"<td>{layer.replace('<', '&lt;').replace('>', '&gt;')}" in html
    best_rows = re.findall(r'<tr class="best">(.*?)</tr>', html)
    assert len(best_rows) == 1 and "blocks.4" in best_rows[0]
    assert "0.840 ± 0.014 [0.713, 0.967]" in best_rows[0]
    for text in ("efficientnet_lite0", "imagenet", "scaleset", "120", "ols", "seed"):
        assert text in html
    assert "-3861" in html and "-11077" in html


def test_figures_are_embedded_as_base64(tmp_path) -> None:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    png = tmp_path / "f.png"
    fig.savefig(png, format="png")
    html = render(figures={"drawn": fig, "from file": png})
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 2
    assert all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)
    assert base64.b64encode(png.read_bytes()).decode() in uris
    with pytest.raises(ValueError):
        render(figures={"bad": tmp_path / "f.pdf"})


def test_default_figure_and_no_external_assets() -> None:
    html = render_report([make_result(), make_result("mobilenetv2_100")], title="t")
    assert html.count('<img src="data:image/png;base64,') == 1
    assert "mobilenetv2_100" in html
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert "<link" not in html and "<script" not in html
    assert "<img" not in render(figures={})


def test_skipped_items_listed_and_collapsed_when_long() -> None:
    few = [("a&b.jpg", "unreadable"), Skip("c/d.png", "no box")]
    html = render(skipped=few)
    assert "a&amp;b.jpg" in html and "unreadable" in html and "c/d.png" in html
    assert "<details>" not in html
    many = [(f"img_{i:03d}.jpg", "too small") for i in range(40)]
    html = render(skipped=many)
    assert "<details>" in html and "img_039.jpg" in html and "40 items" in html


def test_versions_listed() -> None:
    html = render()
    for k, v in ENV.items():
        assert f"<td>{k}</td>" in html and v in html
    env = environment_info(["numpy", "surely-not-a-package-rcvlab"])
    assert env["python"].count(".") == 2
    assert env["numpy"] == metadata.version("numpy")
    assert env["surely-not-a-package-rcvlab"] == NOT_INSTALLED
    assert {"torch", "torchvision", "timm", "numpy", "scikit-learn", "rcvlab"} <= set(
        environment_info()
    )


def test_fmt_num() -> None:
    assert fmt_num(0.84) == "0.840"
    assert fmt_num(-3861.2) == "-3861"
    assert fmt_num(-11077.0) == "-11077"
    assert fmt_num(-2.5e7) == "-2.5e+07"
    assert fmt_num(math.nan) == "n/a" and fmt_num(None) == "n/a"


def test_write_report_is_atomic(tmp_path) -> None:
    out = tmp_path / "report.html"
    out.write_text("old")
    path = write_report(out, [make_result()], title="T", figures={}, environment=ENV)
    assert path == out
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "blocks.4" in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(ValueError):
        write_report(tmp_path / "x.html", [make_result()], title="T", figures={"b": "f.gif"})
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
