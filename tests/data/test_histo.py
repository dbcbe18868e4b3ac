"""The embedded histology set: determinism, groups, the area law, exact synthetic areas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rcvlab.data.histo import (
    HistoSet,
    area_law,
    ellipses_mask,
    histoset,
    parse_magnification,
    synthetic_patch,
)
from rcvlab.errors import DataError
from rcvlab.measures import nuclei_area
from rcvlab.probe.splits import repeated_splits


@pytest.fixture(scope="module")
def synth() -> HistoSet:
    return histoset(source="synthetic", patch=64, n_slides=6, patches_per_slide_mag=6, seed=0)


@pytest.fixture(scope="module")
def real() -> HistoSet:
    return histoset(source="real", patch=128, patches_per_slide_mag=16, seed=0)


@pytest.fixture(scope="module")
def ihc() -> HistoSet:
    return histoset(source="ihc", patch=128, patches_per_slide_mag=8, seed=0)


def test_shapes_dtypes_and_ids(synth: HistoSet) -> None:
    n = len(synth)
    assert n == 6 * 7 * 6
    img = synth.load(0)
    assert img.mode == "RGB" and img.size == (64, 64)
    mask = synth.load_mask(0)
    assert mask.dtype == bool and mask.shape == (64, 64)
    assert synth.has_masks and synth.subset([0, 1]).has_masks
    assert synth.magnification.dtype == np.float64 and synth.magnification.shape == (n,)
    assert set(synth.classes) == {"5X", "8X", "10X", "15X", "20X", "30X", "40X"}
    assert all(i.startswith("synth/slide") for i in synth.ids)
    assert set(synth.patch_source) == {"synthetic"}
    assert "nuclei_area" in synth.measures and "nuclei_count" in synth.measures
    # the measure is the METHOD §1 one, on the patch's mask
    for i in (0, n // 2, n - 1):
        got, want = synth.measure("nuclei_area")[i], nuclei_area(synth.load_mask(i))
        assert (math.isnan(got) and math.isnan(want)) or got == want


def test_deterministic_and_seed_matters(synth: HistoSet) -> None:
    again = histoset(source="synthetic", patch=64, n_slides=6, patches_per_slide_mag=6, seed=0)
    other = histoset(source="synthetic", patch=64, n_slides=6, patches_per_slide_mag=6, seed=1)
    assert again.ids == synth.ids and again.fingerprint() == synth.fingerprint()
    np.testing.assert_array_equal(again.measure("nuclei_area"), synth.measure("nuclei_area"))
    for i in (3, len(synth) - 2):
        np.testing.assert_array_equal(np.asarray(again.load(i)), np.asarray(synth.load(i)))
    assert other.fingerprint() != synth.fingerprint()
    assert not np.array_equal(np.asarray(other.load(3)), np.asarray(synth.load(3)))
    assert not np.allclose(
        np.nan_to_num(other.measure("nuclei_area")), np.nan_to_num(synth.measure("nuclei_area"))
    )


def test_groups_are_slides_and_splits_do_not_leak() -> None:
    both = histoset(source="both", patch=32, n_slides=3, patches_per_slide_mag=3, seed=0)
    for g in np.unique(both.groups):
        sel = both.groups == g
        assert len(set(both.patch_source[sel])) == 1
        assert all(i.startswith(g + "/") for i in np.asarray(both.ids)[sel])
    assert set(both.patch_source) == {"real", "synthetic"}
    for train, test in repeated_splits(len(both), 5, 0.3, 0, groups=both.groups):
        assert not set(both.groups[train]) & set(both.groups[test])


def test_area_law_synthetic(synth: HistoSet) -> None:
    slope, means = area_law(synth)
    assert 1.7 <= slope <= 2.3
    vals = list(means.values())
    assert list(means) == ["5X", "8X", "10X", "15X", "20X", "30X", "40X"]
    assert all(a < b for a, b in itertools.pairwise(vals))


#: The paper's training-set mean nuclei areas (METHOD §5), whose log-log slope is 1.81.
PAPER_MEANS = {"15X": 142.39, "20X": 225.70, "30X": 489.98, "40X": 913.82}


def test_area_law_real_he(real: HistoSet) -> None:
    # the real part is the H&E carcinoma image (histoset-2); its 40X scale is the paper's
    assert all(g.startswith("he/q") for g in real.groups)
    slope, means = area_law(real)
    assert 1.5 <= slope <= 2.3
    vals = list(means.values())
    assert all(a < b for a, b in itertools.pairwise(vals))
    # a 500-px quadrant is smaller than a 128-px patch below 15X: those are skipped, not faked
    assert list(means) == list(PAPER_MEANS)
    assert len(real.skipped) == 4 * 3
    for mag, paper in PAPER_MEANS.items():
        assert paper / 1.35 < means[mag] < paper * 1.35, mag
    assert area_law(real, source="he")[0] == slope


def test_area_law_ihc(ihc: HistoSet) -> None:
    assert all(g.startswith("ihc/q") for g in ihc.groups)
    slope, means = area_law(ihc, source="ihc")
    assert 1.6 <= slope <= 2.3
    # a 256-px quadrant is smaller than a 128-px patch below 20X: those are skipped, not faked
    assert list(means) == ["20X", "30X", "40X"]
    assert len(ihc.skipped) == 4 * 4


def test_real_mask_monotone_over_small_patches() -> None:
    small = histoset(source="real", patch=32, patches_per_slide_mag=4)
    assert set(small.classes) == {"5X", "8X", "10X", "15X", "20X", "30X", "40X"}
    _, means = area_law(small, source="real")
    assert means["5X"] < means["20X"]


def test_one_ellipse_area_is_exact() -> None:
    a, b = 14.0, 9.0
    img, mask = synthetic_patch([[32.0, 30.0, a, b, 0.4]], 64, seed=3)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert nuclei_area(mask) == pytest.approx(mask.sum())
    assert mask.sum() == pytest.approx(math.pi * a * b, rel=0.03)
    # nuclei are darker (purple) than the pink stroma
    assert img[mask].mean() < img[~mask].mean() - 30
    assert ellipses_mask(np.empty((0, 5)), 16).sum() == 0


def test_nan_patches_are_kept_and_counted(synth: HistoSet) -> None:
    area = synth.measure("nuclei_area")
    nan = np.isnan(area)
    assert 0 < nan.sum() < len(area) // 2
    np.testing.assert_array_equal(synth.measure("nuclei_count")[nan], 0.0)
    assert not synth.load_mask(int(np.flatnonzero(nan)[0])).all()


def test_subset_and_bad_input(synth: HistoSet) -> None:
    sub = synth.subset(np.arange(0, len(synth), 2))
    slope, _ = area_law(sub, source="synthetic")
    assert 1.5 < slope < 2.5
    with pytest.raises(DataError, match="'both', 'real', 'ihc' or 'synthetic'"):
        histoset(source="mri")
    with pytest.raises(DataError, match="'real', 'ihc', 'he' or 'synthetic'"):
        area_law(sub, source="mri")
    with pytest.raises(DataError):
        histoset(magnifications=("80X",))
    with pytest.raises(DataError):
        histoset(patch=8)
    with pytest.raises(DataError):
        parse_magnification("twenty")
    with pytest.raises(DataError):
        synth.load(len(synth))
