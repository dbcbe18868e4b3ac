"""One registry of named concept measures, each computed from an image and/or a nuclei mask.

Measures are registered once, where they are defined, with :func:`register` (one function)
or :func:`register_family` (several measures read from one dict-valued computation, such as
the six GLCM properties). :func:`compute_measures` computes a family once per image even
when several of its members are asked for.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean

Needs = Literal["image", "mask", "image+mask"]
NEEDS: tuple[str, ...] = get_args(Needs)

F = TypeVar("F", bound=Callable[..., float])


@dataclass(frozen=True)
class MeasureSpec:
    """A named concept measure.

    Attributes
    ----------
    name : str
        The registry name (``"nuclei_area"``, ``"glcm_contrast_nuclei"``, ...).
    function : callable
        Computes the measure of one item and returns a float: ``function(image)`` when
        ``needs == "image"``, ``function(mask)`` for ``"mask"``, ``function(image, mask)``
        for ``"image+mask"``.
    needs : {"image", "mask", "image+mask"}
        The inputs the measure is computed from.
    description : str
        One line for listings and reports.
    family : callable or None
        A function with the same inputs that returns a dict of several measures, of which
        this one is ``family(...)[key]``; lets :func:`compute_measures` share the work.
    key : str or None
        This measure's key in ``family``'s dict.
    """

    name: str
    function: Callable[..., float]
    needs: Needs
    description: str
    family: Callable[..., Mapping[str, float]] | None = None
    key: str | None = None

    @property
    def needs_image(self) -> bool:
        """Whether the measure reads the image."""
        return "image" in self.needs

    @property
    def needs_mask(self) -> bool:
        """Whether the measure reads the nuclei mask."""
        return "mask" in self.needs

    def __call__(self, *args: Any) -> float:
        return float(self.function(*args))


#: Every registered measure by name, in registration order.
MEASURES: dict[str, MeasureSpec] = {}


def _add(spec: MeasureSpec) -> None:
    if spec.needs not in NEEDS:
        raise ValueError(f"measure '{spec.name}': needs must be one of {NEEDS}, not {spec.needs!r}")
    if spec.name in MEASURES:
        raise ValueError(f"measure '{spec.name}' is registered twice")
    MEASURES[spec.name] = spec


def register(
    name: str,
    *,
    needs: Needs,
    description: str,
    family: Callable[..., Mapping[str, float]] | None = None,
    key: str | None = None,
) -> Callable[[F], F]:
    """Decorator that registers a function as the measure ``name`` and returns it unchanged.

    Parameters
    ----------
    name : str
        The measure's unique name.
    needs : {"image", "mask", "image+mask"}
        The inputs of the function, in that order.
    description : str
        One line describing the measure.
    family, key : optional
        See :class:`MeasureSpec`: the function is ``family(...)[key]``.

    Returns
    -------
    callable
        The decorator.

    Raises
    ------
    ValueError
        If ``name`` is already registered or ``needs`` is invalid.
    """

    def decorate(function: F) -> F:
        _add(MeasureSpec(name, function, needs, description, family, key))
        return function

    return decorate


def register_family(
    family: Callable[..., Mapping[str, float]],
    *,
    needs: Needs,
    members: Mapping[str, tuple[str, str]],
) -> None:
    """Register several measures that are entries of one dict-valued function.

    Parameters
    ----------
    family : callable
        Takes the inputs named by ``needs`` and returns a dict of floats.
    needs : {"image", "mask", "image+mask"}
    members : mapping of str to (str, str)
        Measure name -> (key in ``family``'s dict, description).
    """
    for name, (key, description) in members.items():
        _add(MeasureSpec(name, _member(family, key), needs, description, family, key))


def _member(family: Callable[..., Mapping[str, float]], key: str) -> Callable[..., float]:
    def measure(*inputs: Any) -> float:
        return float(family(*inputs)[key])

    measure.__name__ = f"{getattr(family, '__name__', 'family')}[{key!r}]"
    return measure


def get_measure(name: str) -> MeasureSpec:
    """Return the registered measure ``name``.

    Raises
    ------
    UnknownNameError
        If there is no such measure; the message suggests the closest name and lists all.
    """
    try:
        return MEASURES[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown measure '{name}'.{did_you_mean(name, MEASURES)} "
            f"Known measures: {', '.join(MEASURES)}."
        ) from None


def _inputs(spec: MeasureSpec, image: Any, mask: Any) -> tuple[Any, ...]:
    if spec.needs_mask and mask is None:
        raise DataError(f"measure '{spec.name}' needs a nuclei mask; the data source has none")
    if spec.needs_image and image is None:
        raise DataError(f"measure '{spec.name}' needs an image; none was given")
    if spec.needs == "image":
        return (image,)
    if spec.needs == "mask":
        return (mask,)
    return (image, mask)


def compute_measure(name: str, image: Any = None, mask: Any = None) -> float:
    """Compute the measure ``name`` of one image / mask.

    Parameters
    ----------
    name : str
        A registered measure (see :data:`MEASURES`).
    image : ndarray or PIL image, optional
        ``(H, W, 3)`` RGB or ``(H, W)`` grey; uint8, or float in [0, 1].
    mask : ndarray or PIL image, optional
        ``(H, W)`` nuclei segmentation mask (boolean, grey or float; nuclei bright).

    Returns
    -------
    float
        The measure; NaN where it is undefined (e.g. a mean over no nuclei).

    Raises
    ------
    UnknownNameError
        For an unknown name.
    DataError
        If an input the measure needs is missing, or unusable.
    """
    spec = get_measure(name)
    return spec(*_inputs(spec, image, mask))


class MeasureTable(dict[str, np.ndarray]):
    """The values of several measures over a sequence of items: name -> float64 array.

    A value is NaN either because the measure is undefined for that item (no nuclei) or
    because computing it failed; the failures are listed in :attr:`failures`.

    Attributes
    ----------
    failures : dict of str to list of (int, str)
        Per measure, the item index and error message of every failure.
    """

    def __init__(
        self, values: Mapping[str, np.ndarray], failures: Mapping[str, list[tuple[int, str]]]
    ) -> None:
        super().__init__(values)
        self.failures: dict[str, list[tuple[int, str]]] = {k: list(v) for k, v in failures.items()}

    @property
    def n_failed(self) -> dict[str, int]:
        """Number of items whose computation failed, per measure."""
        return {k: len(v) for k, v in self.failures.items()}

    @property
    def n_nan(self) -> dict[str, int]:
        """Number of NaN values (failed or undefined), per measure."""
        return {k: int(np.isnan(v).sum()) for k, v in self.items()}


_END = object()
_ALONE = object()


def _pairs(images: Any, masks: Any) -> Iterator[tuple[Any, Any]]:
    """Yield (image or loader, mask) pairs; images and masks must be equally many."""
    if images is not None and masks is not None:
        if hasattr(images, "__len__") and hasattr(masks, "__len__"):
            if len(images) != len(masks):
                raise DataError(f"{len(images)} images but {len(masks)} masks; they must pair up")
    if images is not None and hasattr(images, "load") and hasattr(images, "__len__"):
        # an ImageSet: load lazily so that an unreadable image costs one item, not the call
        images = [_Loader(images, i) for i in range(len(images))]
    if images is None:
        yield from ((None, m) for m in masks)
        return
    if masks is None:
        yield from ((im, None) for im in images)
        return
    it_m = iter(masks)
    k = 0
    for im in images:
        m = next(it_m, _END)
        if m is _END:
            raise DataError(f"more images than masks ({k} masks); they must pair up")
        yield im, m
        k += 1
    if next(it_m, _END) is not _END:
        raise DataError(f"more masks than images ({k} images); they must pair up")


@dataclass(frozen=True)
class _Loader:
    images: Any
    index: int

    def __call__(self) -> np.ndarray:
        return np.asarray(self.images.load(self.index))


def compute_measures(
    names: str | Sequence[str],
    images: Iterable[Any] | None,
    masks: Iterable[Any] | None = None,
) -> MeasureTable:
    """Compute several measures over a sequence of images (and their nuclei masks).

    Measures of one family (the GLCM properties, the nuclei morphology) are computed once
    per item. A failure on one item (an unusable image or mask) gives NaN for that item
    and is recorded in the result's ``failures``; it does not stop the others.

    Parameters
    ----------
    names : str or sequence of str
        Registered measure names.
    images : iterable of ndarray or PIL image, an ImageSet, or None
        One image per item; ``None`` only when no measure needs an image. An
        :class:`~rcvlab.data.base.ImageSet` is loaded image by image.
    masks : iterable of ndarray, optional
        One nuclei mask per item, paired with ``images`` (same length).

    Returns
    -------
    MeasureTable
        name -> float64 array with one value per item, plus ``failures``.

    Raises
    ------
    UnknownNameError
        For an unknown name (before anything is computed).
    DataError
        If a measure needs masks (or images) and none are given, or if ``images`` and
        ``masks`` differ in length.
    """
    names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    specs = [get_measure(n) for n in names]
    for spec in specs:
        if spec.needs_mask and masks is None:
            raise DataError(f"measure '{spec.name}' needs a nuclei mask; the data source has none")
        if spec.needs_image and images is None:
            raise DataError(f"measure '{spec.name}' needs images; none were given")
    if images is None and masks is None:
        raise DataError("compute_measures needs images or masks")

    uses_images = any(s.needs_image for s in specs)
    # a family is worth computing whole only when two or more of its members are asked for
    slots = Counter((s.family, s.needs) for s in specs if s.family is not None)
    unshared = {slot: _ALONE for slot, n in slots.items() if n < 2}
    values: dict[str, list[float]] = {s.name: [] for s in specs}
    failures: dict[str, list[tuple[int, str]]] = {s.name: [] for s in specs}
    for i, (image, mask) in enumerate(_pairs(images, masks)):
        if isinstance(image, _Loader) and not uses_images:
            image = None
        elif isinstance(image, _Loader):
            try:
                image = image()
            except RcvlabError as e:
                for s in specs:
                    values[s.name].append(math.nan)
                    failures[s.name].append((i, str(e)))
                continue
        shared: dict[tuple[Any, str], Any] = {}
        shared.update(unshared)
        for s in specs:
            try:
                values[s.name].append(_compute_one(s, image, mask, shared))
            except (RcvlabError, ValueError) as e:
                values[s.name].append(math.nan)
                failures[s.name].append((i, str(e)))
    return MeasureTable(
        {k: np.asarray(v, dtype=np.float64) for k, v in values.items()},
        {k: v for k, v in failures.items() if v},
    )


def _compute_one(
    spec: MeasureSpec,
    image: Any,
    mask: Any,
    shared: dict[tuple[Any, str], Any],
) -> float:
    inputs = _inputs(spec, image, mask)
    if spec.family is None or spec.key is None:
        return spec(*inputs)
    slot = (spec.family, spec.needs)
    if shared.get(slot) is _ALONE:
        return spec(*inputs)
    if slot not in shared:
        try:
            shared[slot] = spec.family(*inputs)
        except (RcvlabError, ValueError) as e:
            shared[slot] = e
    result = shared[slot]
    if isinstance(result, Exception):
        raise result
    return float(result[spec.key])


__all__ = [
    "MEASURES",
    "NEEDS",
    "MeasureSpec",
    "MeasureTable",
    "Needs",
    "compute_measure",
    "compute_measures",
    "get_measure",
    "register",
    "register_family",
]
