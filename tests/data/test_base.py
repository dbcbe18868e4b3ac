"""The ImageSet interface: read_rgb errors, subsets, fingerprints, measure lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import ArrayImageSet, FileImageSet, read_rgb
from rcvlab.errors import DataError, UnknownNameError


def save(path: Path, value: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> Path:
    Image.new(mode, size, value if mode == "L" else (value, value, 0)).save(path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return [save(tmp_path / f"{i}.png", 40 * i) for i in range(4)]


def test_read_rgb_converts_to_rgb(tmp_path: Path) -> None:
    im = read_rgb(save(tmp_path / "g.png", 9, mode="L"))
    assert im.mode == "RGB" and im.size == (40, 32)


def test_read_rgb_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing file .*nope\.png"):
        read_rgb(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "payload",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20],
)
def test_read_rgb_corrupt_file_raises_data_error(tmp_path: Path, payload: bytes) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(payload)
    with pytest.raises(DataError, match=r"cannot decode image .*bad\.png"):
        read_rgb(p)


def test_read_rgb_truncated_jpeg_raises_data_error(tmp_path: Path) -> None:
    p = tmp_path / "t.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataError, match=r"t\.jpg"):
        read_rgb(p)


def test_file_image_set_load_and_subset(files: list[Path]) -> None:
    ds = FileImageSet([str(f) for f in files], {"m": [0.0, 1.0, 2.0, 3.0]}, classes="abab")
    sub = ds.subset([3, 1])
    assert len(sub) == 2
    assert sub.ids == [str(files[3]), str(files[1])]
    np.testing.assert_array_equal(sub.measure("m"), [3.0, 1.0])
    assert sub.classes is not None and sub.classes.tolist() == ["b", "b"]
    assert sub.load(0).getpixel((0, 0)) == (120, 120, 0)
    assert sub.fingerprint() != ds.fingerprint()
    assert sub.fingerprint() == ds.subset([3, 1]).fingerprint()
    assert sub.fingerprint() != ds.subset([1, 3]).fingerprint()
    with pytest.raises(DataError, match="out of range"):
        ds.subset([4])


def test_fingerprint_changes_when_a_file_changes(files: list[Path]) -> None:
    ds = FileImageSet([str(f) for f in files], {"m": [0.0, 1.0, 2.0, 3.0]})
    before = ds.fingerprint()
    assert ds.fingerprint() == before
    sub_before = ds.subset([0, 2]).fingerprint()
    save(files[2], 7, size=(41, 32))
    assert ds.fingerprint() != before
    assert ds.subset([0, 2]).fingerprint() != sub_before


def test_fingerprint_changes_with_measures(files: list[Path]) -> None:
    a = FileImageSet([str(f) for f in files], {"m": [0.0, 1.0, 2.0, 3.0]})
    b = FileImageSet([str(f) for f in files], {"m": [0.0, 1.0, 2.0, 3.5]})
    assert a.fingerprint() != b.fingerprint()


def test_load_of_deleted_file_raises_data_error(files: list[Path]) -> None:
    ds = FileImageSet([str(f) for f in files], {})
    files[1].unlink()
    with pytest.raises(DataError, match="missing file"):
        ds.load(1)


def test_measure_lookup_and_shape_checks() -> None:
    ims = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    ds = ArrayImageSet(ims, {"scale_ratio": [0.1, 0.2, 0.3]})
    with pytest.raises(UnknownNameError, match="Did you mean 'scale_ratio'"):
        ds.measure("scale_rati")
    with pytest.raises(DataError, match="shape"):
        ArrayImageSet(ims, {"m": [1.0, 2.0]})
    with pytest.raises(DataError, match="'classes' has 2 entries for 3 images"):
        ArrayImageSet(ims, {}, classes=["a", "b"])
    with pytest.raises(DataError, match="H x W x 3"):
        ArrayImageSet(np.zeros((2, 8, 8), dtype=np.uint8))


def test_array_image_set_load_and_fingerprint() -> None:
    ims = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    ds = ArrayImageSet(ims, {"m": [1.0, 2.0]})
    assert ds.load(1).size == (8, 8) and ds.load(1).mode == "RGB"
    ims2 = ims.copy()
    ims2[1, 0, 0, 0] = 1
    assert ArrayImageSet(ims2, {"m": [1.0, 2.0]}).fingerprint() != ds.fingerprint()
    assert ArrayImageSet(ims.copy(), {"m": [1.0, 2.0]}).fingerprint() == ds.fingerprint()
