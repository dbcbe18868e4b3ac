"""Concept measures: the continuous regression targets computed from images and nuclei masks.

Every measure is registered once by name in :data:`MEASURES` (see
:mod:`rcvlab.measures.registry`); :func:`compute_measure` and :func:`compute_measures`
compute them by name.

- :mod:`~rcvlab.measures.morphology`: nuclei area and other per-patch nuclei morphology
  from a segmentation mask (``nuclei_*``).
- :mod:`~rcvlab.measures.texture`: Haralick / GLCM properties of the grey image
  (``glcm_*``) and over the nuclei only (``glcm_*_nuclei``).
- :mod:`~rcvlab.measures.colour`: colourfulness and hue fractions (``blueness``, ...).
- :mod:`~rcvlab.measures.segment`: nuclei and tissue masks of H&E images by colour
  deconvolution (masks, not measures: the nuclei masks of data without annotations).
"""

# not sorted: import order is registration order, and listings start with the nuclei measures
from .registry import (  # noqa: I001
    MEASURES,
    MeasureSpec,
    MeasureTable,
    compute_measure,
    compute_measures,
    get_measure,
    register,
    register_family,
)
from .morphology import (
    binarise_mask,
    nuclei_area,
    nuclei_count,
    nuclei_eccentricity,
    nuclei_euler,
    nuclei_labels,
    nuclei_max_area,
    nuclei_morphology,
    nuclei_perimeter,
    nuclei_regions,
    nuclei_solidity,
)
from .texture import GLCM_PROPERTIES, as_grey_uint8, glcm_features, glcm_matrix
from .colour import (
    HUE_RANGES,
    as_rgb,
    blueness,
    colourfulness,
    greenness,
    hue_fraction,
    hue_fractions,
    redness,
)
from .segment import TISSUE_SATURATION, haematoxylin, segment_nuclei, tissue_mask

__all__ = [
    "GLCM_PROPERTIES",
    "HUE_RANGES",
    "MEASURES",
    "TISSUE_SATURATION",
    "MeasureSpec",
    "MeasureTable",
    "as_grey_uint8",
    "as_rgb",
    "binarise_mask",
    "blueness",
    "colourfulness",
    "compute_measure",
    "compute_measures",
    "get_measure",
    "glcm_features",
    "glcm_matrix",
    "greenness",
    "haematoxylin",
    "hue_fraction",
    "hue_fractions",
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
    "redness",
    "register",
    "register_family",
    "segment_nuclei",
    "tissue_mask",
]
