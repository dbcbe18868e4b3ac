"""The embedded histology set: patches at several magnifications, with their nuclei masks.

It stands in for paper 000 §4.4's data (patches of 141 breast-cancer slides at 5X ... 40X,
regressing the average nuclei area, whose class means grow with the square of the
magnification) and is made offline from two sources:

**Real** (``source="real"``): real H&E, tiatoolbox's carcinoma image ``target_image.png``
(1000 x 1000 px at about 0.25 µm/px, i.e. the 40X view; see :mod:`rcvlab.data.he` for how the
scale was measured), read from the installed wheel (``pip install --no-deps
tiatoolbox==2.1.3``; without it a one-line :class:`DataError` gives the command). Its four
500-px quadrants are the four "slides" (groups ``he/q0`` ... ``he/q3``), neighbouring regions
of one section. The nuclei mask is :func:`rcvlab.measures.segment_nuclei` (colour
deconvolution: smoothed haematoxylin above its Otsu threshold, opened, small objects removed,
holes filled; parameters scaled to 40X) inside the tissue mask: automatic, not annotated.

Why H&E and not (only) scikit-image's IHC photo: the area law measured with
:func:`area_law` (seeds 0-2) at ``patch=128`` gives a slope of 1.65-1.86 on the H&E
quadrants (1.75-1.92 on the IHC photo), and the H&E class means are the paper's own within
about 20 %: 15X 143-150 px (paper 142), 20X 205-221 (226), 30X 437-499 (490), 40X 712-910
(914); the paper's means have a slope of 1.81. The law flattens for small patches, since the
area measure clears nuclei touching the patch border and a carcinoma nucleus is ~34 px across
at 40X: slope 1.45-1.61 at ``patch=96``, 0.8-1.2 at ``patch=64`` (IHC: 1.53-1.71, 1.53-1.57),
so use ``patch=128`` for the real part when the law matters. The **IHC photo** (DAB plus a
haematoxylin counterstain, 512 x 512, four 256-px quadrants ``ihc/q0`` ...; nuclei from
:func:`ihc_photo_and_mask`) stays available as ``source="ihc"``; it is not H&E.

**Synthetic** (``source="synthetic"``): H&E-like slides, ``n_slides`` of them. Pink stroma
(eosin-like optical density from smoothed noise at two scales, with pale gaps) holds purple
nuclei (hematoxylin-like optical density with chromatin texture and a soft edge) that are
non-overlapping ellipses drawn with :func:`skimage.draw.ellipse`, with random axes and
orientation; each slide draws its own mean nucleus area (log-uniform in 350..1400 px at 40X),
its spread, its elongation and its density. Colour is rendered by the Beer-Lambert law from
the Ruifrok-Johnston stain vectors. The mask is the drawn ellipses, so it is exact at 40X.

Both are rendered at 40X and resampled to magnification ``m`` by the factor ``m / 40``
(image: Lanczos, antialiased; mask: area-averaged float mask thresholded at 0.5), so the
area in pixels of a nucleus scales with ``(m / 40)²`` by construction (see :func:`area_law`;
the 3-px minimum region of the area measure and the clearing of nuclei that touch the patch
border bend the law, at low magnification and for nuclei large against the patch). Patches
of ``patch x patch`` px are cut at random positions of each resampled slide, and transformed
by one of the 8 flips and 90-degree rotations (where a slide is small, e.g. a real quadrant
at 5X, the same crop recurs under different transforms). A magnification at which a real
quadrant is smaller than the patch (``500 * m / 40 < patch``; IHC ``256 * m / 40``) has no
real patches; it is recorded in ``skipped``.

The measures (:func:`rcvlab.measures.nuclei_morphology`, METHOD §1) are computed from each
patch's mask when the set is built; a patch without nucleus keeps NaN measures. Images are
rendered lazily (a slide on first use, memoised) and deterministically from the seed.
"""

from __future__ import annotations

import functools
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from rcvlab.data.base import ImageSet, Skip
from rcvlab.errors import DataError
from rcvlab.measures import nuclei_morphology
from rcvlab.measures.morphology import MORPHOLOGY_MEASURES

