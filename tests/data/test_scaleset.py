"""The embedded scale set: determinism, exact ratios, and no give-away low-level cue."""

from __future__ import annotations

import numpy as np
import pytest

from rcvlab import DataError, UnknownNameError
from rcvlab.data import open_data
from rcvlab.data import scaleset as scaleset_module
from rcvlab.data.scaleset import SCALESET_CLASSES, render, scaleset


def _px(s, i: int) -> np.ndarray:
    return np.asarray(s.load(i))


def test_deterministic_and_order_independent() -> None:
    a = scaleset(["cat", "rocket"], n_per_class=12, seed=3, size=64)
    b = scaleset(["cat", "rocket"], n_per_class=12, seed=3, size=64)
    for i in (20, 5, 0):  # reverse order on b, and b never saw the others
        assert np.array_equal(_px(a, i), _px(b, i))
    for i in range(len(a)):  # a has now rendered everything: image 5 must not have changed
        a.load(i)
    assert np.array_equal(_px(a, 5), _px(b, 5))
    c = scaleset(["cat", "rocket"], n_per_class=12, seed=4, size=64)
    assert not np.array_equal(_px(a, 5), _px(c, 5))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    sub = a.subset([20, 5])
    assert np.array_equal(_px(sub, 1), _px(b, 5))
    assert sub.measure("scale_ratio").tolist() == a.measure("scale_ratio")[[20, 5]].tolist()
    # a class's images do not depend on which other classes are in the set, or their order
    only = scaleset(["rocket"], n_per_class=12, seed=3, size=64)
    assert np.array_equal(_px(only, 3), _px(a, 15))
    swapped = scaleset(["rocket", "cat"], n_per_class=12, seed=3, size=64)
    assert np.array_equal(_px(swapped, 3), _px(a, 15))
    assert np.array_equal(swapped.boxes[:12], a.boxes[12:])


def test_images_are_uint8_rgb_of_the_requested_size() -> None:
    s = scaleset(["coffee"], n_per_class=10, size=48)
    im = s.load(0)
    assert im.mode == "RGB" and im.size == (48, 48)
    assert np.asarray(im).dtype == np.uint8


def test_ratio_is_the_pasted_box_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    s = scaleset(n_per_class=10, seed=0, size=96)
    r = s.measure("scale_ratio")
    assert len(s) == 40 and s.classes.tolist()[::10] == ["cat", "coffee", "rocket", "motorcycle"]
    assert s.boxes.shape == (40, 4)
    w, h = s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]
    assert np.array_equal(r, w * h / 96**2)  # exact, not approximately
    assert (s.boxes[:, :2] >= 0).all() and (s.boxes[:, 2:] <= 96).all() and (w > 0).all()
    assert (r >= 0.02).all() and (r <= 1).all()
    np.testing.assert_allclose(s.measure("scale_ratio_sqrt"), np.sqrt(r))
    with_object = [_px(s, i).astype(int) for i in range(40)]
    # the same images with the object's alpha at 0 are the bare backgrounds: the pixels that
    # differ are exactly the stored box (its border included: the feather starts inside it)
    monkeypatch.setattr(scaleset_module, "_feather", lambda h, w, width: np.zeros((h, w)))
    for i in range(40):
        diff = np.abs(with_object[i] - _px(s, i).astype(int)).sum(-1) > 0
        ys, xs = np.nonzero(diff)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == s.box(i)


@pytest.mark.parametrize("r_range", [(0.02, 1.0), (0.1, 0.3), (0.5, 0.51), (0.999, 1.0)])
def test_ratios_lie_in_the_range(r_range: tuple[float, float]) -> None:
    s = scaleset(n_per_class=20, seed=2, size=64, r_range=r_range)
    r = s.measure("scale_ratio")
    assert (r >= r_range[0]).all() and (r <= r_range[1]).all()


def test_filled_images() -> None:
    s = scaleset(["cat"], n_per_class=10, size=64, r_range=(0.999, 1.0))
    assert (s.boxes == [0, 0, 64, 64]).all() and (s.measure("scale_ratio") == 1).all()
    assert _px(s, 0).shape == (64, 64, 3)


