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
        meta={"command": COMMAND, "rcvlab_version": "0.1.0", "versions": {}, "seed": 7},
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
    best_rows = re.findall(r'<tr class="best">(.*?)</tr>', html, flags=re.S)
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


def _table_rows(html: str, css_class: str) -> list[list[str]]:
    """Cell texts of every body row of the table with class ``css_class``."""
    table = re.search(rf'<table[^>]*class="[^"]*\b{css_class}\b[^"]*">(.*?)</table>', html, re.S)
    assert table is not None, css_class
    body = table.group(1).split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row, re.S) for row in body.split("<tr")[1:]]


def _header(html: str, css_class: str) -> list[str]:
    table = re.search(rf'<table[^>]*class="[^"]*\b{css_class}\b[^"]*">(.*?)</table>', html, re.S)
    assert table is not None
    return re.findall(r"<th>(.*?)</th>", table.group(1).split("<tbody>")[0], re.S)


def test_layer_table_has_median_beside_mean_and_floor_count_when_guard_on() -> None:
    from dataclasses import replace

    result = make_result()
    skewed = replace(
        result.profiles["model"][1], r2=(0.9, 0.8, 0.85, -40.0), r2_mean=-9.3625, n_floored=7
    )
    model = (result.profiles["model"][0], skewed, *result.profiles["model"][2:])
    result = replace(result, profiles={**result.profiles, "model": model})
    html = render_report([result], title="t", figures={}, environment=ENV)
    head = _header(html, "layers")
    assert head[3:5] == ["imagenet R² mean ± std [95 % CI]", "imagenet R² median"]
    assert not any("floored" in h for h in head)  # guard off: no column
    rows = _table_rows(html, "layers")
    assert rows[1][4] == f"{np.median([0.9, 0.8, 0.85, -40.0]):.3f}" == "0.825"
    assert "off (plain per-column standardisation)" in html

    guarded = replace(result, min_std=0.01)
    html = render_report([guarded], title="t", figures={}, environment=ENV)
    head = _header(html, "layers")
    col = head.index("columns floored (max over splits)")
    assert [r[col] for r in _table_rows(html, "layers")] == ["0", "7", "0", "0", "0"]
    assert "0.01 × the median training std" in html


def test_overview_table_links_each_result_and_shows_median() -> None:
    html = render_report(
        [make_result(), make_result("mobile<net>")], title="t", figures={}, environment=ENV
    )
    rows = _table_rows(html, "overview")
    assert rows[0][0] == '<a href="#result-1">efficientnet_lite0</a>'
    assert rows[1][0] == '<a href="#result-2">mobile&lt;net&gt;</a>'
    assert _header(html, "overview")[3:7] == [
        "split",
        "best layer",
        "test R² mean ± std [95 % CI]",
        "median R²",
    ]
    assert rows[0][3] == "per-class"
    assert rows[0][6] == f"{np.median([0.83, 0.85]):.3f}"


def test_write_profile_run_files_columns_and_atomic_figure(tmp_path, monkeypatch) -> None:
    import pandas as pd

    from rcvlab.report.run import write_profile_run

    result = make_result()
    files = write_profile_run(tmp_path, [result, make_result("mobilenet_v2")])
    names = {"profile.json", "profile_mobilenet_v2.json", "profile.csv", "profile.png"}
    assert {p.name for p in tmp_path.iterdir()} == names | {"skipped.csv", "report.html"}
    assert files["profile.png"].read_bytes().startswith(b"\x89PNG")
    csv = pd.read_csv(files["profile.csv"])
    assert list(csv.columns) == ["model", "weights", *ProfileResult.frame_columns]
    model_rows = csv[(csv.model == "efficientnet_lite0") & (csv.profile == "model")]
    want = [float(np.median(s.r2)) for s in result.profiles["model"]]
    np.testing.assert_allclose(model_rows.r2_median, want, rtol=1e-12)
    assert (csv.n_floored == 0).all()
    assert ProfileResult.from_json(files["profile.json"]) == result

    # A run killed while the figure is being written leaves the previous file, not a
    # half-written one, and no temporary file.
    files["profile.png"].write_bytes(b"previous")

    def killed(self, fname, *args, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed)
    with pytest.raises(KeyboardInterrupt):
        write_profile_run(tmp_path, [result])
    assert files["profile.png"].read_bytes() == b"previous"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- leave-one-class-out profiles beside the per-class ones ---------------------------------


