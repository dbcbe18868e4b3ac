"""Writing a run's folder: refusing to overwrite, atomic files, skip lists."""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from rcvlab.errors import OutputExistsError


def prepare_out(out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Create the run folder; an existing non-empty one needs ``force`` (files are replaced)."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(
            f"Output path {p} exists and is not a folder; choose another --out."
        )
    if p.exists() and any(p.iterdir()) and not force:
        raise OutputExistsError(
            f"Output folder {p} already exists; pass --force to overwrite its files, or choose "
            "another --out."
        )
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_figure(path: str | os.PathLike[str], fig, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}{path.suffix}")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)


def write_skipped(path: str | os.PathLike[str], skipped: Sequence[tuple[str, str]]) -> None:
    """``skipped.csv`` with columns path, reason (header only when nothing was skipped)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    w.writerows(skipped)
    write_text(path, buf.getvalue())


__all__ = ["prepare_out", "write_figure", "write_skipped", "write_text"]
