"""Odd inputs a new user tries: each is one line of DataError or a listed skip, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import open_data
from rcvlab.errors import DataError, RcvlabError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    (tmp_path / "emptymag" / "10X").mkdir(parents=True)
    Image.new("RGB", (20, 20), (90, 30, 10)).save(tmp_path / "ok.png")
    (tmp_path / "garbage.png").write_bytes(b"this is not an image")
    mask = np.zeros((10, 10), np.uint8)
    mask[3:6, 3:6] = 255
    Image.fromarray(mask).save(tmp_path / "small_mask.png")
    return tmp_path


def csv(tree: Path, text: str) -> str:
    p = tree / "m.csv"
    p.write_text(text)
    return f"csv:{p}"


ERRORS: list[tuple[str, Callable[[Path], str], str]] = [
    ("voc: empty folder", lambda t: f"voc:{t / 'empty'}", "No .xml annotation files"),
    ("bare empty folder", lambda t: str(t / "empty"), "No .xml annotation files"),
    ("folder: empty folder", lambda t: f"folder:{t / 'empty'}", "No magnification folder"),
    ("folder: empty 10X", lambda t: f"folder:{t / 'emptymag'}", "No image files"),
    ("synsets: empty folder", lambda t: f"synsets:{t / 'empty'}", "No image in synset folders"),
    ("folder: a file", lambda t: f"folder:{t / 'ok.png'}", "is a file"),
    ("synsets: a file", lambda t: f"synsets:{t / 'ok.png'}", "is a file"),
    ("voc: a file", lambda t: f"voc:{t / 'ok.png'}", "is not a folder"),
    ("csv: a folder", lambda t: f"csv:{t / 'empty'}", "is a folder"),
    ("labels: a folder", lambda t: f"labels:{t / 'empty'}", "is a folder"),
    ("bare non-csv file", lambda t: str(t / "ok.png"), "not a .csv manifest"),
    ("empty csv", lambda t: csv(t, ""), "Cannot read manifest"),
    ("csv without path", lambda t: csv(t, "file,m\nok.png,1\n"), "no 'path' column"),
    ("csv mixed column", lambda t: csv(t, "path,m\nok.png,x\ngarbage.png,1\n"), "mixes numbers"),
    ("csv rows all bad", lambda t: csv(t, "path,m\nempty,1\n"), "No usable row"),
    ("histo unknown part", lambda t: "histo:bogus", "histo:real or histo:synthetic"),
]


@pytest.mark.parametrize(("case", "spec", "match"), ERRORS, ids=[c for c, _, _ in ERRORS])
def test_one_line_errors(tree: Path, case: str, spec: Callable[[Path], str], match: str) -> None:
    with pytest.raises(DataError) as e:
        open_data(spec(tree))
    assert match in str(e.value) and "\n" not in str(e.value)


def test_text_column_is_not_a_measure(tree: Path) -> None:
    with pytest.warns(UserWarning, match="ignoring non-numeric column"):
        ds = open_data(csv(tree, "path,m\nok.png,abc\n"))
    with pytest.raises(RcvlabError, match="Unknown measure 'm'"):
        ds.measure("m")


def test_unreadable_image_is_a_listed_skip_or_a_strict_error(tree: Path) -> None:
    spec = csv(tree, "path,m\nok.png,1\ngarbage.png,2\n")
    ds = open_data(spec)
    with pytest.raises(DataError, match=r"cannot decode image .*garbage\.png"):
        ds.load(1)
    values = ds.measure("colourfulness")
    assert np.isfinite(values[0]) and np.isnan(values[1])
    (skip,) = ds.skipped
    assert skip.path.endswith("garbage.png") and "cannot decode image" in skip.reason
    with pytest.raises(DataError, match=r"garbage\.png.*drop strict"):
        open_data(spec, strict=True).measure("colourfulness")


def test_mask_of_the_wrong_size_is_a_listed_skip(tree: Path) -> None:
    ds = open_data(csv(tree, "path,mask\nok.png,small_mask.png\n"))
    assert np.isnan(ds.measure("glcm_contrast_nuclei")[0])
    (skip,) = ds.skipped
    assert "mask of shape (10, 10) does not match the image's (20, 20)" in skip.reason
    # the mask alone is fine: its own measures do not need the image
    assert ds.measure("nuclei_area")[0] == 9.0


def test_coloured_mask_is_a_listed_skip(tree: Path) -> None:
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tree / "red.png")
    ds = open_data(csv(tree, "path,mask\nok.png,red.png\n"))
    assert np.isnan(ds.measure("nuclei_area")[0])
    assert "channels differ" in ds.skipped[0].reason
