"""The one contract every analysis result follows.

Every result of :mod:`rcvlab.analyses` is a frozen dataclass that subclasses :class:`Result`
and so has

* ``kind`` — a class-level tag (``"profile"``, ``"transfer"``, ...) written into its JSON;
* ``meta`` — a dict with the provenance: the command, rcvlab's and its libraries' versions,
  the seed and the data's fingerprint (:func:`provenance` builds it);
* ``to_frame()`` — a tidy :class:`pandas.DataFrame` whose columns are listed in the class's
  ``frame_columns`` (documented in its docstring);
* ``to_json(path=None) -> str`` — strict JSON (NaN and ±infinity as ``null``, read back
  as NaN), written atomically when ``path`` is given;
* ``from_json(path_or_text)`` — the inverse: ``Cls.from_json(r.to_json())`` and
  ``Cls.from_json(path)`` rebuild an equal result.

Subclasses implement ``to_dict()`` / ``from_dict()`` and ``to_frame()``; the JSON layer,
the ``kind`` check and the errors live here. :func:`load_result` reads any result file.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from rcvlab.errors import DataError

R = TypeVar("R", bound="Result")

RESULT_KINDS: dict[str, type[Result]] = {}
"""Every registered result class by its ``kind`` tag."""


def jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats (-> None) to strict JSON types."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def nan_if_none(x: Any) -> float:
    """``float(x)``, with ``None`` (JSON's stand-in for NaN) read back as NaN."""
    return math.nan if x is None else float(x)


def dump_json(d: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> str:
    """Strict JSON text of ``d`` (NaN / inf as null), written atomically to ``path`` if given."""
    text = json.dumps(jsonable(d), indent=2, allow_nan=False)
    if path is not None:
        from rcvlab.runio import write_text

        write_text(path, text + "\n")
    return text


def read_json(path_or_text: str | os.PathLike[str], what: str = "result") -> dict[str, Any]:
    """Parse JSON from a file path or from the text itself; one-line :class:`DataError` else."""
    s = os.fspath(path_or_text)
    try:
        if s.lstrip().startswith("{"):
            d = json.loads(s)
        else:
            with open(s, encoding="utf-8") as f:
                d = json.load(f)
    except OSError as e:
        raise DataError(f"Cannot read {what} {s}: {e.strerror or e}.") from e
    except ValueError as e:
        raise DataError(f"{s} is not a {what} JSON written by rcvlab: {e}.") from e
    if not isinstance(d, dict):
        raise DataError(f"{s} is not a {what} JSON written by rcvlab (not an object).")
    return d


def provenance(
    *,
    command: str = "",
    seed: int | None = None,
    data: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``meta`` dict of a result: command, versions, seed, data fingerprint.

    Parameters
    ----------
    command : str
        The command line (or Python call) that produced the result.
    seed : int, optional
    data : ImageSet or str, optional
        The data set (its :meth:`~rcvlab.data.base.ImageSet.fingerprint` and source are
        recorded) or a fingerprint string.
    **extra
        Anything else worth keeping (device, timings, ...).
    """
    import scipy
    import sklearn
    import torch

    from rcvlab import __version__

    meta: dict[str, Any] = {
        "command": command,
        "rcvlab_version": __version__,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "torch": torch.__version__,
            "pandas": pd.__version__,
        },
        "seed": seed,
    }
    if data is not None:
        if isinstance(data, str):
            meta["data_fingerprint"] = data
        else:
            meta["data_fingerprint"] = data.fingerprint()
            meta["data_source"] = getattr(data, "source", "")
    meta.update(extra)
    return jsonable(meta)


class Result:
    """Base class of every analysis result (see the module docstring for the contract).

    Subclasses are ``@dataclass(frozen=True)`` with a ``meta: dict`` field, set the class
    attributes ``kind`` and ``frame_columns``, and implement :meth:`to_dict`,
    :meth:`from_dict` and :meth:`to_frame`.
    """

    kind: ClassVar[str] = ""
    frame_columns: ClassVar[tuple[str, ...]] = ()
    meta: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            RESULT_KINDS[cls.kind] = cls

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - abstract
        """One tidy table of the result; columns are :attr:`frame_columns`."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Everything needed to rebuild the result, JSON-ready."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:  # pragma: no cover - abstract
        """Rebuild from :meth:`to_dict`."""
        raise NotImplementedError

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Strict JSON (NaN as null) with the ``kind`` tag; written atomically to ``path``."""
        return dump_json({"kind": self.kind, **self.to_dict()}, path)

    @classmethod
    def from_json(cls: type[R], path_or_text: str | os.PathLike[str]) -> R:
        """Rebuild a result from :meth:`to_json`'s file (a path) or text."""
        d = read_json(path_or_text, cls.kind or "result")
        found = d.get("kind", cls.kind)
        if found != cls.kind:
            s = os.fspath(path_or_text)
            src = "the text" if s.lstrip().startswith("{") else s
            raise DataError(
                f"{src} holds a '{found}' result, not '{cls.kind}'; read it with "
                "rcvlab.load_result or the matching class."
            )
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{os.fspath(path_or_text)[:80]} is not a complete '{cls.kind}' result: "
                f"{type(e).__name__} {e}."
            ) from e


def load_result(path_or_text: str | os.PathLike[str]) -> Result:
    """Read any rcvlab result JSON; its ``kind`` tag picks the class."""
    # importing the modules registers every result class
    import rcvlab.analyses
    import rcvlab.pipelines  # noqa: F401

    d = read_json(path_or_text)
    kind = d.get("kind")
    if kind not in RESULT_KINDS:
        raise DataError(
            f"{os.fspath(path_or_text)[:80]}: unknown result kind {kind!r}; known: "
            f"{', '.join(sorted(RESULT_KINDS))}."
        )
    return RESULT_KINDS[kind].from_json(path_or_text)


__all__ = [
    "RESULT_KINDS",
    "Result",
    "dump_json",
    "jsonable",
    "load_result",
    "nan_if_none",
    "provenance",
    "read_json",
]
