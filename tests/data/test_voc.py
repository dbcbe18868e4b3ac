"""VOC-style XML reader: PASCAL and ImageNet layouts, skip reasons, strict mode, class filter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import FileImageSet, detect_layout, read_voc
from rcvlab.errors import DataError, UnknownNameError

W, H = 64, 48


def save_jpeg(path: Path, size: tuple[int, int] = (W, H), value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 80, 40)).save(path, "JPEG")
    return path


def xml(
    filename: str | None,
    boxes: list[tuple[str, float, float, float, float]],
    size: tuple[int, int] | None = (W, H),
) -> str:
    parts = ["<annotation>", "<folder>x</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>")
        parts.append("<depth>3</depth></size>")
    for name, x0, y0, x1, y1 in boxes:
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
            "</bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def pascal(tmp_path: Path) -> Path:
    """A PASCAL VOC folder: 2 usable images among 8 annotations."""
    root = tmp_path / "VOC2012"
    ann, img = root / "Annotations", root / "JPEGImages"
    # good: box 32 x 24 in 64 x 48 -> r = 768 / 3072 = 0.25 (by hand)
    save_jpeg(img / "a_good.jpg")
    write(ann / "a_good.xml", xml("a_good.jpg", [("aeroplane", 8, 6, 40, 30)]))
    # a corrupt image: kept at indexing (not decoded), fails at load time
    (img / "c_corrupt.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    write(ann / "c_corrupt.xml", xml("c_corrupt.jpg", [("cat", 0, 0, 32, 48)]))
    # two boxes
    save_jpeg(img / "d_two.jpg")
    write(ann / "d_two.xml", xml("d_two.jpg", [("cat", 1, 1, 9, 9), ("dog", 2, 2, 20, 20)]))
    # xmin > xmax
    save_jpeg(img / "e_inv.jpg")
    write(ann / "e_inv.xml", xml("e_inv.jpg", [("cat", 10, 1, 5, 9)]))
    # image missing (filename without extension: PASCAL adds .jpg)
    write(ann / "f_missing.xml", xml("nothere", [("cat", 1, 1, 9, 9)]))
    # malformed XML
    write(ann / "b_bad.xml", "<annotation><filename>x.jpg</filename><object>")
    # box outside the image
    save_jpeg(img / "g_out.jpg")
    write(ann / "g_out.xml", xml("g_out.jpg", [("cat", 1, 1, 80, 9)]))
    # no box at all
    save_jpeg(img / "h_none.jpg")
    write(ann / "h_none.xml", xml("h_none.jpg", []))
    return root


def reasons(ds: FileImageSet) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in ds.skipped}


def test_pascal_layout_keeps_single_box_images_and_lists_the_rest(pascal: Path) -> None:
    assert detect_layout(pascal) == "pascal"
    ds = read_voc(pascal)
    assert [Path(p).name for p in ds.ids] == ["a_good.jpg", "c_corrupt.jpg"]
    assert ds.ids == sorted(ds.ids)
    assert all(Path(p).is_absolute() for p in ds.ids)
    np.testing.assert_allclose(ds.measure("scale_ratio"), [0.25, 0.5])
    np.testing.assert_allclose(ds.measure("scale_ratio_sqrt"), [0.5, math.sqrt(0.5)])
    assert ds.classes is not None and ds.classes.tolist() == ["aeroplane", "cat"]
    assert ds.groups is None
    assert ds.source == f"voc:{pascal}"
    r = reasons(ds)
    assert r["d_two.xml"] == "2 boxes (need exactly 1)"
    assert r["e_inv.xml"] == "invalid box (xmin=10 >= xmax=5)"
    assert r["f_missing.xml"] == "image file not found for nothere"
    assert r["b_bad.xml"].startswith("malformed XML: ")
    assert r["g_out.xml"] == "box outside the image (xmax=80 > width=64)"
    assert r["h_none.xml"] == "no box"
    assert len(ds.skipped) == 6
    assert [s.path for s in ds.skipped] == sorted(s.path for s in ds.skipped)


def test_corrupt_image_is_indexed_but_load_raises(pascal: Path) -> None:
    ds = read_voc(pascal)
    assert ds.load(0).size == (W, H)
    assert ds.load(0).mode == "RGB"
    with pytest.raises(DataError, match=r"c_corrupt\.jpg"):
        ds.load(1)


def test_strict_raises_at_first_defect_with_file_and_fix(pascal: Path) -> None:
    with pytest.raises(DataError) as e:
        read_voc(pascal, strict=True)
    msg = str(e.value)
    assert "malformed XML" in msg and "b_bad.xml" in msg and "strict" in msg
    assert "\n" not in msg


def test_strict_does_not_raise_for_selection_skips(pascal: Path) -> None:
    for name in ("b_bad", "e_inv", "f_missing", "g_out", "c_corrupt"):
        (pascal / "Annotations" / f"{name}.xml").unlink()
    ds = read_voc(pascal, strict=True, cls="aeroplane")
    assert len(ds) == 1
    assert set(reasons(ds)) == {"d_two.xml", "h_none.xml"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [("e_inv", "invalid box (xmin=10 >= xmax=5)"), ("f_missing", "image file not found")],
)
def test_strict_reports_each_defect(pascal: Path, name: str, reason: str) -> None:
    for other in ("b_bad", "e_inv", "f_missing", "g_out"):
        if other != name:
            (pascal / "Annotations" / f"{other}.xml").unlink()
    with pytest.raises(DataError, match=rf"{name}\.xml") as e:
        read_voc(pascal, strict=True)
    assert reason in str(e.value)


def test_class_filter_drops_other_classes_with_reason(pascal: Path) -> None:
    ds = read_voc(pascal, cls="aeroplane")
    assert [Path(p).name for p in ds.ids] == ["a_good.jpg"]
    assert reasons(ds)["c_corrupt.xml"] == "box of class 'cat', not 'aeroplane'"
    assert read_voc(pascal, cls="AEROPLANE").ids == ds.ids  # case-insensitive


def test_no_usable_image_says_how_many_and_why(pascal: Path) -> None:
    with pytest.raises(DataError) as e:
        read_voc(pascal, cls="aeroplan")
    msg = str(e.value)
    assert "8 annotation files" in msg
    assert "class 'cat'" in msg and "Did you mean 'aeroplane'" in msg


def test_measure_names_select_and_unknown_is_named(pascal: Path) -> None:
    ds = read_voc(pascal, measure_names=("scale_ratio",))
    assert list(ds.measures) == ["scale_ratio"]
    with pytest.raises(UnknownNameError, match="Did you mean 'scale_ratio'"):
        read_voc(pascal, measure_names=("scale_rato",))


def test_missing_root_and_empty_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_voc(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"No \.xml annotation files"):
        read_voc(tmp_path / "empty")


def test_fingerprint_changes_when_an_image_changes(pascal: Path) -> None:
    before = read_voc(pascal).fingerprint()
    assert read_voc(pascal).fingerprint() == before
    noise = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(noise).save(pascal / "JPEGImages" / "a_good.jpg")  # other bytes, same box
    assert read_voc(pascal).fingerprint() != before


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    """An ImageNet tree: XMLs in Annotation/<synset>/, images in images/<synset>/, plus a
    val folder with XMLs beside their images."""
    root = tmp_path / "imagenet"
    a, i = root / "Annotation" / "n02058221", root / "images" / "n02058221"
    # good, parallel tree; box 16 x 12 -> r = 192 / 3072 = 0.0625
    save_jpeg(i / "n02058221_1.JPEG")
    write(a / "n02058221_1.xml", xml("n02058221_1", [("n02058221", 0, 0, 16, 12)]))
    # <size> zero: the image header (32 x 24) gives it; box 16 x 12 -> r = 0.25
    save_jpeg(i / "n02058221_2.JPEG", size=(32, 24))
    write(
        a / "n02058221_2.xml",
        xml("n02058221_2", [("n02058221", 4, 4, 20, 16)], size=(0, 0)),
    )
    # ImageNet's "%s" filename bug: the XML's own name is used; no <size> at all
    save_jpeg(i / "n02058221_3.JPEG")
    write(a / "n02058221_3.xml", xml("%s", [("n02058221", 0, 0, 64, 48)], size=None))
    # two boxes
    save_jpeg(i / "n02058221_4.JPEG")
    write(
        a / "n02058221_4.xml",
        xml("n02058221_4", [("n02058221", 0, 0, 9, 9), ("n02058221", 1, 1, 5, 5)]),
    )
    # XML pointing to a missing image
    write(a / "n02058221_5.xml", xml("n02058221_5", [("n02058221", 0, 0, 9, 9)]))
    # val: XML beside its image, another class; box 32 x 48 -> r = 0.5
    v = root / "val"
    save_jpeg(v / "ILSVRC2012_val_00000001.JPEG")
    write(
        v / "ILSVRC2012_val_00000001.xml",
        xml("ILSVRC2012_val_00000001", [("n01608432", 32, 0, 64, 48)]),
    )
    return root


def test_imagenet_layout_finds_images_in_parallel_tree_and_beside(imagenet: Path) -> None:
    assert detect_layout(imagenet) == "imagenet"
    ds = read_voc(imagenet)
    names = [Path(p).name for p in ds.ids]
    assert names == [
        "n02058221_1.JPEG",
        "n02058221_2.JPEG",
        "n02058221_3.JPEG",
        "ILSVRC2012_val_00000001.JPEG",
    ]
    assert ds.ids == sorted(ds.ids)
    np.testing.assert_allclose(ds.measure("scale_ratio"), [0.0625, 0.25, 1.0, 0.5])
    r = reasons(ds)
    assert r == {
        "n02058221_4.xml": "2 boxes (need exactly 1)",
        "n02058221_5.xml": "image file not found for n02058221_5",
    }


@pytest.mark.parametrize("cls", ["n02058221", "albatross", ["n02058221"]])
def test_imagenet_class_filter_by_synset_or_name(imagenet: Path, cls: object) -> None:
    ds = read_voc(imagenet, cls=cls)  # type: ignore[arg-type]
    assert len(ds) == 3
    assert set(ds.classes.tolist()) == {"n02058221"}  # type: ignore[union-attr]
    want = cls if isinstance(cls, str) else cls[0]  # type: ignore[index]
    assert reasons(ds)["ILSVRC2012_val_00000001.xml"] == f"box of class 'n01608432', not '{want}'"


def test_imagenet_strict_names_the_missing_image(imagenet: Path) -> None:
    with pytest.raises(DataError, match=r"image file not found for n02058221_5 in .*\.xml"):
        read_voc(imagenet, strict=True)


def test_box_tolerance_and_fractional_coordinates(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_jpeg(root / "x.jpg")
    # 1-based full-image box (1..64 overhangs by 0) and fractional values are accepted;
    # the overhang is clipped so r <= 1
    write(root / "x.xml", xml("x.jpg", [("a", -0.5, 0.5, 64.5, 48)]))
    ds = read_voc(root)
    np.testing.assert_allclose(ds.measure("scale_ratio"), [(64 * 47.5) / (64 * 48)])


def test_duplicate_annotation_of_one_image_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_jpeg(root / "x.jpg")
    write(root / "a.xml", xml("x.jpg", [("a", 0, 0, 10, 10)]))
    write(root / "b.xml", xml("x.jpg", [("a", 0, 0, 20, 20)]))
    ds = read_voc(root)
    assert len(ds) == 1
    assert reasons(ds)["b.xml"].startswith("duplicate annotation of ")


def test_images_sorted_by_image_path_not_by_annotation(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_jpeg(root / "img" / "z.jpg")
    save_jpeg(root / "img" / "y.jpg")
    write(root / "a.xml", xml("z.jpg", [("a", 0, 0, 32, 48)]))
    write(root / "b.xml", xml("y.jpg", [("a", 0, 0, 64, 48)]))
    ds = read_voc(root)
    assert [Path(p).name for p in ds.ids] == ["y.jpg", "z.jpg"]
    np.testing.assert_allclose(ds.measure("scale_ratio"), [1.0, 0.5])
