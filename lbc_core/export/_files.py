"""File plumbing shared by the exporters: atomic writes, hashing and checked safetensors I/O."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lbc_core.export.errors import ExportError, MissingExportFileError

_HASH_CHUNK = 1 << 20


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A reader (or a resumed job) then sees either the old file or the complete new one, never a
    half-written file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """The path, or a MissingExportFileError that says which artifact is missing."""
    file = Path(path)
    if not file.is_file():
        raise MissingExportFileError(f"{what} not found: {file}")
    return file


def write_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str]
) -> None:
    # safetensors wants contiguous CPU tensors that share no storage; callers make them so.
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata))


def read_safetensors(
    path: str | os.PathLike[str], what: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file; a damaged file is an ExportError."""
    file = require_file(path, what)
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own SafetensorError (not a public class) or OSError
        raise ExportError(f"{what} {file} is not a readable safetensors file: {exc}") from exc
    return tensors, metadata
