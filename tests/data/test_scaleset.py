import numpy as np
import pytest

from rcvlab import DataError, UnknownNameError
from rcvlab.data import open_data
from rcvlab.data.scaleset import SCALESET_CLASSES, render, scaleset


def test_deterministic_and_order_independent():
    a = scaleset(["cat", "rocket"], n_per_class=12, seed=3, size=64)
    b = scaleset(["cat", "rocket"], n_per_class=12, seed=3, size=64)
    for i in (20, 5, 0):  # reverse order on b, and b never saw the others
        assert np.array_equal(np.asarray(a.load(i)), np.asarray(b.load(i)))
    c = scaleset(["cat", "rocket"], n_per_class=12, seed=4, size=64)
    assert not np.array_equal(np.asarray(a.load(5)), np.asarray(c.load(5)))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    sub = a.subset([20, 5])
    assert np.array_equal(np.asarray(sub.load(1)), np.asarray(b.load(5)))
    # the same class's images do not depend on which other classes are in the set
    only = scaleset(["rocket"], n_per_class=12, seed=3, size=64)
    assert np.array_equal(np.asarray(only.load(3)), np.asarray(a.load(15)))


def test_ratio_is_the_pasted_box_exactly():
    s = scaleset(n_per_class=10, seed=0, size=96)
    r = s.measure("scale_ratio")
    assert len(s) == 40 and s.classes.tolist()[::10] == ["cat", "coffee", "rocket", "motorcycle"]
    for i in range(0, 40, 3):
        x0, y0, x1, y1 = s.box(i)
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
        assert r[i] == (x1 - x0) * (y1 - y0) / 96**2
        im = np.asarray(s.load(i))
        assert im.shape == (96, 96, 3) and im.dtype == np.uint8
    assert (r >= 0.015).all() and (r <= 1).all()
    np.testing.assert_allclose(s.measure("scale_ratio_sqrt"), np.sqrt(r))


def test_ratios_cover_the_range():
    s = scaleset(["coffee"], n_per_class=100, seed=1, size=224)
    r = np.sort(s.measure("scale_ratio"))
    assert r[0] < 0.04 and r[-1] > 0.85  # coffee's aspect allows r up to ~0.95
    # stratified: every tenth of the range holds about a tenth of the images
    counts, _ = np.histogram(r, bins=10, range=(0.02, r[-1]))
    assert counts.min() >= 7


def test_low_level_statistics_do_not_give_the_ratio_away():
    s = scaleset(n_per_class=60, seed=0, size=64)
    r = s.measure("scale_ratio")
    ims = np.stack([np.asarray(s.load(i), dtype=np.float64) for i in range(len(s))])
    stats = {
        "brightness": ims.mean(axis=(1, 2, 3)),
        **{f"mean_{c}": ims[..., k].mean(axis=(1, 2)) for k, c in enumerate("rgb")},
        **{f"std_{c}": ims[..., k].std(axis=(1, 2)) for k, c in enumerate("rgb")},
        "saturation": (ims.max(-1) - ims.min(-1)).mean(axis=(1, 2)),
    }
    for name, v in stats.items():
        assert abs(np.corrcoef(v, r)[0, 1]) < 0.3, name


def test_labels_are_imagenet_classes():
    s = scaleset(["cat", "coffee"], n_per_class=10, size=32)
    assert s.labels[0] == SCALESET_CLASSES["cat"].imagenet and 967 in s.labels[10]


def test_bad_arguments():
    with pytest.raises(UnknownNameError, match="Did you mean 'rocket'"):
        scaleset(["rockett"])
    with pytest.raises(DataError, match="at least 10"):
        scaleset(n_per_class=5)
    with pytest.raises(DataError, match="r_range"):
        scaleset(r_range=(0.5, 0.2))


def test_open_data_spec():
    s = open_data("scaleset:cat,coffee", n_per_class=10, size=32)
    assert sorted(set(s.classes)) == ["cat", "coffee"] and len(s) == 20


def test_render_box_fits():
    img, box = render("motorcycle", (40, 36), np.random.default_rng(0), 48)
    assert img.shape == (48, 48, 3) and (box[2] - box[0], box[3] - box[1]) == (40, 36)
