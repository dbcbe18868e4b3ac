import math

import numpy as np
import pytest
from skimage.draw import disk

from rcvlab.errors import DataError
from rcvlab.measures import (
    binarise_mask,
    nuclei_area,
    nuclei_count,
    nuclei_labels,
    nuclei_max_area,
    nuclei_morphology,
    nuclei_regions,
)


def _discs(shape=(80, 80), discs=(((20, 20), 5), ((20, 55), 6), ((55, 35), 7))):
    """Boolean mask with the given discs; returns (mask, areas counted by the drawing)."""
    mask = np.zeros(shape, dtype=bool)
    areas = []
    for centre, radius in discs:
        rr, cc = disk(centre, radius, shape=shape)
        mask[rr, cc] = True
        areas.append(len(rr))
    return mask, areas


def test_three_discs_mean_area():
    mask, areas = _discs()
    assert areas == [69, 109, 145]  # what skimage.draw.disk draws for radii 5, 6, 7
    assert nuclei_area(mask) == pytest.approx(np.mean(areas))
    assert nuclei_count(mask) == 3
    assert nuclei_max_area(mask) == 145


@pytest.mark.parametrize("scale", [1, 255])
def test_binary_mask_as_integers(scale):
    mask, areas = _discs()
    assert nuclei_area(mask.astype(np.uint8) * scale) == pytest.approx(np.mean(areas))


def test_float_binary_mask():
    mask, areas = _discs()
    assert nuclei_area(mask.astype(np.float32)) == pytest.approx(np.mean(areas))


def test_disc_touching_border_excluded():
    mask, areas = _discs(discs=(((20, 20), 5), ((40, 3), 6), ((55, 35), 7)))
    assert areas[1] < 109  # the border disc is clipped by the image
    assert nuclei_count(mask) == 2
    assert nuclei_area(mask) == pytest.approx((areas[0] + areas[2]) / 2)


def test_regions_of_one_or_two_pixels_excluded():
    mask, areas = _discs()
    mask[5, 70] = True  # 1 pixel
    mask[70, 5:7] = True  # 2 pixels
    mask[40, 70:73] = True  # 3 pixels: kept
    assert nuclei_count(mask) == 4
    assert nuclei_area(mask) == pytest.approx((sum(areas) + 3) / 4)


def test_empty_mask_gives_nan():
    m = nuclei_morphology(np.zeros((30, 30), dtype=np.uint8))
    assert m["nuclei_count"] == 0
    for k, v in m.items():
        if k != "nuclei_count":
            assert math.isnan(v), k
    assert math.isnan(nuclei_area(np.zeros((30, 30), dtype=bool)))
    assert nuclei_regions(np.zeros((30, 30), dtype=bool)) == []


def test_only_small_or_border_objects_gives_nan():
    mask = np.zeros((30, 30), dtype=bool)
    mask[10, 10] = True
    mask[0:5, 0:5] = True
    assert math.isnan(nuclei_area(mask))


def test_constant_masks_have_no_nuclei():
    # a constant numeric mask has nothing to threshold: no nuclei, not an error
    assert math.isnan(nuclei_area(np.full((20, 20), 7, dtype=np.uint8)))
    assert not binarise_mask(np.full((20, 20), 255, dtype=np.uint8)).any()
    # a boolean mask is taken as it is
    assert binarise_mask(np.ones((20, 20), dtype=bool)).all()


def test_otsu_on_noisy_grey_mask():
    rng = np.random.default_rng(0)
    mask, areas = _discs()
    grey = np.where(mask, 200.0, 0.0) + rng.normal(0, 15, mask.shape)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    assert np.unique(grey).size > 2  # really goes through Otsu
    assert np.array_equal(binarise_mask(grey), mask)
    assert nuclei_area(grey) == pytest.approx(np.mean(areas))
    # the same as float in [0, 1]
    assert nuclei_area(grey / 255.0) == pytest.approx(np.mean(areas))


def test_closing_joins_a_one_pixel_gap_but_not_two():
    one = np.zeros((20, 30), dtype=bool)
    one[5:10, 5:10] = True
    one[5:10, 11:16] = True  # column 10 is a 1-px gap
    assert nuclei_count(one) == 1
    assert nuclei_area(one) == 5 * 11  # the gap is filled
    two = np.zeros((20, 30), dtype=bool)
    two[5:10, 5:10] = True
    two[5:10, 12:17] = True  # columns 10-11: 2-px gap
    assert nuclei_count(two) == 2
    assert nuclei_area(two) == 25


