"""Camelyon-style tumour / non-tumour patches from a CSV or class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import open_data
from rcvlab.data.camelyon import (
    group_from_name,
    normalise_label,
    read_camelyon,
    read_camelyon_csv,
    read_camelyon_folders,
)
from rcvlab.errors import DataError


def png(path: Path, shade: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.full((24, 24, 3), (shade, 60, shade), np.uint8)
    rgb[8:16, 8:16] = (60, 20, 110)  # a dark purple "nucleus"
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def csv_tree(tmp_path: Path) -> Path:
    for name in ("patient_004_node_4_a.png", "patient_004_node_4_b.png", "p9_c.png", "d.png"):
        png(tmp_path / "img" / name)
    (tmp_path / "c.csv").write_text(
        "path,label,group\n"
        "img/patient_004_node_4_a.png,tumour,g1\n"
        "img/patient_004_node_4_b.png,0,g1\n"
        "img/p9_c.png,Tumor,g2\n"
        f"{tmp_path / 'img' / 'd.png'},normal,g3\n"
        "img/missing.png,1,g4\n"
    )
    return tmp_path


def test_csv_reader(csv_tree: Path) -> None:
    ds = read_camelyon_csv(csv_tree / "c.csv")
    assert len(ds) == 4
    assert ds.classes.tolist() == ["tumour", "non-tumour", "tumour", "non-tumour"]
    assert ds.groups.tolist() == ["g1", "g1", "g2", "g3"]
    assert ds.ids[0] == str(csv_tree / "img" / "patient_004_node_4_a.png")
    assert [s.reason for s in ds.skipped] == ["missing file"]
    assert ds.source == f"camelyon:{csv_tree / 'c.csv'}"
    assert ds.load(0).size == (24, 24)
    mask = ds.load_mask(0)
    assert ds.has_masks and mask.dtype == bool and mask[10:14, 10:14].all() and not mask[0, 0]
    assert "label" not in ds.measures
    with pytest.raises(DataError, match="missing file"):
        read_camelyon_csv(csv_tree / "c.csv", strict=True)


def test_csv_without_group_takes_it_from_the_name(csv_tree: Path) -> None:
    (csv_tree / "n.csv").write_text(
        "path,label\nimg/patient_004_node_4_a.png,1\nimg/p9_c.png,non_tumor\nimg/d.png,0.0\n"
    )
    ds = read_camelyon(csv_tree / "n.csv")
    assert ds.groups.tolist() == ["patient_004_node_4", "p9", "d"]
    assert ds.classes.tolist() == ["tumour", "non-tumour", "non-tumour"]


def test_folder_reader(tmp_path: Path) -> None:
    png(tmp_path / "tumour" / "patient_001_node_2_x0_y0.png")
    png(tmp_path / "tumour" / "patient_001_node_2_x0_y96.png")
    png(tmp_path / "Normal" / "12750_500.tif")
    png(tmp_path / "Normal" / "p7" / "x.png")  # nested: the patient folder is the group
    png(tmp_path / "Normal" / ".hidden.png")
    png(tmp_path / "other" / "ignored.png")
    (tmp_path / "tumour" / "notes.txt").write_text("not an image")
    ds = read_camelyon_folders(tmp_path)
    assert len(ds) == 4
    assert ds.classes.tolist() == ["tumour", "tumour", "non-tumour", "non-tumour"]
    assert ds.groups.tolist() == ["patient_001_node_2", "patient_001_node_2", "12750", "p7"]
    sub = open_data(f"camelyon:{tmp_path}", cls="non-tumour")
    assert set(sub.classes) == {"non-tumour"} and len(sub) == 2
    assert len(open_data(f"camelyon:{tmp_path}", n_per_class=1)) == 2


def test_labels_and_groups_by_rule() -> None:
    for raw in ("tumour", "TUMOR", "1", " 1.0 "):
        assert normalise_label(raw) == "tumour"
    for raw in ("non-tumour", "Non_Tumor", "non tumour", "nontumor", "normal", "0"):
        assert normalise_label(raw) == "non-tumour"
    assert normalise_label("benign") is None
    assert group_from_name("Patient_010_Node_3_x.png") == "Patient_010_Node_3"
    assert group_from_name("abc.png") == "abc"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("path,group\nimg/d.png,g\n", "has no 'label' column"),
        ("file,label\nimg/d.png,1\n", "no 'path' column"),
        ("path,label\nimg/d.png,benign\n", "Unknown label 'benign'"),
        ("path,label\nimg/missing.png,1\n", "No usable row"),
    ],
)
def test_bad_csv_one_line(csv_tree: Path, text: str, match: str) -> None:
    (csv_tree / "bad.csv").write_text(text)
    with pytest.raises(DataError) as e:
        open_data(f"camelyon:{csv_tree / 'bad.csv'}")
    assert match in str(e.value) and "\n" not in str(e.value)


def test_bad_paths_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "hollow" / "tumour").mkdir(parents=True)
    png(tmp_path / "x.png")
    cases = [
        (f"camelyon:{tmp_path / 'nope'}", "does not exist"),
        (f"camelyon:{tmp_path / 'empty'}", "No class folder"),
        (f"camelyon:{tmp_path / 'hollow'}", "hold no image"),
        (f"camelyon:{tmp_path / 'x.png'}", "not a .csv"),
        ("camelyon:", "names no"),
    ]
    for spec, match in cases:
        with pytest.raises(DataError) as e:
            open_data(spec)
        assert match in str(e.value) and "\n" not in str(e.value), spec
    with pytest.raises(DataError, match="does not apply"):
        open_data(f"camelyon:{tmp_path / 'empty'}", patch=64)
