"""report.html of a reproduce run, on a stand-in run folder; structure and a real browser."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from tests.reproduce.browser import broken_links, check_page, find_chromium

from rcvlab.reproduce import report as rr
from rcvlab.runio import finish_run, write_figure, write_text

N_CSV_ROWS = 45  # above rr.MAX_ROWS: the page shows the first rows only
EVIL = "<script>alert(1)</script>"


def _png(path: Path, width: float, height: float) -> None:
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 2])
    write_figure(path, fig, dpi=50)


def _config() -> SimpleNamespace:
    steps = [
        SimpleNamespace(id="profile", kind="profile", options={"layers": ["a", "b"], "reps": 10}),
        SimpleNamespace(id="transfer", kind="transfer"),
        SimpleNamespace(id="finetune", kind="finetune"),
        SimpleNamespace(id="cam", kind="cam"),
    ]
    return SimpleNamespace(
        name="standin",
        paper="000",
        title="Stand-in & <test> paper",
        inputs={"imagenet": SimpleNamespace(kind="imagenet", required=True, help="ImageNet")},
        networks={"iv3": SimpleNamespace(model="timm:resnet10t", weights="random", input_size=64)},
        steps=steps,
        seed=7,
        overrides={"steps.profile.reps": 2},
        published=["000/tableA1/mixed8/imagenet"],
    )


def _result() -> dict:
    # A mapping stands in for helper A's ReproduceResult: the page reads the same fields.
    return {
        "kind": "reproduce",
        "steps": {
            "profile": {"kind": "profile", "status": "done", "seconds": 12.34},
            "transfer": {"kind": "transfer", "status": "loaded", "seconds": 3.0},
            "finetune": {
                "kind": "finetune",
                "status": "failed",
                "seconds": 0.5,
                "error": "DataError: no images in <folder>",
            },
            # "cam" never ran: not in the result at all
        },
    }


def _comparison() -> pd.DataFrame:
    # diff_in_std by hand: (0.875 - 0.80) / 0.05 = +1.5; (0.30 - 0.50) / 0.04 = -5
    return pd.DataFrame(
        {
            "key": ["000/tableA1/mixed8/imagenet", "000/table2/mae", "001/table1/angle"],
            "source": ["paper 000, Table A1", "paper 000, Table 2", "paper 001, Table 1"],
            "published": [0.80, 0.50, 30.0],
            "published_std": [0.05, 0.04, 2.0],
            "ours": [0.875, 0.30, np.nan],
            "ours_std": [0.01, 0.02, np.nan],
            "diff_in_std": [1.5, -5.0, np.nan],
            "verdict": ["within", "outside", "n/a"],
        }
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    prof = out / "steps" / "profile"
    prof.mkdir(parents=True)
    _png(prof / "profile.png", 3, 2)
    _png(prof / "baselines.png", 2, 2)
    rows = [{"layer": f"L{i}", "r2_mean": i / 100, "n": i} for i in range(N_CSV_ROWS)]
    pd.DataFrame(rows).to_csv(prof / "profile.csv", index=False)
    write_text(prof / "profile.json", '{"kind": "profile"}\n')
    write_text(prof / "report.html", "<!DOCTYPE html><html><body>own</body></html>\n")
    finish_run(prof)
    tr = out / "steps" / "transfer"
    (tr / "images").mkdir(parents=True)
    _png(tr / "images" / "seed 0.png", 2, 3)
    pd.DataFrame({"target": [EVIL, "b"], "mae": [0.123456, 2.5]}).to_csv(
        tr / "transfer.csv", index=False
    )
    write_text(tr / "skipped.csv", "path,reason\nimg 7.jpg,unreadable JPEG\n")
    finish_run(tr)
    ft = out / "steps" / "finetune"
    ft.mkdir(parents=True)
    write_text(ft / "run.json", '{"status": "running"}\n')
    manifest = {
        "rcvlab_version": "0.9.0",
        "config_hash": "abc123",
        "config_text": "name: standin\nsteps:\n  - id: profile\n",
        "versions": {"torch": "2.4.0", "numpy": "2.0.0"},
        "seeds": {"profile": 0, "transfer": 1},
        "data": {"imagenet": {"path": "/data/imagenet", "fingerprint": "f00d"}},
        "timings": {"profile": {"status": "done", "seconds": 12.34}},
    }
    write_text(out / "manifest.json", json.dumps(manifest) + "\n")
    write_text(out / "reproduce.json", json.dumps(_result()) + "\n")
    return out


def _write(out: Path, **kw) -> Path:
    env = {"python": "3.x"}  # environment_info is not what is tested here; keep it fixed
    return rr.write_reproduce_report(
        out, _result(), _config(), comparison=_comparison(), environment=env, **kw
    )


class Page(HTMLParser):
    """Tags of a page: images, links, ids, tables (with their rows' cells), script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.scripts = 0
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.tables.append((a.get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, css: str) -> list[list[str]]:
        found = [rows for cls, rows in self.tables if css in cls.split()]
        assert len(found) == 1, f"{len(found)} tables of class {css}"
        return found[0]


def _parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_report_structure(run_dir: Path) -> None:
    path = _write(run_dir)
    assert path == run_dir / "report.html"
    page = _parse(path)
    text = path.read_text(encoding="utf-8")
    assert page.scripts == 0  # no JavaScript, and the csv's <script> cell is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Stand-in &amp; &lt;test&gt; paper" in text

    # every figure of every step folder, embedded byte for byte
    pngs = sorted(run_dir.glob("steps/*/**/*.png"))
    assert len(pngs) == 3
    assert all(s.startswith("data:image/png;base64,") for s in page.imgs)
    embedded = sorted(base64.b64decode(s.split(",", 1)[1]) for s in page.imgs)
    assert embedded == sorted(p.read_bytes() for p in pngs)

    steps = page.table("steps")
    assert steps[0] == ["step", "kind", "status", "seconds", "step report"]
    assert [r[:4] for r in steps[1:]] == [
        ["profile", "profile", "done", "12.3 s"],
        ["transfer", "transfer", "loaded", "3.0 s"],
        ["finetune", "finetune", "failed", "0.5 s"],
        ["cam", "cam", "not run", "n/a"],
    ]
    assert [r[4] for r in steps[1:]] == ["report.html", "none", "none", "none"]
    for sid in ("profile", "transfer", "finetune", "cam"):
        assert f"step-{sid}" in page.ids
    assert "<dt>reps</dt><dd>10</dd>" in text and "<dd>a, b</dd>" in text
    assert "<dt>--set steps.profile.reps</dt><dd>2</dd>" in text
    assert "This step did not run: no output." in text
    assert "DataError: no images in &lt;folder&gt;" in text
    assert "This step did not finish (failed)" in text

    pub = page.table("published")
    assert [r[0] for r in pub[1:]] == list(_comparison()["key"])
    assert [r[7:] for r in pub[1:]] == [["+1.50", "within"], ["-5.00", "outside"], ["n/a", "n/a"]]
    # the plain difference, shown for every number (the only one where the std is unknown)
    assert pub[1][6] == f"{0.875 - 0.800:+.2f}"
    assert [r[2:6] for r in pub[1:2]] == [["0.800", "0.050", "0.875", "0.010"]]
    assert "1 within, 1 outside, 1 n/a" in text
    # green and red verdicts
    assert re.search(r'<span style="background:#d3f9d8[^"]*">within</span>', text)
    assert re.search(r'<span style="background:#ffe3e3[^"]*">outside</span>', text)

    # the csv tables: profile.csv capped at MAX_ROWS rows (+ header), numbers formatted
    step_tables = [rows for cls, rows in page.tables if "steptable" in cls.split()]
    assert [len(rows) for rows in step_tables] == [rr.MAX_ROWS + 1, 3]
    assert step_tables[0][1] == ["L0", "0.000", "0"]
    assert step_tables[1][1:] == [[EVIL, "0.123"], ["b", "2.500"]]
    assert f"first {rr.MAX_ROWS} of {N_CSV_ROWS} rows" in text

    # the manifest's nested parts as tables, the config text folded
    manifest_cells = {
        r[0] for cls, rows in page.tables if "manifest" in cls.split() for r in rows[1:]
    }
    assert {"torch", "profile", "imagenet"} <= manifest_cells
    assert "f00d" in text and "abc123" in text and "<summary>show" in text

    # the skipped item of the transfer step, under Skipped items
    assert ["[transfer] img 7.jpg", "unreadable JPEG"] in page.table("skipped")

    # every link relative and existing; no link off the machine
    assert page.links
    assert broken_links(path, page.links, page.ids) == []
    assert "steps/profile/report.html" in page.links
    assert "steps/transfer/transfer.csv" in page.links
    assert "manifest.json" in page.links


def test_broken_links_detects(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    (tmp_path / "a b.csv").write_text("x\n")
    links = ["a%20b.csv", "#here", "missing.csv", "#nowhere", "https://x.org/", "file:///etc"]
    assert broken_links(page, links, ["here"]) == links[2:]


def test_missing_parts_are_said(run_dir: Path) -> None:
    (run_dir / "manifest.json").unlink()
    empty = _comparison().iloc[:0]
    html = rr.render_reproduce_report(run_dir, _result(), _config(), empty, environment={})
    assert "No manifest.json in the run folder." in html
    assert "This config reports no published numbers." in html
    extra = _comparison().assign(unit=["R²", "", None], step=["profile", "transfer", ""])
    assert re.search(r"<td>R²</td>\s*<td>profile</td>", rr.published_section(extra))
    with pytest.raises(ValueError, match="verdict"):
        rr.published_section(_comparison().drop(columns="verdict"))


def test_step_entries_order_and_status(tmp_path: Path) -> None:
    result = _result()
    result["steps"]["extra"] = {"kind": "texture", "status": "done", "seconds": None}
    entries = rr.step_entries(result, _config())
    assert [(e.id, e.status) for e in entries] == [
        ("profile", "done"),
        ("transfer", "loaded"),
        ("finetune", "failed"),
        ("cam", "not run"),
        ("extra", "done"),
    ]
    # records as a list with ids, objects instead of mappings
    rec = SimpleNamespace(
        id="cam", kind="cam", status="skipped", seconds=1, result_file="", note="input x not given"
    )
    got = rr.step_entries(SimpleNamespace(steps=(rec,)), _config())
    assert [(e.id, e.status, e.note) for e in got] == [
        ("profile", "not run", ""),
        ("transfer", "not run", ""),
        ("finetune", "not run", ""),
        ("cam", "skipped", "input x not given"),
    ]
    html = rr.render_reproduce_report(
        tmp_path, SimpleNamespace(steps=(rec,)), _config(), _comparison(), environment={}
    )
    assert "input x not given" in html and "This step was skipped: no output." in html


def test_csv_table_unreadable(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "not shown" in rr.csv_table(empty)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    assert "no rows" in rr.csv_table(header)


def test_default_comparison_uses_published_compare(run_dir: Path, monkeypatch) -> None:
    published = pytest.importorskip("rcvlab.reproduce.published")
    runner = pytest.importorskip("rcvlab.reproduce.runner")
    seen = {}
    loaded = {"profile": object()}

    def fake_step_results(out, result):
        seen["out"], seen["result"] = out, result
        return loaded

    def fake_compare(config, results):
        seen["config"], seen["results"] = config, results
        return _comparison()

    monkeypatch.setattr(runner, "step_results", fake_step_results)
    monkeypatch.setattr(published, "compare", fake_compare)
    config, result = _config(), _result()
    rr.write_reproduce_report(run_dir, result, config, environment={})
    assert seen == {"out": run_dir, "result": result, "config": config, "results": loaded}
    assert "000/tableA1/mixed8/imagenet" in (run_dir / "report.html").read_text()


def test_report_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: install the Debian package 'chromium' (/usr/bin/chromium)")
    path = _write(run_dir)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    seen = check_page(path, profile, chromium=chromium)
    assert seen.loaded, seen.errors
    assert seen.errors == []
    assert len(seen.images) == 3
    for img in seen.images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert broken_links(path, seen.links, seen.ids) == []
    assert {"steps", "published", "manifest", "steptable", "env"} <= set(
        c for t in seen.tables for c in t.split()
    )
    assert not list(run_dir.glob(".browser-check-*"))  # the checked copy is removed


def test_browser_check_can_fail(tmp_path: Path) -> None:
    """A page with an image that does not decode and a dead link is reported as such."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: install the Debian package 'chromium' (/usr/bin/chromium)")
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
        '<a href="gone.html">x</a></body></html>'
    )
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    seen = check_page(page, profile, chromium=chromium)
    assert seen.loaded
    assert [i["width"] for i in seen.images] == [0]
    assert broken_links(page, seen.links, seen.ids) == ["gone.html"]
