"""CSV manifest: path resolution, measure columns, classes/groups, skips and errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import read_csv_manifest
from rcvlab.errors import DataError


def img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (10, 20, 30)).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "set"
    img(d / "img" / "a.png")
    img(d / "img" / "b.png")
    img(tmp_path / "elsewhere" / "c.png")
    return d


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_relative_paths_resolve_against_the_csv_folder(folder: Path, tmp_path: Path) -> None:
    c = tmp_path / "elsewhere" / "c.png"
    csv = write_csv(
        folder / "m.csv",
        f"path,class,group,area,ratio\nimg/a.png,x,s1,10.5,0.1\n{c},y,s2,,0.2\n"
        "img/b.png,x,s1,nan,0.3\n",
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative paths must not depend on the working directory
    try:
        ds = read_csv_manifest(csv)
    finally:
        os.chdir(cwd)
    assert ds.ids == [str(folder / "img" / "a.png"), str(c), str(folder / "img" / "b.png")]
    assert sorted(ds.measures) == ["area", "ratio"]
    np.testing.assert_array_equal(ds.measure("area"), [10.5, np.nan, np.nan])
    np.testing.assert_allclose(ds.measure("ratio"), [0.1, 0.2, 0.3])
    assert ds.classes is not None and ds.classes.tolist() == ["x", "y", "x"]
    assert ds.groups is not None and ds.groups.tolist() == ["s1", "s2", "s1"]
    assert ds.skipped == []
    assert ds.source == f"csv:{csv}"
    assert ds.load(1).size == (32, 32)


def test_classes_and_groups_are_optional(folder: Path) -> None:
    ds = read_csv_manifest(write_csv(folder / "m.csv", "path,r\nimg/a.png,1\nimg/b.png,2\n"))
    assert ds.classes is None and ds.groups is None
    np.testing.assert_allclose(ds.measure("r"), [1, 2])


def test_class_values_are_not_parsed_as_numbers(folder: Path) -> None:
    ds = read_csv_manifest(write_csv(folder / "m.csv", "path,class,r\nimg/a.png,01,1\n"))
    assert ds.classes is not None and ds.classes.tolist() == ["01"]


def test_missing_file_row_is_skipped(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,r\nimg/a.png,1\nimg/gone.png,2\n")
    ds = read_csv_manifest(csv)
    assert len(ds) == 1
    assert [(Path(s.path).name, s.reason) for s in ds.skipped] == [("gone.png", "missing file")]
    np.testing.assert_allclose(ds.measure("r"), [1])


def test_strict_raises_on_missing_file(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,r\nimg/a.png,1\nimg/gone.png,2\n")
    with pytest.raises(DataError, match=r"missing file .*gone\.png.*line 3") as e:
        read_csv_manifest(csv, strict=True)
    assert "strict" in str(e.value)


def test_missing_path_column_names_the_columns(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "Path,r\nimg/a.png,1\n")
    with pytest.raises(DataError, match=r"no 'path' column \(columns: Path, r\)") as e:
        read_csv_manifest(csv)
    assert "Did you mean 'Path'" in str(e.value)


def test_text_column_is_ignored_with_a_warning(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,note,r\nimg/a.png,hello,1\nimg/b.png,,2\n")
    with pytest.warns(UserWarning, match="note"):
        ds = read_csv_manifest(csv)
    assert list(ds.measures) == ["r"]


def test_mixed_column_is_an_error_naming_the_line(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,r\nimg/a.png,1\nimg/b.png,0.3x\n")
    with pytest.raises(DataError, match=r"Column 'r' .* \(line 3: '0.3x'\)"):
        read_csv_manifest(csv)


def test_pandas_index_column_is_ignored(folder: Path) -> None:
    ds = read_csv_manifest(write_csv(folder / "m.csv", ",path,r\n0,img/a.png,1\n"))
    assert list(ds.measures) == ["r"]


def test_duplicate_rows_and_empty_paths_are_skipped(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,r\nimg/a.png,1\n,2\nimg/a.png,3\nimg/b.png,4\n")
    ds = read_csv_manifest(csv)
    assert [Path(p).name for p in ds.ids] == ["a.png", "b.png"]
    assert [s.reason for s in ds.skipped] == ["empty path", "duplicate of line 2"]


def test_class_filter(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,class,r\nimg/a.png,x,1\nimg/b.png,y,2\n")
    ds = read_csv_manifest(csv, cls="y", strict=True)
    assert ds.classes is not None and ds.classes.tolist() == ["y"]
    assert [s.reason for s in ds.skipped] == ["class 'x', not 'y'"]
    with pytest.raises(DataError, match="needs a 'class' column"):
        read_csv_manifest(write_csv(folder / "n.csv", "path,r\nimg/a.png,1\n"), cls="y")


def test_no_usable_row_and_missing_manifest(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,r\ngone1.png,1\ngone2.png,2\n")
    with pytest.raises(DataError, match=r"2 of 2 rows skipped.*missing file \(2x\)"):
        read_csv_manifest(csv)
    with pytest.raises(DataError, match="does not exist"):
        read_csv_manifest(folder / "nope.csv")
    with pytest.raises(DataError, match=r"No usable row"):
        read_csv_manifest(write_csv(folder / "e.csv", "path,r\n"))


def test_relative_paths_ignore_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same relative names exist beside the CSV and in the working directory: the CSV's win
    data, cwd = tmp_path / "data", tmp_path / "cwd"
    for root, value in ((data, 200), (cwd, 10)):
        (root / "img").mkdir(parents=True)
        Image.new("RGB", (16, 16), (value, value, value)).save(root / "img" / "a.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[4 : 4 + value // 40, 4:8] = 255  # 5 rows beside the CSV, 0 in the cwd
        (root / "masks").mkdir()
        Image.fromarray(mask).save(root / "masks" / "a.png")
    (data / "sub").mkdir()
    csv = write_csv(data / "sub" / "m.csv", "path,mask\n../img/a.png,../masks/a.png\n")
    monkeypatch.chdir(cwd)
    ds = read_csv_manifest(Path("..") / "data" / "sub" / "m.csv")
    assert ds.ids == [str(data / "img" / "a.png")] and ds.source == f"csv:{csv}"
    assert ds.masks == [str(data / "masks" / "a.png")]
    assert ds.load(0).getpixel((0, 0)) == (200, 200, 200)
    np.testing.assert_array_equal(ds.measure("nuclei_area"), [20.0])  # 5 x 4 pixels


def test_repeated_column_name_is_an_error(folder: Path) -> None:
    # pandas would silently rename the second one to 'r.1'
    csv = write_csv(folder / "m.csv", "path,r,r\nimg/a.png,1,2\n")
    with pytest.raises(DataError, match=r"repeats the column\(s\) r; rename them"):
        read_csv_manifest(csv)


@pytest.mark.parametrize("value", ["inf", "-inf", "1e999"])
def test_infinite_measure_value_is_an_error_naming_the_line(folder: Path, value: str) -> None:
    csv = write_csv(folder / "m.csv", f"path,r\nimg/a.png,1\nimg/b.png,{value}\n")
    with pytest.raises(DataError, match=rf"Column 'r' .* infinite value \(line 3: '{value}'\)"):
        read_csv_manifest(csv)


def test_strict_raises_on_an_empty_or_missing_mask(folder: Path) -> None:
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "ma.png")
    empty = write_csv(folder / "e.csv", "path,mask\nimg/a.png,ma.png\nimg/b.png,\n")
    assert read_csv_manifest(empty).masks == [str(folder / "ma.png"), ""]
    with pytest.raises(DataError, match=r"empty mask cell \(line 3 of .*--strict"):
        read_csv_manifest(empty, strict=True)
    gone = write_csv(folder / "g.csv", "path,mask\nimg/a.png,ma.png\nimg/b.png,gone.png\n")
    with pytest.raises(DataError, match=r"missing mask file .*gone\.png \(line 3 of"):
        read_csv_manifest(gone, strict=True)


def test_manifest_that_is_a_folder_or_not_text(folder: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        read_csv_manifest(folder / "img")
    bad = folder / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00p\x00a\x00t\x00h")
    with pytest.raises(DataError, match="save it as UTF-8 CSV"):
        read_csv_manifest(bad)
