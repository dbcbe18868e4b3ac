"""Images with ImageNet labels (rcvlab.data.filled) and their ``--data`` forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcvlab.data import ArrayImageSet, open_data
from rcvlab.data.filled import (
    class_indices,
    filled,
    imagenet_wnids,
    index_to_wnid,
    read_labels_csv,
    read_synset_folders,
    wnid_to_index,
)
from rcvlab.data.scaleset import SCALESET_CLASSES
from rcvlab.errors import DataError, UnknownNameError

BRAMBLING, TABBY = "n01530575", "n02123045"  # ImageNet-1k classes 10 and 281


def png(path: Path, colour=(200, 10, 10), size=(12, 9)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


# -- synsets ------------------------------------------------------------------------------


def test_imagenet_synsets() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    assert wnid_to_index(BRAMBLING) == 10 and wnid_to_index(TABBY) == 281
    assert index_to_wnid(10) == BRAMBLING and index_to_wnid(1000) is None
    with pytest.raises(UnknownNameError, match="not one of the 1000"):
        wnid_to_index("n99999999")


# -- the embedded filled set -------------------------------------------------------------


def test_filled_set() -> None:
    ds = filled(n_per_class=3, seed=0)
    assert len(ds) == 12 and ds.source == "filled:cat,coffee,rocket,motorcycle"
    assert ds.classes.tolist() == [c for c in SCALESET_CLASSES for _ in range(3)]
    labels = class_indices(ds)
    assert labels[0] == (281, 282, 285) and labels[3] == (967, 968)
    np.testing.assert_array_equal(ds.measure("class_index")[::3], [281, 967, 657, 665])
    for i in range(len(ds)):
        cls = SCALESET_CLASSES[ds.classes[i]]
        x0, y0, x1, y1 = ds.crops[i]
        bw, bh = cls.box[2] - cls.box[0], cls.box[3] - cls.box[1]
        assert 0 <= x0 < x1 <= bw and 0 <= y0 < y1 <= bh  # inside the object's box
        assert x1 - x0 == y1 - y0 >= 0.8 * min(bw, bh) - 1  # square, mostly object
        im = ds.load(i)
        assert im.mode == "RGB" and im.size == (x1 - x0, y1 - y0)


def test_filled_is_deterministic_and_a_crop_of_the_photo() -> None:
    a, b = filled(["cat"], n_per_class=2, seed=4), filled(["cat"], n_per_class=2, seed=4)
    assert a.fingerprint() == b.fingerprint() != filled(["cat"], n_per_class=2).fingerprint()
    np.testing.assert_array_equal(np.asarray(a.load(1)), np.asarray(b.load(1)))
    photo = SCALESET_CLASSES["cat"].load()
    x0, y0, x1, y1 = a.crops[0] + np.array(SCALESET_CLASSES["cat"].box)[[0, 1, 0, 1]]
    crop = photo[y0:y1, x0:x1]
    got = np.asarray(a.load(0))
    np.testing.assert_array_equal(got, crop[:, ::-1] if a.flips[0] else crop)


def test_filled_errors() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'rocket'"):
        filled(["rockt"])
    with pytest.raises(DataError, match="at least 1"):
        filled(n_per_class=0)


# -- labels CSV ---------------------------------------------------------------------------


def test_labels_csv(tmp_path: Path) -> None:
    png(tmp_path / "img" / "a.png")
    png(tmp_path / "b.jpg")
    abs_c = png(tmp_path / "other" / "c.png")
    f = tmp_path / "labels.csv"
    f.write_text(f"path,class_index,note\nimg/a.png,10,x\nb.jpg,{TABBY},\n{abs_c},1005.0,\n")
    ds = read_labels_csv(f)
    assert ds.ids == [str(tmp_path / "img/a.png"), str(tmp_path / "b.jpg"), str(abs_c)]
    assert class_indices(ds) == [(10,), (281,), (1005,)]
    assert ds.classes.tolist() == [BRAMBLING, TABBY, "1005"]
    assert ds.source == f"labels:{f}" and ds.load(0).size == (12, 9)
    assert open_data(f"labels:{f}", cls=TABBY).ids == [str(tmp_path / "b.jpg")]


def test_labels_csv_label_column_and_missing_files(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    f = tmp_path / "l.csv"
    f.write_text("label,path\n3,a.png\n4,missing.png\n3,a.png\n")
    ds = read_labels_csv(f)
    assert len(ds) == 1 and class_indices(ds) == [(3,)]
    assert [s.reason for s in ds.skipped] == [
        f"missing file (line 3 of {f})",
        f"repeats an earlier row (line 4 of {f})",
    ]
    with pytest.raises(DataError, match=r"missing\.png: missing file"):
        read_labels_csv(f, strict=True)


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        ("", "has no class index"),
        ("nan", "has no class index"),
        ("abc", "neither a class index nor a WordNet id"),
        ("-1", "is negative"),
        ("2.5", "not a whole number"),
        ("n99999999", "not one of the 1000"),
    ],
)
def test_labels_csv_row_without_class_index(tmp_path: Path, cell: str, match: str) -> None:
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    f = tmp_path / "l.csv"
    f.write_text(f"path,class_index\na.png,1\nb.png,{cell}\n")
    with pytest.raises(DataError, match=match) as e:
        read_labels_csv(f)
    msg = str(e.value)
    assert "b.png" in msg and "line 3" in msg and "n01530575" in msg and "\n" not in msg


def test_labels_csv_format_errors(tmp_path: Path) -> None:
    f = tmp_path / "l.csv"
    f.write_text("file,class_index\na.png,1\n")
    with pytest.raises(DataError, match="no 'path' column"):
        read_labels_csv(f)
    f.write_text("path,class\na.png,1\n")
    with pytest.raises(DataError, match="no 'class_index' \\(or 'label'\\) column"):
        read_labels_csv(f)
    with pytest.raises(DataError, match="does not exist"):
        read_labels_csv(tmp_path / "nope.csv")


# -- synset folders -----------------------------------------------------------------------


def test_synset_folders(tmp_path: Path) -> None:
    png(tmp_path / TABBY / "x2.JPEG")
    png(tmp_path / BRAMBLING / "x1.JPEG")
    png(tmp_path / BRAMBLING / "sub" / "x0.png")
    (tmp_path / BRAMBLING / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    png(tmp_path / "stray.png")
    ds = read_synset_folders(tmp_path)
    assert [Path(p).name for p in ds.ids] == ["x0.png", "x1.JPEG", "x2.JPEG"]
    assert class_indices(ds) == [(10,), (10,), (281,)]
    assert ds.classes.tolist() == [BRAMBLING, BRAMBLING, TABBY]
    assert [Path(s.path).name for s in ds.skipped] == ["stray.png"]
    with pytest.raises(DataError, match="outside any synset folder"):
        read_synset_folders(tmp_path, strict=True)
    via_spec = open_data(f"synsets:{tmp_path}", cls=TABBY)
    assert len(via_spec) == 1 and class_indices(via_spec) == [(281,)]


def test_synset_folder_errors(tmp_path: Path) -> None:
    png(tmp_path / "cats" / "a.png")
    with pytest.raises(DataError, match="cats is not named with an ImageNet WordNet id"):
        read_synset_folders(tmp_path)
    (tmp_path / "cats").rename(tmp_path / "n99999999")
    with pytest.raises(DataError, match="not one of the 1000 ImageNet-1k synsets"):
        read_synset_folders(tmp_path)
    (tmp_path / "n99999999" / "a.png").unlink()
    (tmp_path / "n99999999").rename(tmp_path / BRAMBLING)
    with pytest.raises(DataError, match="No image in synset folders"):
        read_synset_folders(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_synset_folders(tmp_path / "nope")


# -- class indices of other sets -------------------------------------------------------------


def test_class_indices_of_other_sets() -> None:
    ims = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    assert class_indices(ArrayImageSet(ims, {"class_index": [1, np.nan, 3]})) == [
        (1,),
        None,
        (3,),
    ]
    assert class_indices(ArrayImageSet(ims, {"label": [0, 1, 2]}).subset([2, 0])) == [(2,), (0,)]
    wn = ArrayImageSet(ims, classes=[TABBY, BRAMBLING, TABBY])
    assert class_indices(wn) == [(281,), (10,), (281,)]
    assert class_indices(filled(["coffee"], n_per_class=3).subset([1])) == [(967, 968)]
    with pytest.raises(DataError, match=r"array\[1\] has class index 1.5"):
        class_indices(ArrayImageSet(ims, {"class_index": [1, 1.5, 3]}))
    with pytest.raises(DataError, match="gives no ImageNet class index"):
        class_indices(ArrayImageSet(ims, {"r": [1, 2, 3]}, classes=["a", "b", "c"]))


# -- --data forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cls", "classes"),
    [
        ("filled", None, list(SCALESET_CLASSES)),
        ("filled:cat, rocket", None, ["cat", "rocket"]),
        ("filled", "coffee", ["coffee"]),
        ("FILLED:cat,coffee", "coffee", ["coffee"]),
    ],
)
def test_filled_specs(spec: str, cls, classes) -> None:
    ds = open_data(spec, cls=cls, n_per_class=2, seed=1)
    assert ds.class_names == classes and len(ds) == 2 * len(classes) and ds.seed == 1


def test_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="write filled:CLASS"):
        open_data("filled:")
    with pytest.raises(DataError, match="'rocket' is not among"):
        open_data("filled:cat", cls="rocket")
    with pytest.raises(DataError, match="size=64 does not apply to --data 'filled'"):
        open_data("filled", size=64)
    with pytest.raises(DataError, match=r"seed=1 \(--seed\) does not apply to --data .synsets:"):
        open_data(f"synsets:{tmp_path}", seed=1)
    with pytest.raises(DataError, match="names no file"):
        open_data("labels:")
    with pytest.raises(UnknownNameError, match="Did you mean 'filled'") as e:
        open_data("filed")
    assert "labels:FILE.csv" in str(e.value) and "synsets:DIR" in str(e.value)
    with pytest.raises(UnknownNameError, match="Did you mean 'synsets'"):
        open_data("synset:/x")