def _loco_pair(model: str = "toy"):
    """A per-class and a leave-one-class-out profile of the same planted features."""
    from rcvlab.probe import probe_layers

    rng = np.random.default_rng(0)
    n = 60
    y = rng.uniform(0, 1, n)
    classes = np.repeat(["bird", "car", "kite"], 20)
    sign = np.where(classes == "kite", -1.0, 1.0)
    feats = {
        "same": np.column_stack([y, rng.standard_normal(n)]) + 0.01 * rng.standard_normal((n, 2)),
        "flip": np.column_stack([sign * y, rng.standard_normal(n)]),
    }
    rnd = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    kw = dict(classes=classes, random_features=rnd)
    per = probe_layers(feats, y, reps=3, **kw).with_meta(model=model, measure="scale")
    loco = probe_layers(feats, y, split="leave-one-class-out", **kw)
    return per, loco.with_meta(model=model, measure="scale")


def test_loco_section_shows_split_and_held_out_classes() -> None:
    per, loco = _loco_pair()
    html = render_report([per, loco], title="t", figures={}, environment=ENV)
    assert [r[3] for r in _table_rows(html, "overview")] == ["per-class", "leave-one-class-out"]
    assert "toy — scale (leave-one-class-out)" in html
    assert "fitted on all other classes, R² on the held-out class" in html
    assert "one split per class, 95 % CI a Student-t interval over the held-out classes" in html
    assert "held-out classes</dt><dd>bird, car, kite</dd>" in html
    # the loco section has one column per held-out class, with its R²
    sections = html.split('<section id="result-2">')[1]
    head = _header(sections, "layers")
    assert head[5:8] == ["bird held out", "car held out", "kite held out"]
    rows = _table_rows(sections, "layers")
    flip = loco.score("flip").r2_by_class
    assert rows[1][5:8] == [fmt_num(flip[c][0]) for c in ("bird", "car", "kite")]
    assert flip["kite"][0] < 0 < per.score("flip").r2_mean


def test_split_comparison_section_table() -> None:
    from rcvlab.report.html import split_comparison_section

    per, loco = _loco_pair()
    html = split_comparison_section([per], [loco], notes=["a <note>"])
    assert "a &lt;note&gt;" in html and "<h3>toy</h3>" in html
    head = _header(html, "layers")
    assert head[:7] == [
        "#",
        "layer",
        "per class R²",
        "per class random R²",
        "held-out R²",
        "held-out random R²",
        "held-out shuffled R²",
    ]
    rows = _table_rows(html, "layers")
    for row, layer in zip(rows, ("same", "flip"), strict=True):
        assert row[2] == fmt_num(per.score(layer).r2_mean)
        assert row[3] == fmt_num(per.score(layer, "random").r2_mean)
        assert row[4] == fmt_num(loco.score(layer).r2_mean)
        assert row[5] == fmt_num(loco.score(layer, "random").r2_mean)
        assert row[6] == fmt_num(loco.score(layer, "shuffled").r2_mean)
    # per class the sign flip costs nothing (flip, noiseless, is best); held out it fails
    assert [r[1] for r in rows] == ["same ◆", "flip ★"]
    with pytest.raises(ValueError):
        split_comparison_section([per], [])


def test_write_profile_run_with_held_out_profiles(tmp_path) -> None:
    import pandas as pd

    from rcvlab.report.run import write_profile_run

    per, loco = _loco_pair()
    per2, loco2 = _loco_pair("net2")
    files = write_profile_run(tmp_path, [per, per2], held_out=[loco, loco2])
    names = {
        "profile.json",
        "profile_net2.json",
        "profile_loco.json",
        "profile_loco_net2.json",
        "profile.csv",
        "profile.png",
        "profile_splits.png",
        "skipped.csv",
        "report.html",
    }
    assert {p.name for p in tmp_path.iterdir()} == names
    assert ProfileResult.from_json(files["profile_loco.json"]).split == "leave-one-class-out"
    assert ProfileResult.from_json(files["profile_loco_net2.json"]).model == "net2"
    assert ProfileResult.from_json(files["profile.json"]) == per
    csv = pd.read_csv(files["profile.csv"])
    assert list(csv.columns) == ["model", "weights", *ProfileResult.frame_columns]
    assert csv.groupby(["model", "split"]).size().to_dict() == {
        ("net2", "leave-one-class-out"): 6,
        ("net2", "per-class"): 6,
        ("toy", "leave-one-class-out"): 6,
        ("toy", "per-class"): 6,
    }
    rows = csv[(csv.model == "toy") & (csv.split == "leave-one-class-out")]
    np.testing.assert_allclose(
        rows[rows.profile == "model"].r2_mean, [s.r2_mean for s in loco.profiles["model"]]
    )
    assert (rows.n_reps == 3).all()
    html = files["report.html"].read_text()
    assert html.count("<img ") == 2 and "Per class versus leave-one-class-out" in html
    assert files["profile_splits.png"].read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="1 held-out profiles for 2"):
        write_profile_run(tmp_path, [per, per2], held_out=[loco])
