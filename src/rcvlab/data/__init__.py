"""Data sources: indexed images with per-image concept measures (see :mod:`rcvlab.data.base`)."""

from .base import ArrayImageSet, FileImageSet, ImageSet, Skip, SubsetImageSet, read_rgb
from .manifest import read_csv_manifest
from .spec import DATA_FORMS, open_data
from .voc import detect_layout, read_voc

__all__ = [
    "DATA_FORMS",
    "ArrayImageSet",
    "FileImageSet",
    "ImageSet",
    "Skip",
    "SubsetImageSet",
    "detect_layout",
    "open_data",
    "read_csv_manifest",
    "read_rgb",
    "read_voc",
]
