"""Nuclei morphology of a histology patch from its nuclei segmentation mask.

The pipeline is the authors' as METHOD §1 states it (paper 000's average nuclei area):
threshold the mask (Otsu), close it with a 2 x 2 square, clear objects touching the border,
label connected components, keep regions of at least 3 pixels. Every measure here is
computed from those same regions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops
from skimage.morphology import closing, remove_small_objects
from skimage.segmentation import clear_border

from rcvlab.errors import DataError
from rcvlab.measures.registry import register

if TYPE_CHECKING:
    from skimage.measure._regionprops import RegionProperties

#: Regions smaller than this (in pixels) are segmentation noise, not nuclei.
MIN_NUCLEUS_AREA = 3
#: Structuring element of the closing: a 2 x 2 square (joins objects 1 px apart).
CLOSING_FOOTPRINT = np.ones((2, 2), dtype=bool)

MORPHOLOGY_MEASURES: dict[str, str] = {
    "nuclei_area": "mean nucleus area (pixels)",
    "nuclei_count": "number of nuclei",
    "nuclei_max_area": "largest nucleus area (pixels)",
    "nuclei_eccentricity": "mean nucleus eccentricity (0 = circle, 1 = line)",
    "nuclei_perimeter": "mean nucleus perimeter (pixels, 4-connected contour estimate)",
    "nuclei_solidity": "mean nucleus solidity (area / convex hull area)",
    "nuclei_euler": "mean Euler number of the nuclei (1 minus the number of holes)",
}
#: regionprops attribute averaged over the nuclei for each mean measure
_PROPERTY: dict[str, str] = {
    "nuclei_area": "area",
    "nuclei_eccentricity": "eccentricity",
    "nuclei_perimeter": "perimeter",
    "nuclei_solidity": "solidity",
    "nuclei_euler": "euler_number",
}


def _as_2d(mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        # a grey mask saved as RGB(A): accept it only when the colour channels agree
        rgb = arr[:, :, :3]
        if not (
            np.array_equal(rgb[:, :, 0], rgb[:, :, 1])
            and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
        ):
            raise DataError(
                f"nuclei mask of shape {arr.shape} has differing colour channels; "
                "give a single-channel (H, W) mask"
            )
        arr = rgb[:, :, 0]
    if arr.ndim != 2:
        raise DataError(f"nuclei mask must be 2-D (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise DataError("nuclei mask is empty (0 pixels)")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"nuclei mask must be boolean or numeric, got dtype {arr.dtype}")
    return arr


def binarise_mask(mask: Any) -> np.ndarray:
    """Foreground (nuclei) pixels of a segmentation mask; nuclei are the bright values.

    - boolean: used as it is;
    - two distinct values (a binary mask stored as 0/1, 0/255, ...): thresholded at half
      its range, i.e. the higher value is foreground;
    - more values (grey or float): ``mask > skimage.filters.threshold_otsu(mask)``;
    - a single value: no foreground. A constant numeric mask has nothing to separate, so it
      is read as all background (no nuclei); pass a boolean mask to mean "all nuclei".

    An instance-label image (0 = background, 1..n = one id per nucleus) is not a grey
    mask: Otsu would drop the low ids. Pass ``labels > 0`` instead.

    Parameters
    ----------
    mask : array_like or PIL image
        ``(H, W)`` (or ``(H, W, 1)``, or RGB(A) with equal colour channels).

    Returns
    -------
    ndarray of bool, shape (H, W)

    Raises
    ------
    DataError
        For a mask that is not 2-D, is empty, or holds NaN or infinite values.
    """
    arr = _as_2d(mask)
    if arr.dtype == bool:
        return arr.copy()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError("nuclei mask holds NaN or infinite values")
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        return np.zeros(arr.shape, dtype=bool)
    if np.unique(arr).size == 2:
        return arr > lo + 0.5 * (float(hi) - float(lo))
    return arr > threshold_otsu(arr)


def nuclei_labels(mask: Any) -> np.ndarray:
    """Label image of the nuclei (0 = background), as :func:`nuclei_regions` selects them.

    Parameters
    ----------
    mask : array_like
        The segmentation mask (see :func:`binarise_mask`).

    Returns
    -------
    ndarray of int, shape (H, W)
        Consecutive labels 1..n for the nuclei kept; removed regions are 0.
    """
    fg = binarise_mask(mask)
    fg = closing(fg, footprint=CLOSING_FOOTPRINT)
    fg = clear_border(fg)
    # max_size removes objects of *at most* that many pixels (scikit-image >= 0.26; the
    # deprecated min_size removed those strictly smaller); connectivity 2 is the 8-connected
    # labelling below, so the objects removed are exactly the labelled regions below 3 px
    fg = remove_small_objects(fg, max_size=MIN_NUCLEUS_AREA - 1, connectivity=2)
    return label(fg, connectivity=2)


def nuclei_regions(mask: Any) -> list[RegionProperties]:
    """The nuclei of a segmentation mask as scikit-image regions.

    Otsu threshold (see :func:`binarise_mask` for boolean, binary and constant masks),
    closing with a 2 x 2 square (:func:`skimage.morphology.closing`, which joins objects
    1 pixel apart), objects touching the border cleared
    (:func:`skimage.segmentation.clear_border`), 8-connected objects of fewer than 3 pixels
    removed (:func:`skimage.morphology.remove_small_objects` with ``max_size=2``), and the
    rest labelled, 8-connected (:func:`skimage.measure.label`).

    Parameters
    ----------
    mask : array_like
        ``(H, W)`` boolean, grey (uint8, ...) or float mask; nuclei are bright.

    Returns
    -------
    list of skimage.measure._regionprops.RegionProperties
        One per nucleus (empty when there is none).
    """
    return regionprops(nuclei_labels(mask))


def nuclei_morphology(mask: Any, keys: Iterable[str] | None = None) -> dict[str, float]:
    """Per-patch nuclei measures from one pass over :func:`nuclei_regions`.

    Parameters
    ----------
    mask : array_like
        The segmentation mask.
    keys : iterable of str, optional
        Only these measures (names in :data:`MORPHOLOGY_MEASURES`); default all. Region
        properties are computed lazily, so asking for the area alone is much cheaper.

    Returns
    -------
    dict of str to float
        ``nuclei_count`` (0 when there is no nucleus), and the mean area, max area, mean
        eccentricity, perimeter, solidity and Euler number (``nuclei_area``,
        ``nuclei_max_area``, ``nuclei_eccentricity``, ``nuclei_perimeter``,
        ``nuclei_solidity``, ``nuclei_euler``), which are NaN when there is no nucleus.
    """
    wanted = list(MORPHOLOGY_MEASURES) if keys is None else list(keys)
    unknown = [k for k in wanted if k not in MORPHOLOGY_MEASURES]
    if unknown:
        raise ValueError(f"unknown nuclei measures {unknown}; known: {list(MORPHOLOGY_MEASURES)}")
    regions = nuclei_regions(mask)
    out: dict[str, float] = {}
    for k in wanted:
        if k == "nuclei_count":
            out[k] = float(len(regions))
        elif not regions:
            out[k] = math.nan
        elif k == "nuclei_max_area":
            out[k] = float(max(r.area for r in regions))
        else:
            out[k] = float(np.mean([getattr(r, _PROPERTY[k]) for r in regions]))
    return out


def _registered(name: str) -> Callable[[Callable[[Any], float]], Callable[[Any], float]]:
    return register(
        name,
        needs="mask",
        description=MORPHOLOGY_MEASURES[name],
        family=nuclei_morphology,
        key=name,
    )


@_registered("nuclei_area")
def nuclei_area(mask: Any) -> float:
    """Average nuclei area of a patch: mean area in pixels of :func:`nuclei_regions`.

    This is the regression target of the papers' histopathology experiments.

    Parameters
    ----------
    mask : array_like
        The segmentation mask.

    Returns
    -------
    float
        Mean area in pixels; NaN when the patch has no nucleus.
    """
    return nuclei_morphology(mask, ["nuclei_area"])["nuclei_area"]


@_registered("nuclei_count")
def nuclei_count(mask: Any) -> float:
    """Number of :func:`nuclei_regions` (0.0 when there is none)."""
    return nuclei_morphology(mask, ["nuclei_count"])["nuclei_count"]


@_registered("nuclei_max_area")
def nuclei_max_area(mask: Any) -> float:
    """Area in pixels of the largest nucleus; NaN when there is none."""
    return nuclei_morphology(mask, ["nuclei_max_area"])["nuclei_max_area"]


@_registered("nuclei_eccentricity")
def nuclei_eccentricity(mask: Any) -> float:
    """Mean eccentricity of the nuclei' fitted ellipses; NaN when there is none."""
    return nuclei_morphology(mask, ["nuclei_eccentricity"])["nuclei_eccentricity"]