#: Bump whenever the generator changes (it is part of the fingerprint, so caches invalidate).
RECIPE_VERSION = "histoset-2"
#: Magnification of the rendered slides (the real photo is taken as this view).
BASE_MAGNIFICATION = 40.0
#: The paper's magnification classes.
MAGNIFICATIONS: tuple[str, ...] = ("5X", "8X", "10X", "15X", "20X", "30X", "40X")
#: Side of a real IHC "slide" (a quadrant of the 512-px photo) at 40X.
REAL_REGION = 256
#: Side of a real H&E "slide" (a quadrant of the 1000-px carcinoma image) at 40X.
HE_REGION = 500
#: The real tissue of each real source: (group prefix, side of a quadrant "slide" at 40X).
REAL_KINDS: dict[str, tuple[str, int]] = {"real": ("he", HE_REGION), "ihc": ("ihc", REAL_REGION)}
#: The parts :func:`histoset` can make (``"both"`` = ``"real"`` + ``"synthetic"``).
SOURCES: tuple[str, ...] = ("both", "real", "ihc", "synthetic")
#: Side of a synthetic slide at 40X.
SYNTH_SLIDE = 512

# Ruifrok & Johnston optical-density stain vectors (rows: hematoxylin, eosin), as in skimage.
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], dtype=np.float32)
_STAINS /= np.linalg.norm(_STAINS, axis=1, keepdims=True)

_MAG_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]\s*$")


def parse_magnification(label: str) -> float:
    """``"20X"`` -> ``20.0``.

    Raises
    ------
    DataError
        For a label that is not a positive number followed by ``X``.
    """
    m = _MAG_RE.match(str(label))
    if m is None or float(m.group(1)) <= 0:
        raise DataError(f"Magnification '{label}' is not of the form '20X'.")
    return float(m.group(1))


# -- resampling and patches ------------------------------------------------------------------
def _resized_side(side: int, mag: float) -> int:
    return max(1, round(side * mag / BASE_MAGNIFICATION))


def resample_image(img: np.ndarray, mag: float) -> np.ndarray:
    """Resample a 40X ``(S, S, 3)`` uint8 image to magnification ``mag`` (Lanczos)."""
    s = _resized_side(img.shape[0], mag)
    if s == img.shape[0]:
        return img
    return np.asarray(Image.fromarray(img).resize((s, s), Image.LANCZOS))


def resample_mask(mask: np.ndarray, mag: float) -> np.ndarray:
    """Resample a 40X bool mask to ``mag``: area-averaged, then thresholded at 0.5."""
    s = _resized_side(mask.shape[0], mag)
    if s == mask.shape[0]:
        return mask.astype(bool)
    f = Image.fromarray(mask.astype(np.float32), "F").resize((s, s), Image.BOX)
    return np.asarray(f) > 0.5


