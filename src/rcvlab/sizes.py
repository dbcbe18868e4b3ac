"""Square input sizes from the command line: ``75:500:25``, ``150:500``, ``224,299``.

Used by the resizing sweep (``rcvlab resize-sweep --sizes``) and the noise-input experiment
(``rcvlab noise-size --sizes``); their defaults are
:data:`rcvlab.analyses.resize.DEFAULT_SIZES` and :data:`rcvlab.analyses.noise.DEFAULT_SIZES`.
"""

from __future__ import annotations

from collections.abc import Iterable

from rcvlab.errors import RcvlabError

#: Step of a ``START:STOP`` range that gives none.
DEFAULT_STEP = 25

#: Largest square size the sweep and the noise experiment accept (the paper goes to 500 px):
#: every image is run through the whole network at that size.
MAX_SIZE = 4096

_FORMS = "START:STOP:STEP (e.g. 75:500:25), START:STOP (step 25) or a list such as 224,299"


def _int(text: str, spec: str, what: str) -> int:
    t = text.strip()
    try:
        v = int(t)
    except ValueError:
        raise RcvlabError(
            f"Size spec {spec!r}: {what} {t!r} is not a whole number of pixels; write {_FORMS}."
        ) from None
    return v


def _item(item: str, spec: str) -> list[int]:
    parts = item.split(":")
    if len(parts) == 1:
        return [_int(parts[0], spec, "size")]
    if len(parts) > 3:
        raise RcvlabError(f"Size spec {spec!r}: {item!r} has too many ':'; write {_FORMS}.")
    start = _int(parts[0], spec, "start")
    stop = _int(parts[1], spec, "stop")
    step = _int(parts[2], spec, "step") if len(parts) == 3 else DEFAULT_STEP
    if step <= 0:
        raise RcvlabError(f"Size spec {spec!r}: the step must be positive (got {step}).")
    if start > stop:
        raise RcvlabError(
            f"Size spec {spec!r}: start {start} is larger than stop {stop}; write START:STOP "
            "with START <= STOP."
        )
    return list(range(start, stop + 1, step))


def parse_sizes(spec: str | int | Iterable[int]) -> list[int]:
    """Parse a size spec into sorted, distinct square input sizes in pixels.

    Parameters
    ----------
    spec : str, int or iterable of int
        ``"START:STOP:STEP"`` — every size from START by STEP up to STOP **inclusive** (when
        STOP lies on the grid: ``"75:510:25"`` ends at 500); ``"START:STOP"`` — the same with
        STEP = :data:`DEFAULT_STEP` (25); ``"224,299"`` — a list; items may be mixed
        (``"75:150:25,224,299"``). An int or an iterable of ints is taken as given.

    Returns
    -------
    list of int
        Ascending, without duplicates (``"75:100:25,100"`` gives ``[75, 100]``).

    Raises
    ------
    RcvlabError
        One line, for an empty spec, a value that is not a whole number, a size below 1 px,
        ``START > STOP`` or ``STEP <= 0``.

    Examples
    --------
    >>> parse_sizes("75:150:25")
    [75, 100, 125, 150]
    >>> parse_sizes("299,224")
    [224, 299]
    """
    if isinstance(spec, bool):
        raise RcvlabError(f"Size spec {spec!r} is not a size; write {_FORMS}.")
    if isinstance(spec, int):
        sizes = [spec]
        text = str(spec)
    elif isinstance(spec, str):
        text = spec.strip()
        items = [t for t in (s.strip() for s in text.split(",")) if t]
        if not items:
            raise RcvlabError(f"Size spec {spec!r} is empty; write {_FORMS}.")
        sizes = [v for it in items for v in _item(it, text)]
    else:
        text = repr(spec)
        sizes = []
        for v in spec:
            try:
                whole = not isinstance(v, bool | str) and float(v).is_integer()
            except (TypeError, ValueError):
                whole = False
            if not whole:
                raise RcvlabError(f"Size {v!r} in {text} is not a whole number of pixels.")
            sizes.append(int(v))
        if not sizes:
            raise RcvlabError("No size given; write " + _FORMS + ".")
    bad = [s for s in sizes if s < 1]
    if bad:
        raise RcvlabError(f"Size spec {text!r}: size {bad[0]} px is not positive.")
    return sorted(set(sizes))


def check_max_size(sizes: Iterable[int]) -> None:
    """One-line :class:`RcvlabError` when a size is above :data:`MAX_SIZE`."""
    top = max(sizes)
    if top > MAX_SIZE:
        raise RcvlabError(
            f"Size {top} px is above {MAX_SIZE} px (every image runs through the whole network "
            "at each size); lower --sizes."
        )


__all__ = ["DEFAULT_STEP", "MAX_SIZE", "check_max_size", "parse_sizes"]