def test_closing_fills_one_pixel_hole():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:12, 5:12] = True
    mask[8, 8] = False
    m = nuclei_morphology(mask)
    assert m["nuclei_area"] == 49
    assert m["nuclei_euler"] == 1


def test_shape_measures_of_a_square_and_a_ring():
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:15, 5:15] = True  # 10 x 10 square
    m = nuclei_morphology(mask)
    assert m["nuclei_eccentricity"] == pytest.approx(0.0, abs=1e-9)
    assert m["nuclei_solidity"] == pytest.approx(1.0)
    assert m["nuclei_euler"] == 1
    ring = np.zeros((40, 40), dtype=bool)
    ring[10:30, 10:30] = True
    ring[15:25, 15:25] = False  # a 10 x 10 hole survives the closing
    assert nuclei_morphology(ring)["nuclei_euler"] == 0
    assert nuclei_morphology(ring)["nuclei_area"] == 400 - 100


def test_morphology_subset_of_keys():
    mask, areas = _discs()
    assert nuclei_morphology(mask, ["nuclei_area", "nuclei_count"]) == {
        "nuclei_area": pytest.approx(np.mean(areas)),
        "nuclei_count": 3,
    }
    full = nuclei_morphology(mask)
    assert set(full) == {
        "nuclei_area",
        "nuclei_count",
        "nuclei_max_area",
        "nuclei_eccentricity",
        "nuclei_perimeter",
        "nuclei_solidity",
        "nuclei_euler",
    }
    with pytest.raises(ValueError, match="unknown nuclei measures"):
        nuclei_morphology(mask, ["nuclei_size"])


def test_labels_are_consecutive_after_removal():
    mask, _ = _discs()
    mask[5, 70] = True
    labels = nuclei_labels(mask)
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]


def test_grey_mask_saved_as_rgb():
    mask, areas = _discs()
    rgb = np.repeat((mask * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    assert nuclei_area(rgb) == pytest.approx(np.mean(areas))
    rgb[0, 0, 1] = 7
    with pytest.raises(DataError, match="colour channels"):
        nuclei_area(rgb)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 3, 5)), np.zeros((0, 4)), np.array([[0.0, np.nan], [1.0, 0.5]])],
)
def test_unusable_masks(bad):
    with pytest.raises(DataError):
        nuclei_area(bad)


def _independent_labels(mask: np.ndarray) -> np.ndarray:
    """The nuclei regions computed with scipy.ndimage: 8-connected, regions of >= 3 px."""
    from scipy import ndimage
    from skimage.morphology import closing
    from skimage.segmentation import clear_border

    fg = clear_border(closing(binarise_mask(mask), footprint=np.ones((2, 2), bool)))
    labels, _ = ndimage.label(fg, structure=np.ones((3, 3), dtype=int))
    areas = np.bincount(labels.ravel())
    keep = areas >= 3
    keep[0] = False
    return np.where(keep[labels], labels, 0)


@pytest.mark.parametrize("seed", range(5))
def test_small_object_removal_matches_scipy_on_random_masks(seed):
    # sparse random masks have many 1- and 2-pixel objects, 4- and 8-connected
    rng = np.random.default_rng(seed)
    mask = rng.random((60, 60)) < 0.12
    want = _independent_labels(mask)
    got = nuclei_labels(mask)
    np.testing.assert_array_equal(got > 0, want > 0)
    assert got.max() == len(np.unique(want)) - 1  # consecutive labels 1..n
    got_areas = sorted(np.bincount(got.ravel())[1:].tolist())
    want_areas = sorted(a for a in np.bincount(want.ravel())[1:].tolist() if a > 0)
    assert got_areas == want_areas
    assert len(got_areas) > 3 and min(got_areas) >= 3


def test_area_threshold_boundary_two_removed_three_kept():
    mask = np.zeros((30, 30), dtype=bool)
    mask[5, 5:7] = True  # 2 px, 4-connected: removed
    mask[10, 5:8] = True  # 3 px: kept
    mask[15:17, 5:7] = True  # 4 px: kept
    mask[20:23, 20] = True  # 3 px vertical: kept
    assert sorted(r.area for r in nuclei_regions(mask)) == [3, 3, 4]
