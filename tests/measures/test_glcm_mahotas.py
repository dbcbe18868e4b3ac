"""rcvlab's GLCM texture measures against mahotas, an independent Haralick implementation.

Conventions matched (mahotas.features.texture): ``haralick(f)`` returns one row per
direction; row 0 is the direction ``(0, 1)`` — each pixel with its right-hand neighbour at
distance 1, rcvlab's angle 0 — and every co-occurrence matrix is symmetric and normalised by
its sum, as rcvlab's. Its features 0, 1, 2 are the angular second moment, the contrast
(sum of k² p_{x-y}(k)) and the correlation; a constant image has correlation 1 in both.

Masked ("_nuclei") measures: rcvlab counts only the pixel pairs whose two pixels are inside
the mask. mahotas' ``ignore_zeros=True`` zeroes row 0 and column 0 of the co-occurrence
matrix before normalising, i.e. drops every pair with a pixel of grey level 0. So the mask
is handed to mahotas by coding the image as ``grey + 1`` inside the mask and 0 outside
(uint16): a pair survives exactly when both pixels are inside. Shifting every grey level by
one changes none of the three measures (ASM, contrast and correlation depend on grey-level
differences and centred moments only).
"""

from __future__ import annotations

import numpy as np
import pytest

from rcvlab.measures import compute_measure, glcm_features

mahotas_texture = pytest.importorskip("mahotas.features.texture")

PROPS = {"ASM": 0, "contrast": 1, "correlation": 2}


def _mahotas(grey: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    if mask is None:
        feats = mahotas_texture.haralick(grey)
    else:
        coded = np.where(mask, grey.astype(np.uint16) + 1, 0).astype(np.uint16)
        feats = mahotas_texture.haralick(coded, ignore_zeros=True)
    return {k: float(feats[0, i]) for k, i in PROPS.items()}


def _images(rng: np.random.Generator) -> list[np.ndarray]:
    smooth = np.cumsum(rng.integers(-3, 4, (48, 64)), axis=1)
    return [
        rng.integers(0, 256, (32, 40), dtype=np.uint8),  # white noise, all 256 levels
        rng.integers(90, 110, (37, 29), dtype=np.uint8),  # few levels, odd sizes
        np.clip(smooth - smooth.min(), 0, 255).astype(np.uint8),  # correlated neighbours
    ]


@pytest.mark.parametrize("index", range(3))
def test_whole_image_equals_mahotas(index):
    grey = _images(np.random.default_rng(index))[index]
    ours = glcm_features(grey)
    theirs = _mahotas(grey)
    for prop in PROPS:
        assert ours[prop] == pytest.approx(theirs[prop], rel=1e-10, abs=1e-12), prop
    # the registered measures are the same numbers
    assert compute_measure("glcm_asm", grey) == pytest.approx(theirs["ASM"], rel=1e-10)
    assert compute_measure("glcm_contrast", grey) == pytest.approx(theirs["contrast"], rel=1e-10)
    assert compute_measure("glcm_correlation", grey) == pytest.approx(
        theirs["correlation"], rel=1e-10
    )


@pytest.mark.parametrize("index", range(3))
def test_masked_equals_mahotas_ignore_zeros(index):
    rng = np.random.default_rng(10 + index)
    grey = _images(rng)[index]
    # blobs and isolated pixels: pairs half inside must be dropped, not counted
    mask = rng.random(grey.shape) < 0.6
    mask[: grey.shape[0] // 3, : grey.shape[1] // 2] = True
    ours = glcm_features(grey, mask)
    theirs = _mahotas(grey, mask)
    for prop in PROPS:
        assert ours[prop] == pytest.approx(theirs[prop], rel=1e-10, abs=1e-12), prop
    for name, prop in (
        ("glcm_asm_nuclei", "ASM"),
        ("glcm_contrast_nuclei", "contrast"),
        ("glcm_correlation_nuclei", "correlation"),
    ):
        assert compute_measure(name, grey, mask) == pytest.approx(theirs[prop], rel=1e-10)
    # and the mask matters: the whole image gives other values
    assert glcm_features(grey)["contrast"] != pytest.approx(ours["contrast"], rel=1e-6)


def test_rgb_images_go_through_the_same_grey_levels():
    from rcvlab.measures.texture import as_grey_uint8

    rgb = np.random.default_rng(5).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    grey = as_grey_uint8(rgb)
    theirs = _mahotas(grey)
    ours = glcm_features(rgb)
    for prop in PROPS:
        assert ours[prop] == pytest.approx(theirs[prop], rel=1e-10, abs=1e-12), prop


def test_constant_image_has_correlation_one_in_both():
    grey = np.full((16, 16), 77, np.uint8)
    assert glcm_features(grey)["correlation"] == _mahotas(grey)["correlation"] == 1.0
