"""A directory's files as an uncompressed tar stream made while it is read (nothing is written to disk).

Model weights do not compress, so a plain tar costs nothing over the files themselves; its length is known
before the first byte is sent (headers are fixed-size), so the upload carries a Content-Length and the
server can refuse an oversized model before receiving it.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

_BLOCK = 512
_CHUNK = 1 << 20


class TarStream(io.RawIOBase):
    """Read-only file object yielding ``tar`` of ``files`` (names within ``directory``) under ``prefix/``."""

    def __init__(self, directory: Path, files: Sequence[str], prefix: str) -> None:
        self._entries: list[tuple[Path, bytes, int]] = []
        for name in files:
            path = directory / name
            size = path.stat().st_size
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.mode, info.mtime = size, 0o644, int(path.stat().st_mtime)
            self._entries.append((path, info.tobuf(tarfile.PAX_FORMAT), size))
        self.length = sum(len(h) + size + _padding(size) for _, h, size in self._entries) + 2 * _BLOCK
        self._restart()

    def _restart(self) -> None:
        self._chunks = self._generate()
        self._buffer = b""
        self._position = 0

    def _generate(self) -> Iterator[bytes]:
        for path, header, size in self._entries:
            yield header
            left = size
            with path.open("rb") as handle:
                while left > 0:
                    chunk = handle.read(min(_CHUNK, left))
                    if not chunk:
                        raise OSError(
                            f"{path} changed while it was being uploaded (shorter than {size} bytes)"
                        )
                    left -= len(chunk)
                    yield chunk
            yield bytes(_padding(size))
        yield bytes(2 * _BLOCK)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.length - self._position if size is None or size < 0 else size
        while len(self._buffer) < wanted:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:wanted], self._buffer[wanted:]
        self._position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # HTTP clients ask for the length (end, then back to the start) and rewind before sending.
        if whence == os.SEEK_END and offset == 0:
            self._chunks, self._buffer, self._position = iter(()), b"", self.length
        elif whence == os.SEEK_SET and offset == 0:
            self._restart()
        elif not (whence == os.SEEK_SET and offset == self._position):
            raise io.UnsupportedOperation("a tar stream can only be rewound to its start")
        return self._position


def _padding(size: int) -> int:
    return (_BLOCK - size % _BLOCK) % _BLOCK
