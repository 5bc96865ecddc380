"""The object-store contract shared by the local-directory and S3 back ends, and key validation.

Keys are the only way a name reaches a store, and every key is checked here first, so no user input
can turn into a filesystem path or an S3 key outside the store's namespace.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jobs.errors import Unavailable

DEFAULT_CONTENT_TYPE = "application/octet-stream"
CHUNK_SIZE = 1024 * 1024
MAX_KEY_LENGTH = 500  # the storage_key columns are String(500)
MAX_SEGMENT_LENGTH = 200  # below NAME_MAX (255) with room for the local store's sidecar suffix

# A segment starts with a letter, digit, '_' or '-': that rules out '.', '..' and hidden names, which
# also keeps the local store's own '.staging' and '.meta' directories out of the key space.
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"
_KEY_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


class ObjectNotFound(KeyError):
    """No object under this key (a ``KeyError``, so ``except KeyError`` also catches it)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object at key {self.key!r}"


class StoreUnavailable(Unavailable):
    """The store cannot be reached or written (readiness probes report it as 503)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a put wrote: ``sha256`` is the hex digest of exactly the bytes that were stored."""

    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """``etag`` is unquoted and opaque (S3's ETag; the sha256 for the local store when known)."""

    size: int
    etag: str | None = None
    content_type: str | None = None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise ``ValueError``.

    A key is relative and '/'-separated; each segment uses only ``[A-Za-z0-9._-]`` and does not start
    with '.', so there is no '..', no '.', no hidden name, no empty segment, no leading or trailing
    '/', no backslash and nothing a shell or a filesystem would interpret.
    """
    if not isinstance(key, str):
        raise ValueError(f"object key must be a string, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"object key must have 1 to {MAX_KEY_LENGTH} characters")
    if _KEY_RE.fullmatch(key) is None:
        raise ValueError(
            f"invalid object key {key!r}: use '/'-separated segments of [A-Za-z0-9._-] that do not start with '.'"
        )
    if any(len(segment) > MAX_SEGMENT_LENGTH for segment in key.split("/")):
        raise ValueError(
            f"invalid object key {key!r}: a segment is longer than {MAX_SEGMENT_LENGTH} characters"
        )
    return key


def validate_prefix(prefix: str) -> str:
    """Normalise a folder-like prefix: ``""`` (everything) or a valid key with one trailing '/'.

    Prefixes name folders, not string prefixes: ``"jobs/a"`` and ``"jobs/a/"`` both mean the keys under
    ``jobs/a/``, never ``jobs/ab/...``. That keeps ``delete_prefix`` from reaching a sibling.
    """
    if prefix == "":
        return ""
    return validate_key(prefix.removesuffix("/")) + "/"


def check_range(start: int, end: int | None) -> None:
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"range end ({end}) must be >= start ({start})")


def sha256_file(path: str | Path, chunk_size: int = CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same filesystem) to write; on success it replaces
    ``path`` in one rename, on error it is removed and ``path`` is left as it was."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class HashingReader(io.RawIOBase):
    """A read-only, non-seekable view of a stream that hashes and counts what passes through.

    Being non-seekable forces readers (boto3's transfer manager included) to consume the stream once,
    in order, so the digest is of exactly the bytes that were sent.
    """

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(-1 if size is None else size)
        self._digest.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class ObjectStore(ABC):
    """Where checkpoints, artifacts and uploads live.

    Writes are atomic: a put either stores the whole object under its key or leaves the key as it was
    (absent or the previous object); a reader never sees a partial object. ``download_file`` is atomic
    for the destination path in the same way.
    """

    # -- writes -----------------------------------------------------------------------------------------
    @abstractmethod
    def put_fileobj(self, key: str, stream: BinaryIO, content_type: str | None = None) -> StoredObject:
        """Store everything ``stream`` yields until EOF, read once and in order.

        If reading the stream raises, the exception propagates and nothing is stored.
        """

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> StoredObject:
        validate_key(key)
        with open(path, "rb") as f:
            return self.put_fileobj(key, f, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        return self.put_fileobj(key, io.BytesIO(data), content_type)

    # -- reads ------------------------------------------------------------------------------------------
    @abstractmethod
    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Stream bytes ``start`` to ``end`` *inclusive* (HTTP ``Range: bytes=start-end``) in chunks.

        ``end=None`` reads to the end; an ``end`` past the object is clamped to its last byte and a
        ``start`` at or past the end yields nothing, so callers check ``stat().size`` to answer 416.
        The object is opened when this is called (``ObjectNotFound`` is raised here, not on the first
        ``next``) and the stream keeps reading that version even if the key is overwritten meanwhile.
        Exhaust or ``close()`` the iterator to release the file or connection.
        """

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.open_range(key))

    @abstractmethod
    def stat(self, key: str) -> ObjectStat:
        """Size, etag and content type; raises ``ObjectNotFound``."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under the folder ``prefix`` (see ``validate_prefix``), sorted."""

    @abstractmethod
    def download_file(self, key: str, path: str | Path) -> None:
        """Write the object to ``path`` atomically (a temporary file beside it, then a rename).

        Creates the parent directories; raises ``ObjectNotFound`` and leaves ``path`` untouched when
        the key is missing.
        """

    # -- deletes ----------------------------------------------------------------------------------------
    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; deleting a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under the folder ``prefix``; returns how many were removed.

        An empty prefix is refused (``ValueError``): wiping the whole store is never what a caller means.
        """

    # -- health -----------------------------------------------------------------------------------------
    @abstractmethod
    def check(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can be reached (and, for local, written)."""
