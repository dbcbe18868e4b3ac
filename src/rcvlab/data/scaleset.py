"""The embedded scale set: real photographs pasted at exact, random scale ratios.

What is real: every pixel comes from photographs that ship with scikit-image
(``chelsea``, ``coffee``, ``rocket``, ``stereo_motorcycle``, ``astronaut``,
``hubble_deep_field``, ``retina``, ``immunohistochemistry``) and scikit-learn (``china``,
``flower``). What is synthetic: the composition. Image ``i`` of a class is a random square crop
(random side and position) of a random background, resized to ``size x size``, with a crop of
the class's object (its box in the photo is annotated once, below) resized so that it covers
exactly ``r = h_b * w_b / size²`` of the canvas and pasted at a random position fully inside
it. ``r`` is the area of the integer pixel box actually pasted, so the measure is exact.
Backgrounds: china, flower, astronaut (left part: the right part shows a space shuttle),
hubble_deep_field, retina (inside the disc), immunohistochemistry, and the rocket, coffee and
motorcycle photos outside their objects' boxes.

So that low-level statistics alone do not give ``r`` away (the random-weights baseline exists
to expose exactly that, METHOD.md §8), the object's per-channel mean and standard deviation
are matched to its background crop (Reinhard-style, in RGB; the target spread has a floor of 12
grey levels so that objects on nearly uniform backgrounds stay visible); then object and
background are jittered independently (brightness, contrast, saturation, per-channel gain) and
blurred independently by a random amount that does not depend on ``r``. Cues that remain and
grow with ``r``:

- the pasted box's outline (its length grows with ``sqrt(r)``); softened by a feathered alpha
  edge and the colour matching, not removed;
- the resampling of the object crop (small objects are shrunk more, so they carry more detail
  per pixel); softened by the random object blur, not removed;
- texture: the fraction of the canvas covered by the object's texture is ``r``, so any feature
  that tells fur from sky (even a random convolution's) averages to something linear in ``r``;
  softened by using the objects' own surroundings as backgrounds too, not removed. Within a
  class the object's sharpness shows this way (fur and a cluttered garage are sharper than
  the average background, sky and a cup smoother: |corr(mean gradient, r)| up to ~0.4).

Filled images (``r_range=(0.999, 1.0)``) are colour-matched and jittered like the others, so an
ImageNet classifier recognises them less often than the untouched photos.

The pretrained-versus-random gap is what this set is for (the README has measured profiles).
Images are generated lazily and deterministically from ``(seed, class, index)`` (the class's
position in :data:`SCALESET_CLASSES`, not in the selection), so any subset or shard is the same
in any order and in any process. The ratios of a class are stratified over ``r_range`` (every
stretch of the range equally covered), which depends on ``n_per_class``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageStat

from rcvlab.data.base import ImageSet
from rcvlab.errors import DataError, UnknownNameError, did_you_mean

#: Bump whenever the generator changes (it is part of the fingerprint, so caches invalidate).
RECIPE_VERSION = "scaleset-5"


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        img = getattr(data, name)()
        return img[0] if isinstance(img, tuple) else img

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


@dataclass(frozen=True)
class ObjectClass:
    """An object cut from a real photo: its box and the ImageNet classes it belongs to."""

    name: str
    photo: str
    load: Callable[[], np.ndarray]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photo
    imagenet: tuple[int, ...]  # indices of acceptable ImageNet-1k classes


SCALESET_CLASSES: dict[str, ObjectClass] = {
    c.name: c
    for c in (
        ObjectClass(
            "cat", "skimage chelsea", _skimage("chelsea"), (60, 0, 380, 300), (281, 282, 285)
        ),  # tabby, tiger cat, Egyptian cat
        ObjectClass(
            "coffee", "skimage coffee", _skimage("coffee"), (75, 10, 485, 400), (967, 968)
        ),  # espresso, cup
        ObjectClass(
            "rocket", "skimage rocket", _skimage("rocket"), (175, 110, 475, 420), (657, 744, 812)
        ),  # missile, projectile, space shuttle
        ObjectClass(
            "motorcycle",
            "skimage stereo_motorcycle[0]",
            _skimage("stereo_motorcycle"),
            (115, 0, 670, 500),
            (665, 670),
        ),  # moped, motor scooter
    )
}


@dataclass(frozen=True)
class Background:
    """A real colour photo that backgrounds are cropped from, and the usable region in it."""

    name: str
    load: Callable[[], np.ndarray]
    region: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1; None: the whole photo


BACKGROUNDS: dict[str, Background] = {
    b.name: b
    for b in (
        Background("china", _sklearn("china.jpg")),
        Background("flower", _sklearn("flower.jpg")),
        # left part only: the right part shows a space shuttle, which would be a second rocket
        Background("astronaut", _skimage("astronaut"), (0, 0, 330, 512)),
        Background("hubble_deep_field", _skimage("hubble_deep_field")),
        # the square inside the fundus disc: the corners are black
        Background("retina", _skimage("retina"), (230, 230, 1180, 1180)),
        Background("immunohistochemistry", _skimage("immunohistochemistry")),
        # the objects' own surroundings (outside their boxes): when the context texture of an
        # object crop (sky and towers, garage, table) also fills backgrounds, the share of
        # that texture in the canvas says less about r; it lowers the random-weights R²
        Background("rocket_left", _skimage("rocket"), (0, 0, 175, 427)),
        Background("rocket_right", _skimage("rocket"), (475, 0, 640, 427)),
        Background("coffee_right", _skimage("coffee"), (485, 0, 600, 400)),
        # x < 90: beyond it the motorcycle's tail light shows
        Background("motorcycle_left", _skimage("stereo_motorcycle"), (0, 0, 90, 500)),
    )
}


def _shrink(img: np.ndarray, min_side: int) -> Image.Image:
    """Downscale (never upscale) so the shorter side is at most ``min_side``."""
    pil = Image.fromarray(np.ascontiguousarray(img[..., :3], dtype=np.uint8))
    if min(pil.size) > min_side:
        f = min_side / min(pil.size)
        pil = pil.resize(
            (max(1, round(pil.width * f)), max(1, round(pil.height * f))), Image.LANCZOS
        )
    return pil


@functools.lru_cache(maxsize=64)
def _photo(kind: str, name: str, size: int) -> Image.Image:
    """The object crop or background region, pre-shrunk for a ``size``-px canvas.

    Every later resize is then at most ~3x, which keeps rendering fast; because no crop used
    later is smaller than ``size`` after this step (backgrounds: 0.35 x 3 x size), it does
    not change what a rendered image shows, only how fast it is made. Shared: never modify.
    """
    if kind == "object":
        c = SCALESET_CLASSES[name]
        x0, y0, x1, y1 = c.box
        return _shrink(c.load()[y0:y1, x0:x1], 2 * size)
    b = BACKGROUNDS[name]
    img = b.load()
    if b.region is not None:
        x0, y0, x1, y1 = b.region
        img = img[y0:y1, x0:x1]
    return _shrink(img, 3 * size)


def _resize(
    photo: Image.Image, src: tuple[int, int, int, int], w: int, h: int, blur: float, flip: bool
) -> Image.Image:
    """The region ``src`` of ``photo`` resized to ``w x h``, blurred, optionally mirrored.

    The blur is a detour through ``1/blur`` of the size, a cheap stand-in for a Gaussian blur
    whose width grows with ``blur`` (σ ≈ 0.6 * blur px); a PIL Gaussian blur costs several
    times more. A crop smaller than the output is upsampled, which blurs it as well.
    """
    if blur > 1.1:
        small = (max(1, round(w / blur)), max(1, round(h / blur)))
        img = photo.resize(small, Image.BILINEAR, box=src).resize((w, h), Image.BILINEAR)
    else:
        img = photo.resize((w, h), Image.BILINEAR, box=src)
    return img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img


def _stats(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    st = ImageStat.Stat(img)  # from the histograms, in C
    return np.asarray(st.mean), np.asarray(st.stddev)


def _jitter(rng: np.random.Generator, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """A random colour jitter as ``x @ A + b`` for pixels ``x`` whose grey mean is ``mean``.

    Saturation (mixing with the grey value), contrast around ``mean``, brightness and a gain
    per channel: all linear, so one 3x3 matrix and an offset.
    """
    sat, contrast = rng.uniform(0.5, 1.4), rng.uniform(0.6, 1.4)
    brightness, gain = rng.uniform(0.6, 1.4), rng.uniform(0.85, 1.15, size=3)
    mix = sat * np.eye(3) + (1 - sat) / 3
    return mix * contrast * gain, mean * (brightness - contrast) * gain


def _feather(h: int, w: int, width: float) -> np.ndarray:
    """Alpha mask: 1 inside, a linear ramp of ``width`` px towards the box's border."""
    dy = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)
    dx = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)
    d = np.minimum(dy[:, None], dx[None, :])
    return np.clip(d / max(width, 1e-3), 0.0, 1.0)


