"""Nuclei and tissue masks of H&E images (colour deconvolution), against independent truths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import color

from rcvlab.data.histo import ellipses_mask, render_he, slide_ellipses
from rcvlab.errors import DataError
from rcvlab.measures import MEASURES, haematoxylin, segment_nuclei, tissue_mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def synthetic_he(seed: int, side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A rendered H&E patch at about 0.5 µm/px and the ellipses it was drawn from."""
    rng = np.random.default_rng([seed, 5])
    ell = slide_ellipses(rng, side)
    ell[:, 2:4] *= 0.5  # 40X-sized nuclei halved to 0.5 µm/px
    truth = ellipses_mask(ell, side)
    return render_he(truth, rng), truth


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_recovers_drawn_nuclei(seed: int) -> None:
    img, truth = synthetic_he(seed)
    mask = segment_nuclei(img)
    assert mask.dtype == bool and mask.shape == truth.shape
    assert truth.any()
    assert dice(mask, truth) > 0.8


def test_haematoxylin_is_skimage_rgb2hed_channel_0() -> None:
    img, _ = synthetic_he(7, 64)
    want = color.rgb2hed(img)[..., 0]
    np.testing.assert_allclose(haematoxylin(img), want, atol=1e-5)
    # float input in [0, 1] is the same picture
    np.testing.assert_allclose(haematoxylin(img / 255.0), want, atol=1e-5)
    np.testing.assert_array_equal(segment_nuclei(img / 255.0), segment_nuclei(img))


def test_no_nuclei_in_stroma_or_background() -> None:
    stroma = render_he(np.zeros((96, 96), bool), np.random.default_rng(3))
    assert not segment_nuclei(stroma).any()
    white = np.full((96, 96, 3), 242, np.uint8)
    white += np.random.default_rng(0).integers(0, 10, white.shape).astype(np.uint8)
    assert not segment_nuclei(white).any()
    assert not tissue_mask(white).any()
    assert tissue_mask(stroma).mean() > 0.5


def test_tissue_mask_is_smoothed_hsv_saturation() -> None:
    img, _ = synthetic_he(2, 64)
    img[:, :20] = 245  # a white margin
    want = gaussian_filter(color.rgb2hsv(img)[..., 1].astype(np.float32), 2.0) > 0.15
    got = tissue_mask(img)
    assert (got == want).mean() > 0.999
    assert not got[:, :15].any() and got[:, 30:].mean() > 0.9


def test_bad_input_and_registry_untouched() -> None:
    img, _ = synthetic_he(0, 32)
    with pytest.raises(DataError, match="sigma must be positive"):
        segment_nuclei(img, sigma=0)
    with pytest.raises(DataError, match="min_size must be at least 0"):
        segment_nuclei(img, min_size=-1)
    with pytest.raises(DataError, match="expected an"):
        segment_nuclei(np.zeros((4, 4, 2)))
    with pytest.raises(DataError, match="threshold must lie"):
        tissue_mask(img, threshold=1.5)
    # masks, not measures: nothing of this module is in the measure registry
    assert not {"segment_nuclei", "tissue_mask", "haematoxylin"} & set(MEASURES)
