"""The one image reader: wide bit depths scaled to 8 bits, EXIF orientation applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import ArrayImageSet, FileImageSet, read_rgb
from rcvlab.data.base import read_grey, to_uint8
from rcvlab.errors import DataError

# 16-bit values and their 8-bit value round(x / 257), worked out by hand:
# 128 / 257 = 0.498 -> 0, 129 / 257 = 0.502 -> 1, 385 / 257 = 1.498 -> 1, 386 -> 1.502 -> 2,
# 32896 = 128 * 257 -> 128, 65535 = 255 * 257 -> 255.
WIDE = np.array([[0, 128, 129, 257], [385, 386, 32896, 65535]], dtype=np.uint16)
EIGHT = np.array([[0, 0, 1, 1], [1, 2, 128, 255]], dtype=np.uint8)


def rgb_of(path: Path) -> np.ndarray:
    im = read_rgb(path)
    assert im.mode == "RGB"
    arr = np.asarray(im)
    # a grey file comes out grey: the three channels agree
    np.testing.assert_array_equal(arr[..., 0], arr[..., 1])
    np.testing.assert_array_equal(arr[..., 0], arr[..., 2])
    return arr[..., 0]


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_file_scaled_by_its_range(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"wide.{ext}"
    Image.fromarray(WIDE).save(p)
    with Image.open(p) as im:
        assert im.mode == "I;16"  # what the test means to write
        # Pillow's own conversion clips to 0..255 (the defect this reader avoids)
        clipped = np.asarray(im.convert("RGB"))[..., 0]
        np.testing.assert_array_equal(clipped, np.clip(WIDE, 0, 255))
    np.testing.assert_array_equal(rgb_of(p), EIGHT)


def test_16_bit_pgm_opens_as_mode_i_and_is_scaled(tmp_path: Path) -> None:
    p = tmp_path / "wide.pgm"
    Image.fromarray(WIDE).save(p)
    with Image.open(p) as im:
        assert im.mode == "I"
    np.testing.assert_array_equal(rgb_of(p), EIGHT)


def test_32_bit_integer_tiff_with_8_bit_values_is_kept(tmp_path: Path) -> None:
    p = tmp_path / "i32.tif"
    values = np.array([[0, 7, 128, 255]], dtype=np.int32)
    Image.fromarray(values).save(p)
    with Image.open(p) as im:
        assert im.mode == "I"
    np.testing.assert_array_equal(rgb_of(p), [[0, 7, 128, 255]])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # [0, 1] floats: x * 255 rounded (0.5 * 255 = 127.5 -> 128 half-to-even; 0.2 -> 51)
        ([[0.0, 0.2, 0.5, 1.0]], [[0, 51, 128, 255]]),
        # [0, 255] floats: rounded (12.4 -> 12, 12.6 -> 13)
        ([[0.0, 12.4, 12.6, 255.0]], [[0, 12, 13, 255]]),
        # anything else: min-max stretch, (x + 10) * 255 / 1010: 0 -> 2.52, 500 -> 128.76
        ([[-10.0, 0.0, 500.0, 1000.0]], [[0, 3, 129, 255]]),
    ],
)
def test_float_tiff(tmp_path: Path, values: list, expected: list) -> None:
    p = tmp_path / "f.tif"
    Image.fromarray(np.asarray(values, dtype=np.float32)).save(p)
    with Image.open(p) as im:
        assert im.mode == "F"
    np.testing.assert_array_equal(rgb_of(p), expected)


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([[True, False]]), [[255, 0]]),
        (np.array([[3, 250]], dtype=np.uint8), [[3, 250]]),
        (WIDE, EIGHT),
        (np.array([[0, 255]], dtype=np.int64), [[0, 255]]),
        (np.array([[0, 256, 65535]], dtype=np.int64), [[0, 1, 255]]),
        (np.array([[0.0, 1.0]]), [[0, 255]]),
        (np.array([[5.0, 5.0]]) * 1000, [[255, 255]]),  # constant out of range: clipped
    ],
)
def test_to_uint8_table(arr: np.ndarray, expected: list) -> None:
    out = to_uint8(arr)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "bad", [np.array([[0.0, np.nan]]), np.array([[np.inf]]), np.zeros((0, 3)), np.array([["a"]])]
)
def test_to_uint8_refuses(bad: np.ndarray) -> None:
    with pytest.raises(DataError):
        to_uint8(bad)


def test_array_image_set_scales_floats_in_unit_range() -> None:
    im = np.zeros((4, 4, 3))
    im[..., 0] = 1.0
    im[..., 1] = 0.2
    px = ArrayImageSet([im]).load(0).getpixel((0, 0))
    assert px == (255, 51, 0)  # the old clip-and-cast gave (1, 0, 0)


# -- EXIF orientation ----------------------------------------------------------------------


def quadrants(h: int = 32, w: int = 64) -> np.ndarray:
    """An image whose four quadrants have very different colours (survive JPEG)."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[: h // 2, : w // 2] = (250, 0, 0)
    a[: h // 2, w // 2 :] = (0, 250, 0)
    a[h // 2 :, : w // 2] = (0, 0, 250)
    a[h // 2 :, w // 2 :] = (250, 250, 250)
    return a


def with_orientation(path: Path, arr: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    return path


def block_colours(arr: np.ndarray) -> np.ndarray:
    """The mean colour of each quadrant (rows, then columns), rounded to 50s."""
    h, w = arr.shape[:2]
    out = [
        arr[r0:r1, c0:c1].reshape(-1, arr.shape[2]).mean(0)
        for r0, r1 in ((0, h // 2), (h // 2, h))
        for c0, c1 in ((0, w // 2), (w // 2, w))
    ]
    return np.round(np.asarray(out) / 50.0) * 50


# EXIF 6: the picture is shown turned 90 degrees clockwise; 3: turned 180; 8: 90 counter-
# clockwise; 2: mirrored left-right. np.rot90 turns counter-clockwise for k > 0.
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_exif_orientation_applied_to_images(tmp_path: Path, orientation: int) -> None:
    stored = quadrants()
    p = with_orientation(tmp_path / "o.jpg", stored, orientation)
    want = DISPLAYED[orientation](stored)
    got = np.asarray(FileImageSet([str(p)], {}).load(0))
    assert got.shape == want.shape
    np.testing.assert_array_equal(block_colours(got), block_colours(want))


def test_exif_orientation_applied_to_masks(tmp_path: Path) -> None:
    mask = np.zeros((20, 40), dtype=np.uint8)
    mask[2:6, 3:9] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "m.png"
    Image.fromarray(mask).save(p, exif=exif)
    np.testing.assert_array_equal(read_grey(p), np.rot90(mask, -1))


def test_masks_keep_their_depth_and_refuse_colour(tmp_path: Path) -> None:
    p = tmp_path / "m16.png"
    Image.fromarray(WIDE).save(p)
    np.testing.assert_array_equal(read_grey(p), WIDE)
    grey_rgb = tmp_path / "g.png"
    Image.fromarray(np.repeat(EIGHT[:, :, None], 3, axis=2)).save(grey_rgb)
    np.testing.assert_array_equal(read_grey(grey_rgb), EIGHT)
    la = tmp_path / "la.png"
    Image.fromarray(EIGHT).convert("LA").save(la)
    np.testing.assert_array_equal(read_grey(la), EIGHT)
    red = tmp_path / "red.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(red)
    with pytest.raises(DataError, match="channels differ"):
        read_grey(red)


def test_folder_instead_of_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        read_rgb(tmp_path / "x.png")
    with pytest.raises(DataError, match="is a folder"):
        read_grey(tmp_path / "x.png")


def test_big_endian_16_bit_is_scaled_like_little_endian():
    from rcvlab.data.base import to_uint8

    little = np.array([[0, 200, 65535]], dtype="<u2")
    big = little.astype(">u2")
    assert to_uint8(big).tolist() == to_uint8(little).tolist() == [[0, 1, 255]]
