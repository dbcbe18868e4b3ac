"""``--data`` spec parsing: every form, bare paths, pass-through and errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import ArrayImageSet, ImageSet, open_data
from rcvlab.errors import DataError, UnknownNameError


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for name, cls in (("a", "cat"), ("b", "dog")):
        Image.new("RGB", (64, 48)).save(root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>64</width>"
            f"<height>48</height></size><object><name>{cls}</name><bndbox><xmin>0</xmin>"
            "<ymin>0</ymin><xmax>32</xmax><ymax>48</ymax></bndbox></object></annotation>"
        )
    return root


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    p = tmp_path / "m.csv"
    p.write_text("path,class,r\nx.png,cat,0.5\n")
    return p


@pytest.fixture
def fake_scaleset(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-in for rcvlab.data.scaleset that records its calls."""
    calls: list[dict[str, Any]] = []

    def scaleset(classes: list[str] | None = None, **kw: Any) -> ImageSet:
        calls.append({"classes": classes, **kw})
        return ArrayImageSet(np.zeros((1, 8, 8, 3), dtype=np.uint8), {"scale_ratio": [0.5]})

    mod = types.ModuleType("rcvlab.data.scaleset")
    mod.scaleset = scaleset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rcvlab.data.scaleset", mod)
    return calls


@pytest.mark.parametrize("form", ["voc:{}", "imagenet:{}", "VOC:{}", "{}"])
def test_voc_forms(voc_dir: Path, form: str) -> None:
    ds = open_data(form.format(voc_dir))
    assert len(ds) == 2
    assert ds.source.split(":")[0] == ("imagenet" if form.startswith("imagenet") else "voc")


def test_voc_passes_cls_and_strict(voc_dir: Path) -> None:
    ds = open_data(f"voc:{voc_dir}", cls="dog")
    assert ds.classes is not None and ds.classes.tolist() == ["dog"]
    (voc_dir / "Annotations" / "c.xml").write_text("<annotation>")
    assert len(open_data(f"voc:{voc_dir}")) == 2
    with pytest.raises(DataError, match="malformed XML"):
        open_data(f"voc:{voc_dir}", strict=True)


@pytest.mark.parametrize("form", ["csv:{}", "{}"])
def test_csv_forms(csv_file: Path, form: str) -> None:
    ds = open_data(form.format(csv_file))
    assert len(ds) == 1 and ds.source == f"csv:{csv_file}"
    np.testing.assert_allclose(ds.measure("r"), [0.5])


def test_relative_bare_path(csv_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(csv_file.parent)
    assert len(open_data("m.csv")) == 1
    assert len(open_data("csv:m.csv")) == 1


@pytest.mark.parametrize(
    ("spec", "cls", "classes"),
    [
        ("scaleset", None, None),
        ("scaleset:cat", None, ["cat"]),
        ("scaleset:cat, coffee", None, ["cat", "coffee"]),
        ("scaleset", "rocket", ["rocket"]),
        ("scaleset:cat,coffee", "coffee", ["coffee"]),
    ],
)
def test_scaleset_forms(
    fake_scaleset: list[dict[str, Any]], spec: str, cls: str | None, classes: list[str] | None
) -> None:
    ds = open_data(spec, cls=cls, n_per_class=5, seed=3)
    assert len(ds) == 1
    assert fake_scaleset == [{"classes": classes, "n_per_class": 5, "seed": 3}]


def test_scaleset_errors(fake_scaleset: list[dict[str, Any]]) -> None:
    with pytest.raises(DataError, match="No class"):
        open_data("scaleset:")
    with pytest.raises(DataError, match="'rocket' is not among"):
        open_data("scaleset:cat", cls="rocket")
    assert fake_scaleset == []


def test_scaleset_options_rejected_elsewhere(csv_file: Path) -> None:
    with pytest.raises(DataError, match=r"seed=1 \(--seed\) does not apply to --data 'csv:"):
        open_data(f"csv:{csv_file}", seed=1)


def test_image_set_passes_through() -> None:
    ims = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    ds = ArrayImageSet(ims, {"m": [1.0, 2.0, 3.0]}, classes=["a", "b", "a"])
    assert open_data(ds) is ds
    sub = open_data(ds, cls="a")
    np.testing.assert_array_equal(sub.measure("m"), [1.0, 3.0])
    with pytest.raises(DataError, match="No image of class 'c'"):
        open_data(ds, cls="c")


@pytest.mark.parametrize(
    ("spec", "hint"),
    [("vco:/x", "Did you mean 'voc'"), ("scalset", "Did you mean 'scaleset'"), ("zip:/x", "")],
)
def test_unknown_forms_list_the_valid_ones(spec: str, hint: str) -> None:
    with pytest.raises(UnknownNameError) as e:
        open_data(spec)
    msg = str(e.value)
    assert hint in msg
    assert "voc:DIR" in msg and "csv:FILE" in msg and "scaleset:CLASS[,CLASS]" in msg


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_data(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="does not exist"):
        open_data(f"voc:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="names no folder"):
        open_data("voc:")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match=r"not a \.csv"):
        open_data(str(tmp_path / "f.txt"))
