"""Haralick texture (GLCM properties) of the grey image, over the whole image or the nuclei.

One grey-level co-occurrence matrix (:func:`skimage.feature.graycomatrix`) per image:
256 grey levels, distance 1, angle 0 (each pixel with its right-hand neighbour), symmetric,
normalised to sum 1; its properties come from :func:`skimage.feature.graycoprops`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from skimage.color import rgb2gray
from skimage.feature import graycomatrix, graycoprops
from skimage.util import img_as_ubyte

from rcvlab.errors import DataError
from rcvlab.measures.colour import as_rgb
from rcvlab.measures.morphology import binarise_mask
from rcvlab.measures.registry import register_family

#: GLCM properties: measure suffix -> scikit-image property name.
GLCM_PROPERTIES: dict[str, str] = {
    "asm": "ASM",
    "energy": "energy",
    "contrast": "contrast",
    "correlation": "correlation",
    "homogeneity": "homogeneity",
    "dissimilarity": "dissimilarity",
}
_FORMULAS: dict[str, str] = {
    "ASM": "sum of P(i, j)²",
    "energy": "sqrt(ASM)",
    "contrast": "sum of P(i, j) (i - j)²",
    "correlation": "of neighbouring grey levels",
    "homogeneity": "sum of P(i, j) / (1 + (i - j)²)",
    "dissimilarity": "sum of P(i, j) |i - j|",
}
LEVELS = 256
DISTANCE = 1
ANGLE = 0.0


def as_grey_uint8(image: Any) -> np.ndarray:
    """An image as ``(H, W)`` uint8 grey levels.

    RGB images go through :func:`skimage.color.rgb2gray` (ITU-R 709 luma) and
    :func:`skimage.util.img_as_ubyte`; grey images keep their 8-bit values.

    Parameters
    ----------
    image : array_like or PIL image
        RGB(A) or grey; uint8 (or integers in 0..255), bool, or float in [0, 1].

    Returns
    -------
    ndarray of uint8, shape (H, W)

    Raises
    ------
    DataError
        For an unusable image (see :func:`rcvlab.measures.colour.as_rgb`).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2 and arr.dtype == np.uint8:
        return arr
    rgb = as_rgb(arr)  # validates shape, range and finiteness
    if arr.ndim == 2 and arr.dtype.kind == "f":
        return img_as_ubyte(arr)
    if arr.ndim == 2:
        return rgb[:, :, 0].astype(np.uint8)
    return img_as_ubyte(np.clip(rgb2gray(rgb / 255.0), 0.0, 1.0))


def glcm_matrix(image: Any, mask: Any = None) -> np.ndarray | None:
    """The normalised symmetric GLCM (distance 1, angle 0) of an image's grey levels.

    Parameters
    ----------
    image : array_like or PIL image
        RGB or grey (see :func:`as_grey_uint8`).
    mask : array_like, optional
        Nuclei mask of the same height and width (see
        :func:`rcvlab.measures.morphology.binarise_mask`). When given, only pixel pairs
        with **both** pixels inside the mask are counted: out-of-mask pixels are mapped
        to an extra grey level 256, the GLCM is computed with 257 levels, and that level's
        row and column are dropped before normalising.

    Returns
    -------
    ndarray of float64, shape (256, 256, 1, 1), or None
        Sums to 1; None when no pixel pair is counted (an empty mask, a 1-pixel-wide image).
    """
    grey = as_grey_uint8(image)
    if mask is None:
        counts = graycomatrix(grey, [DISTANCE], [ANGLE], levels=LEVELS, symmetric=True)
    else:
        inside = binarise_mask(mask)
        if inside.shape != grey.shape:
            raise DataError(f"mask of shape {inside.shape} does not match the image's {grey.shape}")
        coded = grey.astype(np.uint16)
        coded[~inside] = LEVELS
        counts = graycomatrix(coded, [DISTANCE], [ANGLE], levels=LEVELS + 1, symmetric=True)
        counts = counts[:LEVELS, :LEVELS]
    total = counts.sum()
    if total == 0:
        return None
    return counts.astype(np.float64) / total


def glcm_features(image: Any, mask: Any = None) -> dict[str, float]:
    """Haralick / GLCM properties of the grey image, optionally over the nuclei only.

    Parameters
    ----------
    image : array_like or PIL image
        RGB or grey image (RGB is converted with :func:`skimage.color.rgb2gray` to uint8).
    mask : array_like, optional
        Nuclei mask; when given, co-occurrences are counted only for pixel pairs whose two
        pixels are both inside it (see :func:`glcm_matrix`).

    Returns
    -------
    dict of str to float
        ``ASM``, ``energy``, ``contrast``, ``correlation``, ``homogeneity``,
        ``dissimilarity`` as :func:`skimage.feature.graycoprops` defines them (a constant
        image has correlation 1). All NaN when no pixel pair is counted.
    """
    p = glcm_matrix(image, mask)
    if p is None:
        return {prop: math.nan for prop in GLCM_PROPERTIES.values()}
    return {prop: float(graycoprops(p, prop)[0, 0]) for prop in GLCM_PROPERTIES.values()}


register_family(
    glcm_features,
    needs="image",
    members={
        f"glcm_{suffix}": (prop, f"GLCM {prop} of the grey image ({_FORMULAS[prop]})")
        for suffix, prop in GLCM_PROPERTIES.items()
    },
)
register_family(
    glcm_features,
    needs="image+mask",
    members={
        f"glcm_{suffix}_nuclei": (prop, f"GLCM {prop} over nuclei pixel pairs ({_FORMULAS[prop]})")
        for suffix, prop in GLCM_PROPERTIES.items()
    },
)


__all__ = ["GLCM_PROPERTIES", "as_grey_uint8", "glcm_features", "glcm_matrix"]
