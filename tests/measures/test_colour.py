import math

import numpy as np
import pytest
from PIL import Image

from rcvlab.errors import DataError
from rcvlab.measures import (
    HUE_RANGES,
    as_rgb,
    blueness,
    colourfulness,
    greenness,
    hue_fraction,
    hue_fractions,
    redness,
)


def _solid(rgb, shape=(4, 6)):
    return np.broadcast_to(np.array(rgb, np.uint8), (*shape, 3)).copy()


def test_grey_images_have_zero_colourfulness():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(10, 10), dtype=np.uint8)
    assert colourfulness(grey) == 0
    assert colourfulness(np.repeat(grey[:, :, None], 3, axis=2)) == 0
    assert colourfulness(_solid((128, 128, 128))) == 0


def test_pure_red():
    # rg = 255, yb = 127.5 everywhere: no spread, only the mean term
    assert colourfulness(_solid((255, 0, 0))) == pytest.approx(0.3 * math.hypot(255, 127.5))


def test_two_colour_image_by_hand():
    img = _solid((255, 0, 0), (4, 8))
    img[:, 4:] = (0, 0, 255)
    # red: rg = 255, yb = 127.5; blue: rg = 0, yb = -255 (half the pixels each)
    # mean rg 127.5, std rg 127.5; mean yb -63.75, std yb 191.25
    expected = math.sqrt(127.5**2 + 191.25**2) + 0.3 * math.sqrt(127.5**2 + 63.75**2)
    assert colourfulness(img) == pytest.approx(expected)
    assert colourfulness(img / 255.0) == pytest.approx(expected)
    assert colourfulness(Image.fromarray(img)) == pytest.approx(expected)


def test_pure_colours_and_their_hue_fractions():
    assert blueness(_solid((0, 0, 255))) == 1
    assert redness(_solid((0, 0, 255))) == 0
    assert redness(_solid((255, 0, 0))) == 1
    assert greenness(_solid((0, 255, 0))) == 1
    assert blueness(_solid((0, 255, 0))) == 0
    # the secondary colours are in none of the three ranges
    for rgb in [(255, 255, 0), (0, 255, 255), (255, 0, 255)]:
        assert blueness(_solid(rgb)) == redness(_solid(rgb)) == greenness(_solid(rgb)) == 0


def test_redness_wraps_around_360():
    pinkish_red = _solid((255, 0, 64))  # hue ≈ 345°
    assert redness(pinkish_red) == 1
    orange_red = _solid((255, 64, 0))  # hue ≈ 15°
    assert redness(orange_red) == 1
    assert hue_fraction(pinkish_red, (340, 350)) == 1
    assert hue_fraction(orange_red, (340, 350)) == 0


def test_fraction_counts_all_pixels_and_thresholds():
    img = _solid((128, 128, 128), (4, 4))
    img[0, :] = (0, 0, 255)  # blue
    img[1, :] = (0, 0, 30)  # blue hue but value 30/255 < 0.2: too dark
    img[2, :2] = (200, 200, 255)  # saturation 55/255 ≈ 0.22: counted
    img[2, 2:] = (220, 220, 255)  # saturation 35/255 ≈ 0.14: too grey
    assert blueness(img) == pytest.approx(6 / 16)
    assert hue_fraction(img, HUE_RANGES["blueness"], min_value=0.0) == pytest.approx(10 / 16)
    assert hue_fraction(img, HUE_RANGES["blueness"], min_saturation=0.0) == pytest.approx(8 / 16)


def test_hue_fractions_in_one_pass():
    img = _solid((128, 128, 128), (4, 4))
    img[0] = (0, 0, 255)
    img[1, :3] = (255, 0, 0)
    img[2, :1] = (0, 255, 0)
    fr = hue_fractions(img)
    assert fr == {"blueness": 4 / 16, "redness": 3 / 16, "greenness": 1 / 16}
    assert fr == {"blueness": blueness(img), "redness": redness(img), "greenness": greenness(img)}


def test_grey_has_no_hue():
    assert blueness(np.full((3, 3), 200, np.uint8)) == 0
    assert hue_fraction(_solid((90, 90, 90)), (0, 360), min_saturation=0.0) == 1


def test_bad_hue_range():
    with pytest.raises(ValueError, match="hue_range"):
        hue_fraction(_solid((0, 0, 255)), (-10, 20))
    with pytest.raises(ValueError, match="min_saturation"):
        hue_fraction(_solid((0, 0, 255)), (0, 20), min_saturation=2)


def test_as_rgb_conversions():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[..., 3] = 10
    np.testing.assert_array_equal(as_rgb(rgba), _solid((0, 0, 255), (2, 2)).astype(float))
    assert as_rgb(np.ones((2, 2), bool)).max() == 255
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        as_rgb(np.full((2, 2, 3), 128.0))
    with pytest.raises(DataError, match=r"0\.\.255"):
        as_rgb(np.full((2, 2, 3), 256))
    with pytest.raises(DataError, match="shape"):
        as_rgb(np.zeros((2, 2, 5)))
    with pytest.raises(DataError, match="no pixels"):
        as_rgb(np.zeros((0, 2, 3)))
