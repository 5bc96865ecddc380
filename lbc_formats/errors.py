"""The one error type of the format checks: a file the server will not read, with a message naming why."""

from __future__ import annotations


class FormatError(ValueError):
    """A file (or a directory of files) that fails a format check; the message names the file and problem."""
