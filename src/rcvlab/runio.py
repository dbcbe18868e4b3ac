"""Writing a run's folder: refusing to overwrite, resuming, atomic files, a completion marker.

A run folder holds ``run.json``: ``{"status": "running" | "complete", "command": ...}``.
:func:`prepare_out` writes it with status ``running`` before any work (so an unwritable
folder is found at once, not at the last write) and :func:`finish_run` marks it
``complete`` after the last file. A folder whose run was interrupted (status ``running``)
can be rerun with the same command without ``--force``: features come from the cache and
every file is replaced. Readers of a run's files (``--from-profile``) call
:func:`check_complete` so that a half-written run is not mistaken for a finished one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rcvlab.errors import DataError, OutputError, OutputExistsError

RUN_FILE = "run.json"
"""The marker file of a run folder."""


def _why(e: OSError) -> str:
    return e.strerror or str(e)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it over ``path`` on success.

    Any OSError (read-only or full file system, missing folder) becomes one
    :class:`~rcvlab.errors.OutputError` line, and the temporary file is removed.
    """
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}{path.suffix}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"Cannot write {path}: {_why(e)}.") from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically (temporary name, then rename)."""
    path = Path(path)
    with _writing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a binary file atomically (temporary name, then rename)."""
    path = Path(path)
    with _writing(path) as tmp:
        tmp.write_bytes(data)


def write_figure(path: str | os.PathLike[str], fig: Any, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically (temporary name, then rename)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with _writing(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt)


def write_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` atomically (temporary name, then rename)."""
    import torch

    path = Path(path)
    try:
        with _writing(path) as tmp:
            torch.save(obj, tmp)
    except RuntimeError as e:  # torch reports a failed write as RuntimeError
        raise OutputError(f"Cannot write {path}: {str(e).splitlines()[0]}.") from e


def write_skipped(path: str | os.PathLike[str], skipped: Sequence[tuple[str, str]]) -> None:
    """``skipped.csv`` with columns path, reason (header only when nothing was skipped)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    w.writerows(skipped)
    write_text(path, buf.getvalue())


def read_run(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``run.json`` of a run folder, or None when there is none (or it is unreadable)."""
    try:
        with open(Path(out) / RUN_FILE, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def prepare_out(out: str | os.PathLike[str], *, force: bool = False, command: str = "") -> Path:
    """Create (or reopen) a run folder and mark it ``running``, before any work.

    Parameters
    ----------
    out : path
        The folder.
    force : bool
        Reuse a folder that holds a finished run or other files (files are replaced).
    command : str
        The command of this run. An interrupted run (``run.json`` status ``running``) of
        the same command is resumed without ``force``.

    Raises
    ------
    OutputExistsError
        The folder holds files and neither ``force`` nor a resumable run allows reuse.
    OutputError
        The folder cannot be created or written (checked here by writing ``run.json``).
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(
            f"Output path {p} exists and is not a folder; choose another --out."
        )
    if p.is_dir() and any(p.iterdir()) and not force:
        prev = read_run(p)
        resumable = prev is not None and prev.get("status") == "running"
        if not (resumable and prev.get("command", "") == command):
            what = (
                "holds a finished run"
                if prev is not None and prev.get("status") == "complete"
                else "holds an interrupted run of another command"
                if resumable
                else "already exists"
            )
            raise OutputExistsError(
                f"Output folder {p} {what}; pass --force to overwrite its files, or choose "
                "another --out."
            )
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot create output folder {p}: {_why(e)}.") from e
    write_text(
        p / RUN_FILE,
        json.dumps({"status": "running", "command": command, "started": _now()}, indent=2) + "\n",
    )
    return p


def finish_run(out: str | os.PathLike[str], **info: Any) -> None:
    """Mark a run folder ``complete`` (the last write of a run); ``info`` is kept in run.json."""
    p = Path(out)
    prev = read_run(p) or {}
    files = sorted(f.name for f in p.iterdir() if f.name != RUN_FILE and not f.name.startswith("."))
    d = {**prev, **info, "status": "complete", "finished": _now(), "files": files}
    write_text(p / RUN_FILE, json.dumps(d, indent=2, default=str) + "\n")


def check_complete(path: str | os.PathLike[str]) -> None:
    """Refuse a file of a run folder whose run did not finish (``run.json`` says running).

    Files outside run folders (no ``run.json`` beside them) are accepted as they are.
    """
    p = Path(path)
    prev = read_run(p.parent)
    if prev is not None and prev.get("status") != "complete":
        raise DataError(
            f"{p} comes from a run that did not finish ({p.parent / RUN_FILE} says "
            f"{prev.get('status')!r}); rerun its command to complete it."
        )


def check_writable_file(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Check before the work that ``path`` can be written (its folder is created if missing)."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(
            f"{p} exists; pass --force to overwrite it, or choose another --out."
        )
    if p.is_dir():
        raise OutputExistsError(f"{p} is a folder; give a file name such as {p / 'pruned.pt'}.")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot create folder {p.parent}: {_why(e)}.") from e
    write_bytes(p.with_name(f".{p.name}.probe"), b"")
    os.unlink(p.with_name(f".{p.name}.probe"))
    return p


__all__ = [
    "RUN_FILE",
    "check_complete",
    "check_writable_file",
    "finish_run",
    "prepare_out",
    "read_run",
    "write_bytes",
    "write_figure",
    "write_skipped",
    "write_text",
    "write_torch",
]
