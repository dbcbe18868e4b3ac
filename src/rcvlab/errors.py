"""rcvlab's own exceptions: the CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RcvlabError(Exception):
    """Base class for errors caused by user input (bad data, names, options)."""


class UnknownNameError(RcvlabError, KeyError):
    """A model, layer, measure or data source name that rcvlab does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(RcvlabError):
    """Unusable data: unreadable files, invalid annotations, constant or missing measures."""


class WeightsError(RcvlabError):
    """Model weights that cannot be found or do not fit the architecture."""


class OutputExistsError(RcvlabError):
    """An output folder that already exists (pass ``force=True`` / ``--force``)."""


class OutputError(RcvlabError, OSError):
    """A file or folder that cannot be written (read-only or full file system, no folder)."""

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