@_registered("nuclei_perimeter")
def nuclei_perimeter(mask: Any) -> float:
    """Mean perimeter of the nuclei (scikit-image's estimate); NaN when there is none."""
    return nuclei_morphology(mask, ["nuclei_perimeter"])["nuclei_perimeter"]


@_registered("nuclei_solidity")
def nuclei_solidity(mask: Any) -> float:
    """Mean solidity (area / convex hull area) of the nuclei; NaN when there is none."""
    return nuclei_morphology(mask, ["nuclei_solidity"])["nuclei_solidity"]


@_registered("nuclei_euler")
def nuclei_euler(mask: Any) -> float:
    """Mean Euler number (1 minus holes) of the nuclei; NaN when there is none."""
    return nuclei_morphology(mask, ["nuclei_euler"])["nuclei_euler"]


__all__ = [
    "CLOSING_FOOTPRINT",
    "MIN_NUCLEUS_AREA",
    "MORPHOLOGY_MEASURES",
    "binarise_mask",
    "nuclei_area",
    "nuclei_count",
    "nuclei_eccentricity",
    "nuclei_euler",
    "nuclei_labels",
    "nuclei_max_area",
    "nuclei_morphology",
    "nuclei_perimeter",
    "nuclei_regions",
    "nuclei_solidity",
]
