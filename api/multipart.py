"""Streaming ``multipart/form-data`` uploads straight to a temporary file.

The body is parsed as it arrives (never buffered whole, in memory or on disk, before the handler runs):
file bytes go to a temporary file in chunks with a running size check, so an oversized upload is cut
off with a 413 as soon as it passes the limit and its partial file is removed; the sha256 is computed
on the way. Small text fields (``format``, ``name``) are collected with their own caps; a NUL in a field,
a part name or the file name is a 422 (``jobs.text``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from jobs.errors import InvalidInput, PayloadTooLarge, ServiceError
from jobs.text import text_problem

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
# Content-Length may exceed the file by the multipart framing and the small fields.
FRAMING_ALLOWANCE = MAX_PARTS * (MAX_FIELD_BYTES + 1024)
_WRITE_CHUNK = 1 << 20


class UnsupportedMediaType(ServiceError):
    status_code, code = 415, "unsupported_media_type"


@dataclass
class ReceivedUpload:
    path: Path
    filename: str | None
    content_type: str | None
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


def _bad_form(message: str, field_name: str = "file") -> InvalidInput:
    return InvalidInput(message, details=[{"field": field_name, "message": message, "location": "body"}])


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"upload exceeds the limit of {limit} bytes", details={"max_upload_bytes": limit})


class _Parts:
    """Callbacks for python-multipart: tracks the current part and what it produced."""

    def __init__(self, file_field: str) -> None:
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.content_type: str | None = None
        self.file_seen = False
        self.file_data: list[bytes] = []
        self.parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._is_file = False
        self._value = bytearray()

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _bad_form(f"too many form parts (at most {MAX_PARTS})", "body")
        self._headers, self._value, self._is_file = {}, bytearray(), False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > MAX_FIELD_BYTES:
            raise _bad_form("a form part header is too long", "body")

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _bad_form("every form part needs a Content-Disposition name", "body")
        self._name = options[b"name"].decode("utf-8", errors="replace")
        problem = text_problem(self._name)
        if problem:
            raise _bad_form(f"a form part's name {problem}", "body")
        if b"filename" in options or self._name == self.file_field:
            if self._name != self.file_field:
                raise _bad_form(
                    f"unexpected file field {self._name!r}; send the file as {self.file_field!r}", "body"
                )
            if self.file_seen:
                raise _bad_form(f"only one {self.file_field!r} part is accepted")
            self.file_seen = True
            self._is_file = True
            raw_name = options.get(b"filename")
            self.filename = raw_name.decode("utf-8", errors="replace") if raw_name else None
            problem = text_problem(self.filename or "")
            if problem:
                raise _bad_form(f"the file name {problem}")
            content_type = self._headers.get(b"content-type")
            self.content_type = content_type.decode("latin-1")[:100] if content_type else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.file_data.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise _bad_form(f"form field {self._name!r} is too long", self._name)

    def on_part_end(self) -> None:
        if not self._is_file:
            if self._name in self.fields:  # which copy should win is anyone's guess: refuse, naming it
                raise _bad_form(f"form field {self._name!r} is given twice", self._name)
            value = self._value.decode("utf-8", errors="replace")
            problem = text_problem(value)
            if problem:
                raise _bad_form(problem, self._name)
            self.fields[self._name] = value

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }


class _Sink:
    """Writes file bytes and hashes them; ``write`` runs in a worker thread."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)


async def receive_upload(
    request: Request,
    directory: Path,
    max_bytes: int,
    file_field: str = "file",
    too_large: Callable[[int], ServiceError] = _too_large,
) -> ReceivedUpload:
    """Stream the multipart body of ``request`` into a temporary file under ``directory``.

    The caller owns (and must remove) ``ReceivedUpload.path``. Raises ``too_large(max_bytes)`` (a 413)
    past ``max_bytes`` of file data, 415 for a body that is not multipart, 422 for a malformed form or a
    missing file part.
    """
    media_type, params = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaType("send the upload as multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad_form("multipart body without a boundary", "body")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FRAMING_ALLOWANCE:
        raise too_large(max_bytes)  # known before reading a byte

    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
    path = Path(name)
    parts = _Parts(file_field)
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            sink = _Sink(out)
            parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
            async for chunk in request.stream():
                parser.write(chunk)
                if parts.file_data:
                    for piece in parts.file_data:
                        size += len(piece)
                        pending.append(piece)
                        pending_size += len(piece)
                    parts.file_data.clear()
                    if size > max_bytes:
                        raise too_large(max_bytes)
                    if pending_size >= _WRITE_CHUNK:
                        data = b"".join(pending)
                        pending, pending_size = [], 0
                        await run_in_threadpool(sink.write, data)
            parser.finalize()
            if pending:
                await run_in_threadpool(sink.write, b"".join(pending))
    except FormParserError as exc:
        path.unlink(missing_ok=True)
        raise _bad_form(f"malformed multipart body ({exc})", "body") from None
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise
    if not parts.file_seen:
        path.unlink(missing_ok=True)
        raise _bad_form(f"the form has no {file_field!r} file part")
    return ReceivedUpload(
        path=path,
        filename=parts.filename,
        content_type=parts.content_type,
        size=size,
        sha256=sink.digest.hexdigest(),
        fields=parts.fields,
    )