def _affine(img: Image.Image, a: np.ndarray, b: np.ndarray) -> Image.Image:
    """Pixels ``x`` (RGB rows) to ``x @ a + b``, rounded and clipped to 0..255 by PIL."""
    return img.convert("RGB", tuple(np.column_stack([a.T, b]).ravel().tolist()))


def _pick(rng: np.random.Generator) -> str:
    return list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]


def render(
    cls: str, box: tuple[int, int, int, int], rng: np.random.Generator, size: int
) -> np.ndarray:
    """One ``size x size x 3`` uint8 image of ``cls`` with the object pasted into ``box``.

    Parameters
    ----------
    cls : str
        A key of :data:`SCALESET_CLASSES`.
    box : (int, int, int, int)
        ``(x0, y0, x1, y1)`` of the pasted object, inside the canvas.
    rng : numpy.random.Generator
        Source of every random choice (background, crops, jitter, blur).
    size : int
        Side of the square canvas.

    Returns
    -------
    numpy.ndarray
        The image; the object's crop covers exactly the pixels of ``box`` (the feathered edge
        lies inside the box).
    """
    return np.array(_render(cls, box, rng, size))


def _render(
    cls: str, box: tuple[int, int, int, int], rng: np.random.Generator, size: int
) -> Image.Image:
    """:func:`render`, as a PIL image (what :meth:`ScaleSet.load` returns)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise DataError(f"Box {box} does not fit a {size}-px canvas.")

    # background: a random square crop of a random photo (random side: random sharpness)
    bg_photo = _photo("background", _pick(rng), size)
    W, H = bg_photo.size
    side = max(8, int(rng.uniform(0.35, 1.0) * min(H, W)))
    by, bx = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
    flip = bool(rng.random() < 0.5)
    blur = rng.uniform(1.0, 2.2)
    bg = _resize(bg_photo, (bx, by, bx + side, by + side), size, size, blur, flip)

    # object: the largest crop of the box's aspect, scaled by 0.85..1, at a random position
    obj = _photo("object", cls, size)
    ow, oh = obj.size
    aspect = w / h
    ch, cw = (oh, oh * aspect) if ow / oh > aspect else (ow / aspect, ow)
    k = rng.uniform(0.85, 1.0)
    ch, cw = max(1, min(oh, round(ch * k))), max(1, min(ow, round(cw * k)))
    cy, cx = int(rng.integers(0, oh - ch + 1)), int(rng.integers(0, ow - cw + 1))
    flip = bool(rng.random() < 0.5)
    # the blur is drawn in canvas pixels, independently of the box size: how much the object
    # crop was shrunk (more as r falls) is blurred over, not matched
    blur = rng.uniform(1.0, 2.2)
    o = _resize(obj, (cx, cy, cx + cw, cy + ch), w, h, blur, flip)

    # the object's colour statistics matched to the background's (Reinhard, per RGB channel),
    # then object and background jittered independently
    o_mean, o_std = _stats(o)
    bg_mean, bg_std = _stats(bg)
    scale = np.maximum(bg_std, 12.0) / (o_std + 1e-3)
    a_o, b_o = _jitter(rng, float(bg_mean.mean()))
    a_b, b_b = _jitter(rng, float(bg_mean.mean()))
    o = _affine(o, scale[:, None] * a_o, (bg_mean - o_mean * scale) @ a_o + b_o)
    bg = _affine(bg, a_b, b_b)

    alpha = _feather(h, w, min(rng.uniform(1.0, 3.0), min(h, w) / 4))
    bg.paste(o, (x0, y0), Image.fromarray(np.rint(alpha * 255).astype(np.uint8), "L"))
    return bg


def _box_size(r: float, aspect: float, size: int, lo: float, hi: float) -> tuple[int, int]:
    """Integer ``(w, h)`` near area ``r * size²`` and ``aspect``, with ``w*h/size²`` in range.

    Where the aspect does not fit (r near 1), the box is made squarer: the object crop is
    cut to the box's aspect, so nothing is stretched.
    """
    area, lo_a, hi_a = r * size * size, lo * size * size, hi * size * size
    # at least area / size rows, or the width would have to exceed the canvas
    h0 = int(np.clip(max(round(math.sqrt(area / aspect)), math.ceil(area / size)), 1, size))
    # the nearest height (to the aspect's) for which some integer width hits the range
    for h in sorted(range(1, size + 1), key=lambda v: (abs(v - h0), v)):
        w_min, w_max = max(1, math.ceil(lo_a / h)), min(size, math.floor(hi_a / h))
        if w_min <= w_max:
            return int(np.clip(round(area / h), w_min, w_max)), h
    raise DataError(f"No integer box has an area ratio in [{lo}, {hi}] on a {size}-px canvas.")


class ScaleSet(ImageSet):
    """The embedded scale set (see the module docstring); build it with :func:`scaleset`.

    Attributes
    ----------
    boxes : numpy.ndarray
        ``(n, 4)`` int array, the pasted box ``(x0, y0, x1, y1)`` of every image.
    labels : list of tuple of int
        The acceptable ImageNet-1k class indices of every image (see :meth:`imagenet_labels`).
    class_names : list of str
        The selected classes, in order (image ``i`` is of class ``i // n_per_class``).
    """

    def __init__(
        self,
        classes: Sequence[str],
        n_per_class: int,
        seed: int,
        size: int,
        r_range: tuple[float, float],
    ) -> None:
        self.class_names = list(classes)
        self.n_per_class, self.seed, self.size = int(n_per_class), int(seed), int(size)
        self.r_range = (float(r_range[0]), float(r_range[1]))
        lo, hi = self.r_range
        self._cidx = [list(SCALESET_CLASSES).index(c) for c in self.class_names]
        boxes, cls_of, ids, self.labels = [], [], [], []
        for name, cidx in zip(self.class_names, self._cidx, strict=True):
            x0, y0, x1, y1 = SCALESET_CLASSES[name].box
            aspect = (x1 - x0) / (y1 - y0)
            # stratified-uniform ratios: every stretch of the range equally covered
            strat = np.random.default_rng([self.seed, cidx, 0, self.n_per_class])
            u = (np.arange(n_per_class) + strat.random(n_per_class)) / n_per_class
            strat.shuffle(u)
            for i in range(n_per_class):
                w, h = _box_size(lo + u[i] * (hi - lo), aspect, size, lo, hi)
                pos = np.random.default_rng([self.seed, cidx, 1, i])
                px, py = int(pos.integers(0, size - w + 1)), int(pos.integers(0, size - h + 1))
                boxes.append((px, py, px + w, py + h))
                cls_of.append(name)
                ids.append(f"scaleset/{name}/{i:05d}")
                self.labels.append(SCALESET_CLASSES[name].imagenet)
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        wh = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        r = wh / float(size * size)
        super().__init__(
            ids,
            {"scale_ratio": r, "scale_ratio_sqrt": np.sqrt(r)},
            classes=cls_of,
            source="scaleset:" + ",".join(self.class_names),
        )

    def _load(self, i: int) -> Image.Image:
        if not 0 <= i < len(self):
            raise DataError(f"Image index {i} out of range for a set of {len(self)} images.")
        ci, j = divmod(i, self.n_per_class)
        rng = np.random.default_rng([self.seed, self._cidx[ci], 2, j])
        return _render(self.class_names[ci], tuple(self.boxes[i]), rng, self.size)

    def box(self, i: int) -> tuple[int, int, int, int]:
        """The pasted box ``(x0, y0, x1, y1)`` of image ``i``."""
        return tuple(int(v) for v in self.boxes[i])  # type: ignore[return-value]

    def imagenet_labels(self, i: int) -> tuple[int, ...]:
        """The acceptable ImageNet-1k class indices of image ``i`` (e.g. cat: 281, 282, 285)."""
        return self.labels[i]

    def _fingerprint_payload(self) -> object:
        return {
            "recipe": RECIPE_VERSION,
            "seed": self.seed,
            "size": self.size,
            "n_per_class": self.n_per_class,
            "classes": self.class_names,
            "r_range": self.r_range,
        }


def scaleset(
    classes: Sequence[str] | None = None,
    *,
    n_per_class: int = 300,
    seed: int = 0,
    size: int = 224,
    r_range: tuple[float, float] = (0.02, 1.0),
) -> ScaleSet:
    """The embedded scale set: ``n_per_class`` images per object class, scale ratio exact.

    Parameters
    ----------
    classes : sequence of str, optional
        Object classes (default: all of ``SCALESET_CLASSES``: cat, coffee, rocket, motorcycle).
    n_per_class : int
        Images per class (at least 10).
    seed : int
        Seed of every random choice; image ``i`` of a class depends only on ``seed``, the
        class, ``i``, ``n_per_class``, ``size`` and ``r_range``.
    size : int
        Side of the square canvas in pixels (at least 16).
    r_range : (float, float)
        Range of the scale ratio ``r = box area / canvas area``, ``0 < low < high <= 1``;
        every stored ratio lies in it.

    Returns
    -------
    ScaleSet
        Measures ``scale_ratio`` and ``scale_ratio_sqrt``; classes are the object names;
        ``boxes`` the pasted boxes; ``labels[i]`` / ``imagenet_labels(i)`` the acceptable
        ImageNet class indices of image ``i``.

    Raises
    ------
    UnknownNameError
        For a class that is not in :data:`SCALESET_CLASSES`.
    DataError
        For ``n_per_class < 10``, ``size < 16``, a bad ``r_range`` or duplicate classes.
    """
    names = list(SCALESET_CLASSES) if classes is None else [str(c) for c in classes]
    for c in names:
        if c not in SCALESET_CLASSES:
            raise UnknownNameError(
                f"Unknown scaleset class '{c}'.{did_you_mean(c, SCALESET_CLASSES)} "
                f"Available: {', '.join(SCALESET_CLASSES)}."
            )
    if not names:
        raise DataError("No scaleset class selected.")
    if len(set(names)) != len(names):
        raise DataError(f"Duplicate scaleset classes in {names}.")
    if n_per_class < 10:
        raise DataError(f"n_per_class must be at least 10 (got {n_per_class}).")
    if size < 16:
        raise DataError(f"size must be at least 16 px (got {size}).")
    lo, hi = (float(v) for v in r_range)
    if not 0 < lo < hi <= 1:
        raise DataError(f"r_range must satisfy 0 < low < high <= 1 (got {r_range}).")
    return ScaleSet(names, n_per_class, seed, size, (lo, hi))


__all__ = [
    "BACKGROUNDS",
    "RECIPE_VERSION",
    "SCALESET_CLASSES",
    "Background",
    "ObjectClass",
    "ScaleSet",
    "render",
    "scaleset",
]
