"""The embedded scale set: real photographs pasted at exact, random scale ratios.

What is real: every pixel comes from photographs that ship with scikit-image
(``chelsea``, ``coffee``, ``rocket``, ``stereo_motorcycle``, ``astronaut``,
``hubble_deep_field``, ``retina``, ``immunohistochemistry``) and scikit-learn (``china``,
``flower``). What is synthetic: the placement. Image ``i`` of a class is a random crop of a
random background photo, resized to ``size x size``, with the class's object crop (its box is
annotated once below) resized so that its box covers exactly ``r = h_b * w_b / size²`` of the
canvas, pasted at a random position.

So that low-level statistics alone do not give ``r`` away (the random-weights baseline exists
to expose exactly that, METHOD.md §8), the object's per-channel mean and standard deviation
are matched to its background crop (Reinhard-style, in RGB), then object and background are
jittered independently (brightness, contrast, per-channel gain) and blurred independently by
a random amount. Cues that remain and grow with ``r``: the pasted box's outline (softened by a
feathered alpha edge) and the resampling of the object crop (small objects are shrunk more;
the independent random blur decorrelates sharpness from ``r`` only in part).

Images are generated lazily and deterministically from ``(seed, class, index)``, so any
subset or shard is the same in any order and in any process.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from rcvlab.data.base import ImageSet
from rcvlab.errors import DataError, UnknownNameError, did_you_mean

RECIPE_VERSION = "scaleset-1"


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

BACKGROUNDS: dict[str, Callable[[], np.ndarray]] = {
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "astronaut": _skimage("astronaut"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
}


@functools.cache
def _photo(kind: str, name: str) -> np.ndarray:
    if kind == "object":
        c = SCALESET_CLASSES[name]
        x0, y0, x1, y1 = c.box
        img = c.load()[y0:y1, x0:x1]
    else:
        img = BACKGROUNDS[name]()
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.setflags(write=False)
    return img


def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent brightness, contrast and per-channel gain (float image in 0..255)."""
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.6, 1.4) + mean * rng.uniform(0.6, 1.4)
    return img * rng.uniform(0.85, 1.15, size=3).astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.05:
        return img
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)


def _feather(h: int, w: int, width: float) -> np.ndarray:
    """Alpha mask: 1 inside, a linear ramp of ``width`` px towards the box's border."""
    dy = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)
    dx = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)
    d = np.minimum(dy[:, None], dx[None, :])
    return np.clip(d / max(width, 1e-6), 0.0, 1.0)