def test_ratios_cover_the_range() -> None:
    s = scaleset(["coffee"], n_per_class=100, seed=1, size=224)
    r = np.sort(s.measure("scale_ratio"))
    assert r[0] < 0.03 and r[-1] > 0.99
    # stratified: every tenth of the range holds about a tenth of the images
    counts, _ = np.histogram(r, bins=10, range=(0.02, 1.0))
    assert counts.min() >= 8


def test_low_level_statistics_do_not_give_the_ratio_away() -> None:
    """The colour matching and independent jitter hide r from cheap image statistics.

    Without them (plain pasting) the mean colour alone predicts r well, since the object's
    colours differ from the background's (METHOD.md §8). Colour statistics are checked per
    class (the probe fits one RCV per class). Sharpness (mean gradient) is checked pooled over
    classes with r and the statistic centred per class: that is the resampling cue (small
    objects shrunk more), common to all classes. Within a class the object's own texture
    still shows (fur and a cluttered garage are sharper than the average background, sky and
    a cup smoother): |corr| up to ~0.4, of either sign; documented, not tested.
    """
    s = scaleset(n_per_class=100, seed=0, size=48)
    r = s.measure("scale_ratio")
    ims = np.stack([_px(s, i).astype(np.float64) for i in range(len(s))])
    grey = ims.mean(-1)
    colour = {
        "brightness": ims.mean(axis=(1, 2, 3)),
        **{f"mean_{c}": ims[..., k].mean(axis=(1, 2)) for k, c in enumerate("rgb")},
        **{f"std_{c}": ims[..., k].std(axis=(1, 2)) for k, c in enumerate("rgb")},
        "saturation": (ims.max(-1) - ims.min(-1)).mean(axis=(1, 2)),
    }
    for name, v in colour.items():
        for c in np.unique(s.classes):
            k = s.classes == c
            assert abs(np.corrcoef(v[k], r[k])[0, 1]) < 0.3, (name, c)
        assert abs(np.corrcoef(v, r)[0, 1]) < 0.2, name

    gradient = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=2)).mean(
        axis=(1, 2)
    )

    def centred(v: np.ndarray) -> np.ndarray:
        out = v.copy()
        for c in np.unique(s.classes):
            out[s.classes == c] -= v[s.classes == c].mean()
        return out

    assert abs(np.corrcoef(centred(gradient), centred(r))[0, 1]) < 0.3


def test_labels_are_imagenet_classes() -> None:
    s = scaleset(["cat", "coffee"], n_per_class=10, size=32)
    assert s.labels[0] == SCALESET_CLASSES["cat"].imagenet == s.imagenet_labels(0)
    assert 281 in s.imagenet_labels(0) and 967 in s.imagenet_labels(10)


def test_class_filter() -> None:
    s = scaleset(["motorcycle"], n_per_class=10, size=32)
    assert set(s.classes) == {"motorcycle"} and len(s) == 10
    assert s.ids[0] == "scaleset/motorcycle/00000"


def test_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'rocket'") as e:
        scaleset(["rockett"])
    assert "cat, coffee, rocket, motorcycle" in str(e.value)
    with pytest.raises(DataError, match="at least 10"):
        scaleset(n_per_class=5)
    with pytest.raises(DataError, match="r_range"):
        scaleset(r_range=(0.5, 0.2))
    with pytest.raises(DataError, match="r_range"):
        scaleset(r_range=(0.0, 0.5))
    with pytest.raises(DataError, match="Duplicate"):
        scaleset(["cat", "cat"])
    with pytest.raises(DataError, match="at least 16"):
        scaleset(size=8)


def test_open_data_spec() -> None:
    s = open_data("scaleset:cat,coffee", n_per_class=10, size=32)
    assert sorted(set(s.classes)) == ["cat", "coffee"] and len(s) == 20


def test_render_checks_the_box() -> None:
    img = render("motorcycle", (4, 6, 44, 42), np.random.default_rng(0), 48)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    with pytest.raises(DataError, match="does not fit"):
        render("motorcycle", (10, 0, 60, 40), np.random.default_rng(0), 48)
