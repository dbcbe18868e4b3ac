import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk

from rcvlab import DataError
from rcvlab.data import open_data
from rcvlab.probe.splits import group_split


def _patch(path, mask_path, radius):
    img = np.full((40, 40, 3), 220, np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    rr, cc = disk((20, 20), radius)
    img[rr, cc] = (80, 40, 120)
    mask[rr, cc] = 255
    Image.fromarray(img).save(path)
    if mask_path is not None:
        Image.fromarray(mask).save(mask_path)
    return len(rr)


def test_janowczyk_layout(tmp_path):
    areas = {}
    for mag, r in (("10X", 3), ("40X", 12)):
        (tmp_path / mag).mkdir()
        for src in ("12750", "8863"):
            name = f"{src}_500_f0001"
            areas[(mag, src)] = _patch(
                tmp_path / mag / f"{name}_original.tif", tmp_path / mag / f"{name}_mask.png", r
            )
    (tmp_path / "notes").mkdir()  # not a magnification folder: ignored
    data = open_data(f"janowczyk:{tmp_path}")
    assert len(data) == 4 and data.classes.tolist() == ["10X", "10X", "40X", "40X"]
    assert data.groups.tolist() == ["12750", "8863", "12750", "8863"]
    got = data.measure("nuclei_area")
    want = [
        areas[("10X", "12750")],
        areas[("10X", "8863")],
        areas[("40X", "12750")],
        areas[("40X", "8863")],
    ]
    np.testing.assert_array_equal(got, want)


def test_generic_folder_layout_missing_mask_and_groups(tmp_path):
    (tmp_path / "5x").mkdir()
    (tmp_path / "20X").mkdir()
    for i in range(6):
        _patch(tmp_path / "5x" / f"s{i}_a.png", tmp_path / "5x" / f"s{i}_a_mask.png", 2)
        mask = None if i == 3 else tmp_path / "20X" / f"s{i}_b_mask.png"
        _patch(tmp_path / "20X" / f"s{i}_b.png", mask, 8)
    data = open_data(f"folder:{tmp_path}")
    assert sorted(set(data.classes.tolist())) == ["20X", "5X"] and len(data) == 12
    a = data.measure("nuclei_area")
    assert np.isnan(a).sum() == 1 and any("no mask" in s.reason for s in data.skipped)
    tr, va, te = group_split(data.groups, (0.6, 0.2, 0.2), seed=0)
    g = data.groups
    assert not (set(g[tr]) & set(g[te])) and not (set(g[tr]) & set(g[va]))


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_data(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="No magnification folder"):
        open_data(f"folder:{tmp_path}")