def render(
    cls: str, box_size: tuple[int, int], rng: np.random.Generator, size: int
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One image of ``cls`` with the object resized to ``box_size = (w, h)`` pixels.

    Returns the ``size x size x 3`` uint8 image and the pasted box ``(x0, y0, x1, y1)``.
    """
    obj = _photo("object", cls)
    bg_name = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    bg_photo = _photo("background", bg_name)
    H, W = bg_photo.shape[:2]
    side = int(rng.uniform(0.35, 1.0) * min(H, W))
    y0, x0 = rng.integers(0, H - side + 1), rng.integers(0, W - side + 1)
    bg = Image.fromarray(bg_photo[y0 : y0 + side, x0 : x0 + side])
    bg = np.asarray(bg.resize((size, size), Image.BICUBIC, reducing_gap=3.0), dtype=np.float32)
    if rng.random() < 0.5:
        bg = bg[:, ::-1]

    w, h = box_size
    o = Image.fromarray(obj).resize((w, h), Image.LANCZOS, reducing_gap=3.0)
    o = np.asarray(o, dtype=np.float32)
    if rng.random() < 0.5:
        o = o[:, ::-1]
    # match the object's colour statistics to the background's, then jitter each on its own
    o_mean, o_std = o.mean((0, 1)), o.std((0, 1))
    bg_mean, bg_std = bg.mean((0, 1)), bg.std((0, 1))
    o = (o - o_mean) * (bg_std / (o_std + 1e-3)) + bg_mean
    o = _blur(_jitter(o, rng), rng.uniform(0.0, 1.2))
    bg = _blur(_jitter(bg, rng), rng.uniform(0.0, 1.2))

    py, px = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    alpha = _feather(h, w, rng.uniform(1.0, 3.0)).astype(np.float32)[..., None]
    out = bg.copy()
    out[py : py + h, px : px + w] = alpha * o + (1 - alpha) * out[py : py + h, px : px + w]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), (px, py, px + w, py + h)


class ScaleSet(ImageSet):
    """The embedded scale set (see the module docstring); build it with :func:`scaleset`."""

    def __init__(
        self,
        classes: Sequence[str],
        n_per_class: int,
        seed: int,
        size: int,
        r_range: tuple[float, float],
        memo: int = 2000,
    ) -> None:
        # Rendered images are kept (up to ``memo``, ~150 kB each at 224 px) because a profile
        # reads every image twice: for the network and for its random-weights twin.
        self._memo: dict[int, np.ndarray] = {}
        self._memo_limit = memo
        self.class_names = list(classes)
        self.n_per_class, self.seed, self.size = n_per_class, seed, size
        self.r_range = (float(r_range[0]), float(r_range[1]))
        self.labels: list[tuple[int, ...]] = []
        boxes, ratios, cls_of, ids = [], [], [], []
        for ci, name in enumerate(self.class_names):
            obj = _photo("object", name)
            aspect = obj.shape[1] / obj.shape[0]
            hi = min(self.r_range[1], aspect, 1 / aspect)  # the box must fit the canvas
            # stratified-uniform ratios: every stretch of the range equally covered
            u = (np.arange(n_per_class) + self._rng(ci, -1).random(n_per_class)) / n_per_class
            r_target = self.r_range[0] + u * (hi - self.r_range[0])
            self._rng(ci, -2).shuffle(r_target)
            for i in range(n_per_class):
                w, h = self._box_size(r_target[i], aspect)
                boxes.append((w, h))
                ratios.append(w * h / size**2)
                cls_of.append(name)
                ids.append(f"scaleset/{name}/{i:05d}")
                self.labels.append(SCALESET_CLASSES[name].imagenet)
        self._sizes = boxes
        r = np.asarray(ratios)
        super().__init__(
            ids,
            {"scale_ratio": r, "scale_ratio_sqrt": np.sqrt(r)},
            classes=cls_of,
            source="scaleset:" + ",".join(self.class_names),
        )

    def _box_size(self, r: float, aspect: float) -> tuple[int, int]:
        area = r * self.size * self.size
        w = int(np.clip(round(math.sqrt(area * aspect)), 2, self.size))
        h = int(np.clip(round(area / w), 2, self.size))
        return w, h

    def _rng(self, ci: int, i: int) -> np.random.Generator:
        cidx = list(SCALESET_CLASSES).index(self.class_names[ci])
        return np.random.default_rng([self.seed, cidx, i + 2])

    def _load(self, i: int) -> Image.Image:
        img = self._memo.get(i)
        if img is None:
            ci, j = divmod(i, self.n_per_class)
            img = render(self.class_names[ci], self._sizes[i], self._rng(ci, j), self.size)[0]
            if len(self._memo) < self._memo_limit:
                self._memo[i] = img
        return Image.fromarray(img, "RGB")

    def box(self, i: int) -> tuple[int, int, int, int]:
        """The pasted box ``(x0, y0, x1, y1)`` of image ``i`` (renders the image)."""
        ci, j = divmod(i, self.n_per_class)
        w, h = self._sizes[i]
        return render(self.class_names[ci], (w, h), self._rng(ci, j), self.size)[1]

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
    size : int
        Side of the square canvas in pixels.
    r_range : (float, float)
        Range of the scale ratio; the upper end is capped per class so that the box fits.

    Returns
    -------
    ScaleSet
        Measures ``scale_ratio`` and ``scale_ratio_sqrt``; classes are the object names;
        ``labels[i]`` the acceptable ImageNet class indices of image ``i``.
    """
    names = list(SCALESET_CLASSES) if classes is None else [str(c) for c in classes]
    for c in names:
        if c not in SCALESET_CLASSES:
            raise UnknownNameError(
                f"Unknown scaleset class '{c}'.{did_you_mean(c, SCALESET_CLASSES)} "
                f"Available: {', '.join(SCALESET_CLASSES)}."
            )
    if len(set(names)) != len(names):
        raise DataError(f"Duplicate scaleset classes in {names}.")
    if n_per_class < 10:
        raise DataError(f"n_per_class must be at least 10 (got {n_per_class}).")
    if size < 16:
        raise DataError(f"size must be at least 16 px (got {size}).")
    lo, hi = r_range
    if not 0 < lo < hi <= 1:
        raise DataError(f"r_range must satisfy 0 < low < high <= 1 (got {r_range}).")
    return ScaleSet(names, n_per_class, seed, size, (lo, hi))
