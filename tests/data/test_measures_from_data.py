"""Registered concept measures computed on demand from a data source's images and masks."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import disk

from rcvlab import DataError
from rcvlab.data import read_csv_manifest
from rcvlab.measures import colourfulness


def _write(tmp_path, n=6, with_masks=True, missing_mask=None):
    rows, areas = [], []
    for i in range(n):
        img = np.zeros((48, 48, 3), np.uint8)
        img[..., 0] = 40 * i
        img[::2, :, 1] = 200  # stripes: some texture
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        mask = np.zeros((48, 48), np.uint8)
        rr, cc = disk((24, 24), 3 + i)
        mask[rr, cc] = 255
        areas.append(len(rr))
        Image.fromarray(mask).save(tmp_path / f"m{i}.png")
        row = {"path": f"im{i}.png", "size": float(i)}
        if with_masks:
            row["mask"] = "" if i == missing_mask else f"m{i}.png"
        rows.append(row)
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    return tmp_path / "d.csv", np.array(areas, float)


def test_nuclei_area_from_mask_column(tmp_path):
    csv, areas = _write(tmp_path, missing_mask=2)
    data = read_csv_manifest(csv)
    assert data.has_masks
    got = data.measure("nuclei_area")
    np.testing.assert_array_equal(np.delete(got, 2), np.delete(areas, 2))
    assert np.isnan(got[2])
    (skip,) = [s for s in data.skipped if "nuclei_area" in s.reason]
    assert skip.path.endswith("im2.png") and "missing mask" in skip.reason
    sub = data.subset([3, 1])
    np.testing.assert_array_equal(sub.measure("nuclei_area"), areas[[3, 1]])


def test_image_measure_without_masks(tmp_path):
    csv, _ = _write(tmp_path, with_masks=False)
    data = read_csv_manifest(csv)
    want = [colourfulness(np.asarray(Image.open(tmp_path / f"im{i}.png"))) for i in range(6)]
    np.testing.assert_allclose(data.measure("colourfulness"), want)
    with pytest.raises(DataError, match="needs nuclei masks"):
        data.measure("nuclei_area")
