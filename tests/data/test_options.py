"""``open_data`` options: each applies to some kinds of data and is refused by the others."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import ArrayImageSet, open_data
from rcvlab.data.base import limit_per_class
from rcvlab.data.spec import OPTION_KINDS
from rcvlab.errors import DataError, RcvlabError, UnknownNameError

NOWHERE = "/nonexistent/rcvlab-test"


# -- options refused, before anything is read --------------------------------------------

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # (spec, options, the kinds the message must name)
    (f"voc:{NOWHERE}", {"size": 64}, "scaleset"),
    (f"imagenet:{NOWHERE}", {"r_range": (0.1, 0.5)}, "scaleset"),
    (f"csv:{NOWHERE}.csv", {"patch": 32}, "histo"),
    (f"folder:{NOWHERE}", {"seed": 1}, "scaleset, filled, histo"),
    (f"janowczyk:{NOWHERE}", {"n_slides": 2}, "histo"),
    (f"labels:{NOWHERE}.csv", {"magnifications": ["5X"]}, "histo"),
    (f"synsets:{NOWHERE}", {"patches_per_slide_mag": 2}, "histo"),
    ("scaleset", {"strict": True}, "voc, imagenet, csv, folder, janowczyk, labels, synsets"),
    ("scaleset:cat", {"patch": 32}, "histo"),
    ("filled", {"strict": True}, "voc, imagenet"),
    ("filled:cat", {"size": 64}, "scaleset"),
    ("histo", {"strict": True}, "voc, imagenet"),
    ("histo:real", {"size": 64}, "scaleset"),
    ("histo:synthetic", {"r_range": (0.1, 0.5)}, "scaleset"),
]


@pytest.mark.parametrize(("spec", "options", "kinds"), REFUSED)
def test_option_that_does_not_apply_is_refused(
    spec: str, options: dict[str, Any], kinds: str
) -> None:
    with pytest.raises(DataError) as e:
        open_data(spec, **options)
    msg = str(e.value)
    (name,) = options
    assert "\n" not in msg
    assert f"{name}=" in msg and "does not apply" in msg and kinds in msg


def test_every_option_in_the_table_is_refused_somewhere() -> None:
    # the table above exercises each option except cls, which applies everywhere
    refused = {name for _, options, _ in REFUSED for name in options}
    assert refused == set(OPTION_KINDS) - {"n_per_class"}


def test_options_refused_for_a_given_image_set() -> None:
    ds = ArrayImageSet(np.zeros((2, 4, 4, 3), np.uint8), {"m": [1.0, 2.0]}, classes=["a", "b"])
    for options in ({"strict": True}, {"seed": 3}, {"size": 64}):
        with pytest.raises(DataError, match="does not apply to a given ImageSet"):
            open_data(ds, **options)


def test_unknown_option_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'n_per_class'"):
        open_data(f"voc:{NOWHERE}", n_per_clas=3)


@pytest.mark.parametrize("spec", [f"folder:{NOWHERE}", f"csv:{NOWHERE}.csv", "scaleset", "histo"])
@pytest.mark.parametrize("bad", [0, -2, True, 2.5, "3"])
def test_bad_n_per_class(spec: str, bad: object) -> None:
    with pytest.raises(DataError, match="n_per_class must be a whole number of at least 1"):
        open_data(spec, n_per_class=bad)


def test_bad_seed() -> None:
    with pytest.raises(DataError, match="seed must be a whole number of at least 0"):
        open_data("scaleset", seed=-1)


def test_false_and_none_mean_not_given() -> None:
    # the CLI may pass its defaults for every kind
    ds = ArrayImageSet(np.zeros((2, 4, 4, 3), np.uint8), {"m": [1.0, 2.0]})
    assert open_data(ds, strict=False, n_per_class=None, seed=None) is ds


# -- folder: / janowczyk: honour strict and n_per_class -------------------------------------


def patch_folders(root: Path, per_mag: int = 5, missing_mask: str | None = None) -> Path:
    for mag in ("10X", "40X"):
        (root / mag).mkdir(parents=True)
        for i in range(per_mag):
            name = f"s{i}_p{i}"
            img = np.full((24, 24, 3), 200, np.uint8)
            mask = np.zeros((24, 24), np.uint8)
            mask[8 : 12 + i, 8:14] = 255
            Image.fromarray(img).save(root / mag / f"{name}.png")
            if f"{mag}/{name}" != missing_mask:
                Image.fromarray(mask).save(root / mag / f"{name}_mask.png")
    return root


@pytest.mark.parametrize("prefix", ["folder", "janowczyk"])
def test_folder_n_per_class(tmp_path: Path, prefix: str) -> None:
    root = patch_folders(tmp_path / "d")
    full = open_data(f"{prefix}:{root}")
    assert len(full) == 10
    a = open_data(f"{prefix}:{root}", n_per_class=3)
    assert collections.Counter(a.classes.tolist()) == {"10X": 3, "40X": 3}
    assert set(a.ids) <= set(full.ids)
    assert a.ids == [i for i in full.ids if i in set(a.ids)]  # original order kept
    assert open_data(f"{prefix}:{root}", n_per_class=3).ids == a.ids  # deterministic
    seeds = {tuple(open_data(f"{prefix}:{root}", n_per_class=3, seed=s).ids) for s in range(6)}
    assert len(seeds) > 1  # the seed changes the choice
    assert open_data(f"{prefix}:{root}", n_per_class=99).ids == full.ids
    # the measures of the chosen patches are those of the full set
    pos = [full.ids.index(i) for i in a.ids]
    np.testing.assert_array_equal(a.measure("nuclei_area"), full.measure("nuclei_area")[pos])


@pytest.mark.parametrize("prefix", ["folder", "janowczyk"])
def test_folder_strict(tmp_path: Path, prefix: str) -> None:
    root = patch_folders(tmp_path / "d", missing_mask="40X/s2_p2")
    lenient = open_data(f"{prefix}:{root}")
    assert [s.path for s in lenient.skipped] == [str(root / "40X" / "s2_p2.png")]
    with pytest.raises(DataError, match=r"s2_p2\.png has no mask") as e:
        open_data(f"{prefix}:{root}", strict=True)
    assert "--strict" in str(e.value)


def test_folder_strict_raises_at_an_unreadable_mask(tmp_path: Path) -> None:
    root = patch_folders(tmp_path / "d")
    (root / "10X" / "s1_p1_mask.png").write_bytes(b"not a png")
    lenient = open_data(f"folder:{root}")
    area = lenient.measure("nuclei_area")
    assert np.isnan(area[1]) and np.isfinite(np.delete(area, 1)).all()
    assert any("s1_p1.png" in s.path and "cannot decode" in s.reason for s in lenient.skipped)
    strict = open_data(f"folder:{root}", strict=True)
    with pytest.raises(DataError, match=r"cannot decode mask .*s1_p1_mask\.png.*--strict"):
        strict.measure("nuclei_area")
    # a subset keeps the strictness of its parent
    with pytest.raises(DataError, match="cannot decode mask"):
        strict.subset([1]).measure("nuclei_count")


def test_folder_skips_hidden_files_and_sub_folders(tmp_path: Path) -> None:
    root = patch_folders(tmp_path / "d", per_mag=2)
    (root / "10X" / "._s0_p0.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork
    (root / "10X" / "odd.png").mkdir()
    assert len(open_data(f"folder:{root}")) == 4


# -- n_per_class on the other kinds ---------------------------------------------------------


def test_csv_n_per_class_and_classless_csv(tmp_path: Path) -> None:
    rows = []
    for i in range(7):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{'ab'[i % 2]},{i}")
    (tmp_path / "m.csv").write_text("path,class,m\n" + "\n".join(rows) + "\n")
    ds = open_data(f"csv:{tmp_path / 'm.csv'}", n_per_class=2, seed=4)
    assert collections.Counter(ds.classes.tolist()) == {"a": 2, "b": 2}
    # the class filter first, then the draw: a class's choice does not depend on the others
    only_a = open_data(f"csv:{tmp_path / 'm.csv'}", cls="a", n_per_class=2, seed=4)
    assert only_a.ids == [i for i, c in zip(ds.ids, ds.classes, strict=True) if c == "a"]
    (tmp_path / "n.csv").write_text("path,m\n0.png,1\n1.png,2\n")
    with pytest.raises(DataError, match=r"n_per_class=1 needs classes.*'class' column"):
        open_data(f"csv:{tmp_path / 'n.csv'}", n_per_class=1)


def test_voc_n_per_class(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    for i in range(6):
        cls = "cat" if i < 4 else "dog"
        Image.new("RGB", (64, 48)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
        (tmp_path / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>64</width>"
            f"<height>48</height></size><object><name>{cls}</name><bndbox><xmin>0</xmin>"
            "<ymin>0</ymin><xmax>32</xmax><ymax>48</ymax></bndbox></object></annotation>"
        )
    ds = open_data(f"voc:{tmp_path}", n_per_class=1)
    assert sorted(ds.classes.tolist()) == ["cat", "dog"]
    np.testing.assert_allclose(ds.measure("scale_ratio"), [0.5, 0.5])


def test_histo_n_per_class() -> None:
    opts: dict[str, Any] = {
        "patch": 32,
        "n_slides": 2,
        "patches_per_slide_mag": 3,
        "magnifications": ["20X", "40X"],
    }
    full = open_data("histo:synthetic", **opts)
    assert collections.Counter(full.classes.tolist()) == {"20X": 6, "40X": 6}
    ds = open_data("histo:synthetic", n_per_class=2, **opts)
    assert collections.Counter(ds.classes.tolist()) == {"20X": 2, "40X": 2}
    assert set(ds.ids) <= set(full.ids) and ds.source == "histo:synthetic"
    pos = [full.ids.index(i) for i in ds.ids]
    np.testing.assert_array_equal(ds.measure("nuclei_area"), full.measure("nuclei_area")[pos])


def test_limit_per_class_properties() -> None:
    classes = ["a"] * 10 + ["b"] * 3 + ["c"] * 6
    ds = ArrayImageSet(np.zeros((19, 2, 2, 3), np.uint8), {"i": np.arange(19.0)}, classes=classes)
    sub = limit_per_class(ds, 4, seed=1)
    kept = sub.measure("i").astype(int)
    assert collections.Counter(sub.classes.tolist()) == {"a": 4, "b": 3, "c": 4}
    assert list(kept) == sorted(kept) and len(set(kept)) == len(kept)
    assert all(classes[k] == c for k, c in zip(kept, sub.classes, strict=True))
    assert limit_per_class(ds, 10) is ds
    with pytest.raises(RcvlabError, match="at least 1"):
        limit_per_class(ds, 0)
    no_classes = ArrayImageSet(np.zeros((2, 2, 2, 3), np.uint8), {})
    with pytest.raises(DataError, match="needs classes"):
        limit_per_class(no_classes, 1)
