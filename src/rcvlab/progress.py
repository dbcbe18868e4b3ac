"""Progress reporting shared by the long-running steps (extraction, sweeps, gradients)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext


def progress_bar(
    progress: bool | Callable[[int, int], None], total: int, label: str
) -> AbstractContextManager[Callable[[int], None]]:
    """A context giving ``tick(k)`` (k more items done).

    ``progress`` is True (a rich progress bar labelled ``label``), False (nothing) or a
    callback ``progress(done, total)`` called after each tick.
    """
    if callable(progress):
        state = {"done": 0}

        def tick(k: int) -> None:
            state["done"] += k
            progress(state["done"], total)

        return nullcontext(tick)
    if not progress:
        return nullcontext(lambda k: None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    class _Bar:
        def __enter__(self):
            self.p = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self.p.__enter__()
            self.t = self.p.add_task(label, total=total)
            return lambda k: self.p.advance(self.t, k)

        def __exit__(self, *exc):
            return self.p.__exit__(*exc)

    return _Bar()


__all__ = ["progress_bar"]
