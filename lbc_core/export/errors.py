"""Errors raised while writing or reading exported models."""

from __future__ import annotations


class ExportError(ValueError):
    """An export that would be wrong (weights not N:M, a model not finalized) or a file that cannot be read."""


class MissingExportFileError(ExportError, FileNotFoundError):
    """An exported file that does not exist; also a FileNotFoundError so either kind of handler catches it."""
