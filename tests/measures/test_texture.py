import math

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.util import img_as_ubyte

from rcvlab.errors import DataError
from rcvlab.measures import as_grey_uint8, glcm_features, glcm_matrix

PROPS = ("ASM", "energy", "contrast", "correlation", "homogeneity", "dissimilarity")


def _reference(grey, mask=None):
    """GLCM properties by brute force: right-hand neighbour pairs, both pixels in the mask."""
    grey = np.asarray(grey, dtype=np.int64)
    inside = np.ones(grey.shape, bool) if mask is None else np.asarray(mask, bool)
    counts = {}
    for r in range(grey.shape[0]):
        for c in range(grey.shape[1] - 1):
            if inside[r, c] and inside[r, c + 1]:
                a, b = grey[r, c], grey[r, c + 1]
                counts[(a, b)] = counts.get((a, b), 0) + 1
                counts[(b, a)] = counts.get((b, a), 0) + 1
    total = sum(counts.values())
    p = {k: v / total for k, v in counts.items()}
    mu = sum(pv * i for (i, _), pv in p.items())
    var = sum(pv * (i - mu) ** 2 for (i, _), pv in p.items())
    asm = sum(pv**2 for pv in p.values())
    return {
        "ASM": asm,
        "energy": math.sqrt(asm),
        "contrast": sum(pv * (i - j) ** 2 for (i, j), pv in p.items()),
        "correlation": sum(pv * (i - mu) * (j - mu) for (i, j), pv in p.items()) / var,
        "homogeneity": sum(pv / (1 + (i - j) ** 2) for (i, j), pv in p.items()),
        "dissimilarity": sum(pv * abs(i - j) for (i, j), pv in p.items()),
    }


def test_vertical_stripes_period_two():
    # every horizontal neighbour pair is (0, 255) or (255, 0): P = 1/2 at both
    img = np.zeros((6, 8), np.uint8)
    img[:, ::2] = 255
    f = glcm_features(img)
    assert f["contrast"] == pytest.approx(255.0**2)
    assert f["dissimilarity"] == pytest.approx(255.0)
    assert f["ASM"] == pytest.approx(0.5)
    assert f["energy"] == pytest.approx(math.sqrt(0.5))
    assert f["homogeneity"] == pytest.approx(1 / (1 + 255.0**2))
    assert f["correlation"] == pytest.approx(-1.0)


def test_horizontal_stripes_have_no_contrast_at_angle_zero():
    img = np.zeros((6, 8), np.uint8)
    img[::2, :] = 255
    f = glcm_features(img)
    assert f["contrast"] == 0
    assert f["dissimilarity"] == 0
    assert f["homogeneity"] == pytest.approx(1.0)
    assert f["ASM"] == pytest.approx(0.5)
    assert f["correlation"] == pytest.approx(1.0)


def test_constant_image():
    f = glcm_features(np.full((5, 5), 77, np.uint8))
    assert f["contrast"] == 0
    assert f["ASM"] == 1
    assert f["correlation"] == 1  # scikit-image's convention for zero variance


def test_small_image_by_hand():
    # pairs (0,0) (0,1) / (1,2) (2,2) / (0,1) (1,2); symmetric: 12 counts, 6 cells of 1/6
    img = np.array([[0, 0, 1], [1, 2, 2], [0, 1, 2]], np.uint8)
    p = glcm_matrix(img)[:, :, 0, 0]
    expected = np.zeros((256, 256))
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2)]:
        expected[i, j] = 1 / 6
    np.testing.assert_allclose(p, expected)
    f = glcm_features(img)
    assert f["contrast"] == pytest.approx(2 / 3)
    assert f["dissimilarity"] == pytest.approx(2 / 3)
    assert f["ASM"] == pytest.approx(1 / 6)
    assert f["homogeneity"] == pytest.approx(2 / 3)
    # marginal 1/3 on each of 0, 1, 2: mean 1, variance 2/3, covariance (P00 + P22) = 1/3
    assert f["correlation"] == pytest.approx(0.5)


def test_masked_by_hand():
    img = np.array([[0, 1, 2, 200], [90, 2, 1, 0]], np.uint8)
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)
    # kept pairs: (0,1) (1,2) and (2,1) (1,0); the pairs touching 200 and 90 are not
    f = glcm_features(img, mask)
    assert f["contrast"] == pytest.approx(1.0)
    assert f["dissimilarity"] == pytest.approx(1.0)
    assert f["ASM"] == pytest.approx(0.25)
    assert f["homogeneity"] == pytest.approx(0.5)
    assert f["correlation"] == pytest.approx(0.0, abs=1e-12)
    assert glcm_features(img)["contrast"] > 1000  # unmasked, 200 and 90 count


def test_against_brute_force_reference():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(9, 11), dtype=np.uint8)
    mask = rng.random((9, 11)) < 0.7
    for m in (None, mask):
        got = glcm_features(img, m)
        ref = _reference(img, m)
        for k in PROPS:
            assert got[k] == pytest.approx(ref[k], rel=1e-9), k


def test_all_true_mask_equals_unmasked():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    full = glcm_features(img)
    masked = glcm_features(img, np.ones((16, 16), bool))
    for k in PROPS:
        assert masked[k] == pytest.approx(full[k], rel=1e-12), k


def test_grey_uint8_mask_same_as_boolean():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(12, 12), dtype=np.uint8)
    mask = np.zeros((12, 12), bool)
    mask[2:9, 3:10] = True
    assert glcm_features(img, mask) == glcm_features(img, mask.astype(np.uint8) * 255)


def test_empty_mask_or_no_pair_gives_nan():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    empty = glcm_features(img, np.zeros((4, 4), bool))
    assert all(math.isnan(v) for v in empty.values())
    diagonal = glcm_features(img, np.eye(4, dtype=bool))  # no horizontal pair inside
    assert all(math.isnan(v) for v in diagonal.values())
    assert glcm_matrix(img, np.zeros((4, 4), bool)) is None
    column = glcm_features(np.zeros((5, 1), np.uint8))
    assert all(math.isnan(v) for v in column.values())


def test_mask_shape_must_match():
    with pytest.raises(DataError, match="does not match"):
        glcm_features(np.zeros((4, 4), np.uint8), np.ones((4, 5), bool))


def test_rgb_is_converted_with_rgb2gray():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    grey = img_as_ubyte(rgb2gray(rgb))
    np.testing.assert_array_equal(as_grey_uint8(rgb), grey)
    assert glcm_features(rgb) == glcm_features(grey)
    # the same image as float in [0, 1]
    assert glcm_features(rgb / 255.0) == glcm_features(grey)


def test_grey_inputs():
    img = np.zeros((6, 8), np.uint8)
    img[:, ::2] = 255
    np.testing.assert_array_equal(as_grey_uint8(img.astype(bool)), img)
    np.testing.assert_array_equal(as_grey_uint8(img.astype(np.int64)), img)
    np.testing.assert_array_equal(as_grey_uint8(img / 255.0), img)
    np.testing.assert_array_equal(as_grey_uint8(img[:, :, None]), img)
    with pytest.raises(DataError):
        as_grey_uint8(np.full((4, 4), 300))
    with pytest.raises(DataError):
        as_grey_uint8(np.full((4, 4), 2.0))