def square_symmetry(a: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 symmetries of the square: ``t % 4`` quarter turns, flipped if ``t >= 4``."""
    a = np.rot90(a, t % 4)
    return np.ascontiguousarray(a[:, ::-1] if t >= 4 else a)


def crop_patch(a: np.ndarray, y: int, x: int, t: int, patch: int) -> np.ndarray:
    """The ``patch``-px square at ``(y, x)`` of ``a``, under symmetry ``t`` (0..7)."""
    return square_symmetry(a[y : y + patch, x : x + patch], t)


def _patch_positions(
    side: int, patch: int, n: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """Up to ``n`` distinct ``(y, x, transform)`` crops of a ``side``-px slide."""
    span = side - patch + 1
    if span <= 0:
        return []
    if span * span >= n:
        flat = rng.choice(span * span, size=n, replace=False)
        ts = rng.integers(0, 8, size=n)
        return [(int(f // span), int(f % span), int(t)) for f, t in zip(flat, ts, strict=True)]
    total = span * span * 8
    flat = rng.choice(total, size=min(n, total), replace=False)
    return [(int(f // 8 // span), int(f // 8 % span), int(f % 8)) for f in flat]


# -- the real part ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def ihc_photo_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's IHC photo (512 x 512 x 3 uint8) and its nuclei mask (bool), read-only.

    The mask comes from colour deconvolution (:func:`skimage.color.rgb2hed`): a pixel is
    nucleus where the smoothed hematoxylin channel is above its Otsu threshold *and* the
    (standardised) hematoxylin-minus-DAB contrast is above its local background (its Otsu
    threshold after subtracting a 15-px Gaussian blur), which keeps the blue nuclei inside
    the brown epithelium and drops the DAB-stained cytoplasm; then an opening with a disk of
    radius 1, and objects and holes below 30 px removed. Touching epithelial nuclei are
    sometimes merged, and faint ones missed.
    """
    from skimage import color, data, filters, morphology

    img = np.ascontiguousarray(data.immunohistochemistry()[..., :3], dtype=np.uint8)
    hed = color.rgb2hed(img)
    h, d = hed[..., 0], hed[..., 2]

    def z(a: np.ndarray) -> np.ndarray:
        return (a - np.median(a)) / a.std()

    # hematoxylin alone also lights up DAB-stained cytoplasm; its contrast against DAB,
    # relative to the local background, separates nuclei inside the brown epithelium
    contrast = z(h) - z(d)
    local = filters.gaussian(contrast - filters.gaussian(contrast, 15), 1.5)
    hs = filters.gaussian(h, 1.5)
    mask = (local > filters.threshold_otsu(local)) & (hs > filters.threshold_otsu(hs))
    mask = morphology.opening(mask, morphology.disk(1))
    mask = morphology.remove_small_objects(mask, max_size=30)
    mask = morphology.remove_small_holes(mask, max_size=30)
    img.setflags(write=False)
    mask.setflags(write=False)
    return img, mask


@functools.lru_cache(maxsize=1)
def he_photo_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """The real H&E carcinoma image at 40X (1000 x 1000 x 3 uint8) and its nuclei mask.

    The image is tiatoolbox's ``target_image.png`` at its own pixel size, about 0.25 µm/px
    (:mod:`rcvlab.data.he`); the mask is :func:`rcvlab.measures.segment_nuclei` with its
    parameters scaled to 40X (``sigma=2``, ``min_size=48``, ``max_hole=256``) inside
    :func:`rcvlab.measures.tissue_mask`. Read-only.

    Raises
    ------
    DataError
        If tiatoolbox's data file is not installed (the message gives the pip command).
    """
    from rcvlab.data.he import real_image
    from rcvlab.measures.segment import segment_nuclei, tissue_mask

    img = real_image("carcinoma", mpp=0.25)
    mask = segment_nuclei(img, sigma=2.0, min_size=48, max_hole=256) & tissue_mask(img, sigma=4.0)
    mask.setflags(write=False)
    return img, mask


def _real_region(kind: str, q: int) -> tuple[np.ndarray, np.ndarray]:
    side = REAL_KINDS[kind][1]
    img, mask = ihc_photo_and_mask() if kind == "ihc" else he_photo_and_mask()
    y, x = divmod(q, 2)
    sl = (slice(y * side, (y + 1) * side), slice(x * side, (x + 1) * side))
    return img[sl], mask[sl]


# -- the synthetic part ---------------------------------------------------------------------------
def _ellipse_pixels(e: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage.draw import ellipse

    r, c, a, b, rot = (float(v) for v in e)
    return ellipse(r, c, a, b, shape=(size, size), rotation=rot)


def ellipses_mask(ellipses: np.ndarray, size: int) -> np.ndarray:
    """Bool ``(size, size)`` mask of ellipses ``(row, col, r_radius, c_radius, rotation)``."""
    mask = np.zeros((size, size), dtype=bool)
    for e in np.asarray(ellipses, dtype=np.float64).reshape(-1, 5):
        rr, cc = _ellipse_pixels(e, size)
        mask[rr, cc] = True
    return mask


@dataclass(frozen=True)
class NucleiParams:
    """Ranges from which one synthetic slide draws its nuclei (:func:`slide_ellipses`).

    Each slide draws its mean nucleus area log-uniformly in ``mean_area``, the log-normal
    sigma of the areas around that mean in ``spread``, its lowest minor/major axis ratio in
    ``elong`` (each nucleus's ratio is uniform between it and 1), the fraction of the slide
    covered by nuclei in ``coverage``, and (for :func:`render_he`) the haematoxylin optical
    density of its nuclei in ``h_level``. The defaults are the magnification set's slides
    at 40X (0.25 µm/px).
    """

    mean_area: tuple[float, float] = (350.0, 1400.0)
    spread: tuple[float, float] = (0.1, 0.35)
    elong: tuple[float, float] = (0.45, 0.9)
    coverage: tuple[float, float] = (0.08, 0.28)
    h_level: tuple[float, float] = (0.6, 1.0)


def slide_ellipses(
    rng: np.random.Generator, size: int = SYNTH_SLIDE, nuclei: NucleiParams | None = None
) -> np.ndarray:
    """Random non-overlapping nuclei of one synthetic slide, ``(k, 5)`` float array.

    Columns: row, col, row radius, col radius, rotation (as :func:`skimage.draw.ellipse`).
    ``nuclei`` gives the ranges of the slide's draws (default :class:`NucleiParams`, the
    magnification set's slides at 40X).
    """
    p = nuclei or NucleiParams()
    mean_area = math.exp(rng.uniform(math.log(p.mean_area[0]), math.log(p.mean_area[1])))
    spread = rng.uniform(*p.spread)  # log-normal sigma of the areas around the slide's mean
    elong = rng.uniform(*p.elong)  # lowest minor/major axis ratio of the slide
    coverage = rng.uniform(*p.coverage)
    k = max(1, round(coverage * size * size / mean_area))
    areas = mean_area * rng.lognormal(-0.5 * spread**2, spread, size=k)
    ratio = rng.uniform(elong, 1.0, size=k)
    major = np.sqrt(areas / (math.pi * ratio))
    minor = major * ratio
    rot = rng.uniform(0.0, math.pi, size=k)
    kept: list[int] = []
    centres = np.empty((0, 2))
    radii = np.empty(0)
    # rejection sampling: a nucleus keeps a 3-px gap to its neighbours (by the major axes),
    # so each drawn ellipse is one region of the mask
    for i in range(k):
        for _ in range(30):
            p = rng.uniform(0, size, size=2)
            if not len(kept) or np.all(np.hypot(*(centres - p).T) > radii + major[i] + 3.0):
                kept.append(i)
                centres = np.vstack([centres, p])
                radii = np.append(radii, major[i])
                break
    idx = np.asarray(kept, dtype=np.int64)
    return np.column_stack([centres[:, 0], centres[:, 1], major[idx], minor[idx], rot[idx]])


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def render_he(
    mask: np.ndarray, rng: np.random.Generator, h_level: tuple[float, float] = (0.6, 1.0)
) -> np.ndarray:
    """An H&E-like ``(S, S, 3)`` uint8 image whose nuclei are the bool ``mask``.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(S, S)`` bool nuclei mask.
    rng : numpy.random.Generator
        Source of the texture and colour choices.
    h_level : (float, float)
        Range of the nuclei's haematoxylin optical density (darker nuclei: higher).
    """
    from scipy.ndimage import gaussian_filter

    size = mask.shape[0]
    # stroma: eosin at two scales (fibres and larger density changes), with pale gaps
    coarse = _smooth_noise(rng, size, rng.uniform(10, 20))
    fine = _smooth_noise(rng, size, rng.uniform(1.0, 2.5))
    e_level = rng.uniform(0.25, 0.5)
    eosin = e_level * np.clip(1.0 + 0.35 * coarse + 0.25 * fine, 0.0, None)
    eosin *= np.clip(1.5 + coarse, 0.0, 1.0)
    # nuclei: hematoxylin with chromatin texture and a soft edge
    soft = gaussian_filter(mask.astype(np.float32), 0.8)
    chrom = _smooth_noise(rng, size, rng.uniform(0.7, 1.5))
    h_level = rng.uniform(*h_level)
    hema = soft * h_level * np.clip(1.0 + 0.3 * chrom, 0.2, None) + 0.03 * np.abs(fine)
    eosin = eosin * (1.0 - 0.6 * soft)
    od = hema[..., None] * _STAINS[0] + eosin[..., None] * _STAINS[1]
    rgb = 255.0 * np.exp(-od * math.log(10.0))
    rgb *= rng.uniform(0.92, 1.0, size=3).astype(np.float32)  # illumination tint
    rgb += rng.normal(0.0, 3.0, size=rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def synthetic_patch(
    ellipses: np.ndarray | Sequence[Sequence[float]], size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 40X patch with the given nuclei: ``(image uint8 (S, S, 3), mask bool)``.

    Parameters
    ----------
    ellipses : array_like of shape (k, 5)
        ``(row, col, row radius, col radius, rotation)`` of each nucleus.
    size : int
        Side of the patch in pixels.
    seed : int
        Seed of the texture.
    """
    if size < 8:
        raise DataError(f"size must be at least 8 px (got {size}).")
    mask = ellipses_mask(np.asarray(ellipses, dtype=np.float64), size)
    return render_he(mask, np.random.default_rng([seed, 7])), mask


class LRUCache(OrderedDict):
    """A small least-recently-used cache of arrays (lazily rendered slides)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get_or(self, key: object, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The value of ``key``, made by ``make()`` (and kept) on first use."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.maxsize:
            self.popitem(last=False)
        return value


class HistoSet(ImageSet):
    """The embedded histology set (see the module docstring); build it with :func:`histoset`.

    Attributes
    ----------
    magnification : numpy.ndarray
        ``(n,)`` float, the magnification of every patch (5.0, 8.0, ...).
    patch_source : numpy.ndarray
        ``(n,)`` str, ``"real"`` or ``"synthetic"`` per patch.
    crops : numpy.ndarray
        ``(n, 6)`` int: part (0 real, 1 synthetic), slide, magnification index, row, column,
        transform (0..7) of every patch.
    """

    def __init__(
        self,
        source: str,
        patch: int,
        magnifications: Sequence[str],
        n_slides: int,
        patches_per_slide_mag: int,
        seed: int,
    ) -> None:
        self.which, self.patch, self.seed = source, int(patch), int(seed)
        self.mag_labels = [str(m) for m in magnifications]
        self.mags = [parse_magnification(m) for m in self.mag_labels]
        self.n_slides, self.per = int(n_slides), int(patches_per_slide_mag)
        self._images = LRUCache(64)
        self._ellipses: dict[int, np.ndarray] = {}
        keys = list(MORPHOLOGY_MEASURES)
        ids: list[str] = []
        crops: list[tuple[int, int, int, int, int, int]] = []
        values: dict[str, list[float]] = {k: [] for k in keys}
        skipped: list[Skip] = []
        # part 0 is the real tissue: the H&E image, or the IHC photo for source="ihc"
        self.real_kind = "ihc" if source == "ihc" else "real"
        parts = [0, 1] if source == "both" else [1] if source == "synthetic" else [0]
        for part in parts:
            n_sl = 4 if part == 0 else self.n_slides
            for s in range(n_sl):
                for mi, _mag in enumerate(self.mags):
                    mask = self._slide_mask(part, s, mi)
                    rng = np.random.default_rng([self.seed, part, s, mi, 1])
                    pos = _patch_positions(mask.shape[0], self.patch, self.per, rng)
                    if not pos:
                        skipped.append(
                            Skip(
                                f"{self._group(part, s)}/{self.mag_labels[mi]}",
                                f"region is {mask.shape[0]} px at {self.mag_labels[mi]}, "
                                f"smaller than the {self.patch}-px patch",
                            )
                        )
                    for j, (y, x, t) in enumerate(pos):
                        ids.append(f"{self._group(part, s)}/{self.mag_labels[mi]}/{j:04d}")
                        crops.append((part, s, mi, y, x, t))
                        m = nuclei_morphology(crop_patch(mask, y, x, t, self.patch), keys)
                        for k in keys:
                            values[k].append(m[k])
        self.crops = np.asarray(crops, dtype=np.int64).reshape(-1, 6)
        mag_arr = np.asarray(self.mags, dtype=np.float64)
        self.magnification = mag_arr[self.crops[:, 2]] if len(crops) else np.empty(0)
        self.patch_source = np.asarray(["real", "synthetic"])[self.crops[:, 0]]
        super().__init__(
            ids,
            values,
            classes=[self.mag_labels[i] for i in self.crops[:, 2]],
            groups=[self._group(int(p), int(s)) for p, s in self.crops[:, :2]],
            skipped=skipped,
            source=f"histoset:{source}",
        )

    def _group(self, part: int, s: int) -> str:
        return f"{REAL_KINDS[self.real_kind][0]}/q{s}" if part == 0 else f"synth/slide{s:02d}"

    # -- slides ------------------------------------------------------------------------------
    def _synth_ellipses(self, s: int) -> np.ndarray:
        if s not in self._ellipses:
            rng = np.random.default_rng([self.seed, 1, s, 0])
            self._ellipses[s] = slide_ellipses(rng, SYNTH_SLIDE)
        return self._ellipses[s]

    def _slide_mask(self, part: int, s: int, mi: int) -> np.ndarray:
        if part == 0:
            base = _real_region(self.real_kind, s)[1]
        else:
            base = self._images.get_or(
                (part, s, "40X-mask"),
                lambda: ellipses_mask(self._synth_ellipses(s), SYNTH_SLIDE),
            )
        return resample_mask(base, self.mags[mi])

    def _slide_image(self, part: int, s: int, mi: int) -> np.ndarray:
        def make() -> np.ndarray:
            if part == 0:
                base = _real_region(self.real_kind, s)[0]
            else:
                base = self._images.get_or(
                    (part, s, "40X-render"),
                    lambda: render_he(
                        self._slide_mask(part, s, self.mags.index(BASE_MAGNIFICATION))
                        if BASE_MAGNIFICATION in self.mags
                        else ellipses_mask(self._synth_ellipses(s), SYNTH_SLIDE),
                        np.random.default_rng([self.seed, 1, s, 2]),
                    ),
                )
            return resample_image(np.ascontiguousarray(base), self.mags[mi])

        return self._images.get_or((part, s, mi), make)

    # -- items -------------------------------------------------------------------------------
    def _check(self, i: int) -> tuple[int, int, int, int, int, int]:
        if not 0 <= i < len(self):
            raise DataError(f"Patch index {i} out of range for a set of {len(self)} patches.")
        return tuple(int(v) for v in self.crops[i])  # type: ignore[return-value]

    def _load(self, i: int) -> Image.Image:
        part, s, mi, y, x, t = self._check(i)
        return Image.fromarray(
            crop_patch(self._slide_image(part, s, mi), y, x, t, self.patch), "RGB"
        )

    @property
    def has_masks(self) -> bool:
        """Always: every patch has a nuclei mask (:meth:`load_mask`)."""
        return True

    def load_mask(self, i: int) -> np.ndarray:
        """The bool ``(patch, patch)`` nuclei mask of patch ``i`` (the measures' input)."""
        part, s, mi, y, x, t = self._check(int(i))
        return crop_patch(self._slide_mask(part, s, mi), y, x, t, self.patch)

    def _fingerprint_payload(self) -> object:
        return {
            "recipe": RECIPE_VERSION,
            "source": self.which,
            "seed": self.seed,
            "patch": self.patch,
            "magnifications": self.mag_labels,
            "n_slides": self.n_slides,
            "patches_per_slide_mag": self.per,
        }


def histoset(
    *,
    source: str = "both",
    patch: int = 64,
    magnifications: Sequence[str] = MAGNIFICATIONS,
    n_slides: int = 12,
    patches_per_slide_mag: int = 8,
    seed: int = 0,
) -> HistoSet:
    """The embedded histology set: patches at several magnifications with nuclei measures.

    Parameters
    ----------
    source : {"both", "real", "ihc", "synthetic"}
        Which part(s): the real H&E carcinoma image (4 quadrant "slides", ``"real"``), and/or
        synthetic H&E slides (``"both"`` is real + synthetic); ``"ihc"`` is scikit-image's
        IHC photo instead of the H&E image (4 quadrants), alone.
    patch : int
        Side of every patch in pixels (at least 16). A real H&E quadrant is ``500 * m / 40``
        px at magnification ``m`` (IHC: ``256 * m / 40``), so with ``patch=64`` the real part
        starts at 8X (IHC 10X) and with ``patch=128`` at 15X (IHC 20X); missing (slide,
        magnification) pairs are listed in ``skipped``.
    magnifications : sequence of str
        Magnification classes, ``"<m>X"`` with ``0 < m <= 40``, distinct.
    n_slides : int
        Number of synthetic slides (at least 1; ignored for ``source="real"``).
    patches_per_slide_mag : int
        Patches cut per slide and magnification (fewer where a slide has fewer distinct
        crops x transforms).
    seed : int
        Seed of every random choice.

    Returns
    -------
    HistoSet
        Measures: every :data:`rcvlab.measures.morphology.MORPHOLOGY_MEASURES` entry
        (``nuclei_area`` first; NaN for a patch without nucleus); classes: the magnification
        labels; groups: the source slide (``"he/q0"``, ``"ihc/q0"``, ``"synth/slide05"``).

    Raises
    ------
    DataError
        For real H&E that is not installed (tiatoolbox), an unknown ``source``, a bad
        magnification, ``patch < 16``, ``n_slides < 1`` or
        ``patches_per_slide_mag < 1``.
    """
    if source not in SOURCES:
        raise DataError(f"source must be 'both', 'real', 'ihc' or 'synthetic' (got {source!r}).")
    if int(patch) < 16:
        raise DataError(f"patch must be at least 16 px (got {patch}).")
    if int(n_slides) < 1:
        raise DataError(f"n_slides must be at least 1 (got {n_slides}).")
    if int(patches_per_slide_mag) < 1:
        raise DataError(f"patches_per_slide_mag must be at least 1 (got {patches_per_slide_mag}).")
    labels = [str(m) for m in magnifications]
    if not labels:
        raise DataError("No magnification given.")
    if len(set(labels)) != len(labels):
        raise DataError(f"Duplicate magnifications in {labels}.")
    for m in labels:
        if parse_magnification(m) > BASE_MAGNIFICATION:
            raise DataError(f"Magnification {m} is above the rendered {BASE_MAGNIFICATION:g}X.")
    side = REAL_KINDS["ihc" if source == "ihc" else "real"][1]
    if source != "synthetic" and all(
        _resized_side(side, parse_magnification(m)) < int(patch) for m in labels
    ):
        raise DataError(
            f"No real patch of {patch} px fits at magnifications {labels} "
            f"(a real slide is {side} px at 40X)."
        )
    if source == "synthetic" and all(
        _resized_side(SYNTH_SLIDE, parse_magnification(m)) < int(patch) for m in labels
    ):
        raise DataError(f"No synthetic patch of {patch} px fits at magnifications {labels}.")
    return HistoSet(source, patch, labels, n_slides, patches_per_slide_mag, seed)


def area_law(data: ImageSet, source: str | None = None) -> tuple[float, dict[str, float]]:
    """Fit ``log(mean nuclei area) = slope * log(magnification) + c`` over the classes.

    Parameters
    ----------
    data : ImageSet
        A :class:`HistoSet` or a subset of one (classes are magnification labels, measure
        ``nuclei_area``).
    source : {"real", "ihc", "he", "synthetic"}, optional
        Only patches of that part (by their ids: ``"real"`` both ``ihc/...`` and ``he/...``,
        ``"ihc"`` or ``"he"`` one real stain, ``"synthetic"`` ``synth/...``).

    Returns
    -------
    slope : float
        About 2 when area grows with the square of the magnification.
    class_means : dict of str to float
        Mean ``nuclei_area`` per magnification label (NaN patches excluded), in increasing
        magnification.

    Raises
    ------
    DataError
        Without classes, or with fewer than two magnifications that have a finite mean.
    """
    if data.classes is None:
        raise DataError("area_law needs magnification classes.")
    area = data.measure("nuclei_area")
    keep = np.isfinite(area)
    if source is not None:
        prefix = {
            "real": ("ihc/", "he/"),
            "ihc": ("ihc/",),
            "he": ("he/",),
            "synthetic": ("synth/",),
        }.get(source)
        if prefix is None:
            raise DataError(f"source must be 'real', 'ihc', 'he' or 'synthetic' (got {source!r}).")
        keep &= np.array([i.startswith(prefix) for i in data.ids], dtype=bool)
    labels = sorted(set(data.classes[keep].tolist()), key=parse_magnification)
    means = {c: float(area[keep & (data.classes == c)].mean()) for c in labels}
    if len(means) < 2:
        raise DataError("area_law needs at least two magnifications with nuclei.")
    x = np.log([parse_magnification(c) for c in means])
    y = np.log(list(means.values()))
    slope = float(np.polyfit(x, y, 1)[0])
    return slope, means


__all__ = [
    "BASE_MAGNIFICATION",
    "MAGNIFICATIONS",
    "RECIPE_VERSION",
    "HistoSet",
    "area_law",
    "ellipses_mask",
    "histoset",
    "ihc_photo_and_mask",
    "parse_magnification",
    "render_he",
    "resample_image",
    "resample_mask",
    "slide_ellipses",
    "synthetic_patch",
]
