"""Data sources: indexed images with per-image concept measures (see :mod:`rcvlab.data.base`)."""

from .base import (
    ArrayImageSet,
    FileImageSet,
    ImageSet,
    Skip,
    SubsetImageSet,
    limit_per_class,
    read_grey,
    read_rgb,
    to_rgb,
    to_uint8,
)
from .camelyon import read_camelyon
from .he import tumour_set
from .manifest import read_csv_manifest
from .spec import DATA_FORMS, OPTION_KINDS, open_data
from .voc import detect_layout, read_voc

__all__ = [
    "DATA_FORMS",
    "OPTION_KINDS",
    "ArrayImageSet",
    "FileImageSet",
    "ImageSet",
    "Skip",
    "SubsetImageSet",
    "detect_layout",
    "limit_per_class",
    "open_data",
    "read_camelyon",
    "read_csv_manifest",
    "read_grey",
    "read_rgb",
    "read_voc",
    "to_rgb",
    "to_uint8",
    "tumour_set",
]
