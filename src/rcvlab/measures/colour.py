"""Colour measures: colourfulness (Hasler & Süsstrunk 2003) and hue fractions ("blueness")."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from skimage.color import rgb2hsv

from rcvlab.errors import DataError
from rcvlab.measures.registry import register

#: Named hue ranges in degrees (lo, hi), inclusive; lo > hi wraps around 360°. Pure
#: blue (240°), red (0°) and green (120°) sit in the middle of their ranges; the 60° wide
#: ranges leave the secondary colours (yellow 60°, cyan 180°, magenta 300°) out of all three.
HUE_RANGES: dict[str, tuple[float, float]] = {
    "blueness": (200.0, 260.0),
    "redness": (330.0, 30.0),
    "greenness": (90.0, 150.0),
}


def as_rgb(image: Any) -> np.ndarray:
    """An image as a float64 ``(H, W, 3)`` RGB array with values in 0..255.

    Parameters
    ----------
    image : array_like or PIL image
        ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (alpha dropped), or ``(H, W)`` / ``(H, W, 1)``
        grey (copied to the three channels). uint8 (and other integer types with values in
        0..255) are 8-bit values; booleans are 0 / 255; floats must lie in [0, 1].

    Returns
    -------
    ndarray of float64, shape (H, W, 3)

    Raises
    ------
    DataError
        For other shapes, an empty image, non-finite values or values out of range.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"expected an (H, W, 3) RGB or (H, W) grey image, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"image of shape {arr.shape} has no pixels")
    if arr.dtype == bool:
        return arr.astype(np.float64) * 255.0
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise DataError(
                f"integer image values must lie in 0..255, got {arr.min()}..{arr.max()}"
            )
        return arr.astype(np.float64)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise DataError("image holds NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise DataError(
                f"float image values must lie in [0, 1], got {arr.min():g}..{arr.max():g}"
            )
        return arr.astype(np.float64) * 255.0
    raise DataError(f"unsupported image dtype {arr.dtype}")


@register(
    "colourfulness",
    needs="image",
    description="colourfulness of Hasler & Süsstrunk (2003), on 0..255 RGB",
)
def colourfulness(image: Any) -> float:
    """Colourfulness metric of Hasler & Süsstrunk (2003).

    With ``rg = R - G`` and ``yb = (R + G) / 2 - B`` over all pixels (RGB in 0..255),
    ``M = sqrt(std(rg)² + std(yb)²) + 0.3 sqrt(mean(rg)² + mean(yb)²)``, with population
    standard deviations. A grey image has M = 0.

    Parameters
    ----------
    image : array_like or PIL image
        RGB or grey image (see :func:`as_rgb`).

    Returns
    -------
    float
    """
    rgb = as_rgb(image)
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(
        math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(float(rg.mean()), float(yb.mean()))
    )


def hue_fraction(
    image: Any,
    hue_range: tuple[float, float],
    min_saturation: float = 0.2,
    min_value: float = 0.2,
) -> float:
    """Fraction of the image's pixels whose hue lies in ``hue_range``.

    A pixel counts when its HSV hue (:func:`skimage.color.rgb2hsv`, in degrees) lies in
    ``[lo, hi]`` (or, when ``lo > hi``, in ``[lo, 360) ∪ [0, hi]``), its saturation is at
    least ``min_saturation`` and its value at least ``min_value``: greys and near-blacks have
    no meaningful hue and never count. The denominator is all pixels.

    Parameters
    ----------
    image : array_like or PIL image
        RGB or grey image (see :func:`as_rgb`).
    hue_range : (float, float)
        ``(lo, hi)`` in degrees, each in [0, 360].
    min_saturation, min_value : float
        Thresholds in [0, 1].

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If the range or thresholds are out of bounds.
    """
    lo, hi = (float(v) for v in hue_range)
    if not (0.0 <= lo <= 360.0 and 0.0 <= hi <= 360.0):
        raise ValueError(f"hue_range must lie in [0, 360] degrees, got {hue_range}")
    for name, v in (("min_saturation", min_saturation), ("min_value", min_value)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
    return _fraction_in(rgb2hsv(as_rgb(image) / 255.0), (lo, hi), min_saturation, min_value)


def _fraction_in(
    hsv: np.ndarray, hue_range: tuple[float, float], min_saturation: float, min_value: float
) -> float:
    lo, hi = hue_range
    hue = hsv[:, :, 0] * 360.0
    in_range = (hue >= lo) & (hue <= hi) if lo <= hi else (hue >= lo) | (hue <= hi)
    counted = in_range & (hsv[:, :, 1] >= min_saturation) & (hsv[:, :, 2] >= min_value)
    return float(counted.mean())


def hue_fractions(image: Any) -> dict[str, float]:
    """The fraction of pixels in each named hue range of :data:`HUE_RANGES`.

    One HSV conversion for all of them; each value is :func:`hue_fraction` with that range
    and the default saturation and value thresholds.

    Parameters
    ----------
    image : array_like or PIL image
        RGB or grey image (see :func:`as_rgb`).

    Returns
    -------
    dict of str to float
        ``{"blueness": ..., "redness": ..., "greenness": ...}``.
    """
    hsv = rgb2hsv(as_rgb(image) / 255.0)
    return {name: _fraction_in(hsv, rng, 0.2, 0.2) for name, rng in HUE_RANGES.items()}


def _hue_registered(name: str) -> Callable[[Callable[[Any], float]], Callable[[Any], float]]:
    lo, hi = HUE_RANGES[name]
    return register(
        name,
        needs="image",
        description=f"fraction of pixels with hue in {lo:g}–{hi:g}° (saturation, value >= 0.2)",
        family=hue_fractions,
        key=name,
    )


@_hue_registered("blueness")
def blueness(image: Any) -> float:
    """Fraction of blue pixels: hue in 200–260° (:func:`hue_fraction`, default thresholds)."""
    return hue_fraction(image, HUE_RANGES["blueness"])


@_hue_registered("redness")
def redness(image: Any) -> float:
    """Fraction of red pixels: hue in 330–360° or 0–30° (:func:`hue_fraction`)."""
    return hue_fraction(image, HUE_RANGES["redness"])


@_hue_registered("greenness")
def greenness(image: Any) -> float:
    """Fraction of green pixels: hue in 90–150° (:func:`hue_fraction`)."""
    return hue_fraction(image, HUE_RANGES["greenness"])


__all__ = [
    "HUE_RANGES",
    "as_rgb",
    "blueness",
    "colourfulness",
    "greenness",
    "hue_fraction",
    "hue_fractions",
    "redness",
]
