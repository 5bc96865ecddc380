"""A job's outputs: listed with size and sha256, downloaded as streams with Range and ETag support."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection

from api.deps import CallerDep, JobDep, JobRef, SessionDep, StoreDep
from api.errors import ERROR_RESPONSES, NOT_FOUND, ErrorEnvelope
from api.schemas import ArtifactList, ArtifactOut
from jobs import repository
from jobs.auth import KeyCheck, Principal
from jobs.errors import NotFound, ServiceError
from jobs.storage import ObjectNotFound, ObjectStore
from jobs.storage.base import CHUNK_SIZE

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"], responses={**ERROR_RESPONSES, **NOT_FOUND})

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# 2**63 - 1, the largest offset any store or filesystem has, has 19 digits.
MAX_POSITION_DIGITS = 19
BEYOND_ANY_END = 10**MAX_POSITION_DIGITS


class RangeNotSatisfiable(ServiceError):
    status_code, code = 416, "range_not_satisfiable"


@router.get("/{job_id}/artifacts", response_model=ArtifactList, summary="List artifacts")
def list_artifacts(job: JobDep, session: SessionDep) -> ArtifactList:
    return ArtifactList(items=[ArtifactOut.of(a) for a in repository.list_artifacts(session, job.id)])


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for one ``bytes=`` range, or None to send the whole object.

    A header that is not a single well-formed byte range is ignored (RFC 9110 allows that); a
    well-formed range that selects nothing raises 416.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = _position(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start = _position(first)
    end = _position(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignore
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _position(digits: str) -> int:
    """A byte position of a Range header. One with more significant digits than any offset counts as
    beyond every end: ``int()`` refuses strings of thousands of digits (a 500), and no artifact is that long."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= MAX_POSITION_DIGITS else BEYOND_ANY_END


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"requested range is outside the {size}-byte artifact",
        details={"size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return etag in candidates


RangeHeader = Annotated[str | None, Header(alias="Range", description="bytes=a-b, bytes=a- or bytes=-n")]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]
IfRange = Annotated[str | None, Header(alias="If-Range")]
ArtifactName = Annotated[str, Path(description="Artifact name", max_length=200)]


@router.get(
    "/{job_id}/artifacts/{name:path}",
    summary="Download an artifact",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The whole artifact", "content": {"application/octet-stream": {}}},
        206: {"description": "The requested byte range (Content-Range)"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        416: {"model": ErrorEnvelope, "description": "Range not satisfiable"},
    },
)
async def download_artifact(
    job_id: JobRef,
    name: ArtifactName,
    caller: CallerDep,
    store: StoreDep,
    range_header: RangeHeader = None,
    if_none_match: IfNoneMatch = None,
    if_range: IfRange = None,
) -> Response:
    """Streamed from object storage. The ETag is the quoted sha256, so a cached copy is revalidated
    with `If-None-Match` (304) and an interrupted download resumes with `Range` (206). HEAD answers the
    same headers without the body."""
    # Authentication, the lookup (job and artifact in one query, on a bare connection: Caller.read), the
    # object's size and (for a small one) its bytes in one thread hop.
    return await caller.read(
        lambda connection, who: _artifact_reply(
            connection, who, store, job_id, name, range_header, if_none_match, if_range, body=True
        )
    )


@router.head("/{job_id}/artifacts/{name:path}", include_in_schema=False)
async def artifact_headers(
    job_id: JobRef,
    name: ArtifactName,
    caller: CallerDep,
    store: StoreDep,
    range_header: RangeHeader = None,
    if_none_match: IfNoneMatch = None,
    if_range: IfRange = None,
) -> Response:
    return await caller.read(
        lambda connection, who: _artifact_reply(
            connection, who, store, job_id, name, range_header, if_none_match, if_range, body=False
        )
    )


def _artifact_reply(
    connection: Connection,
    who: Principal | KeyCheck,
    store: ObjectStore,
    job_id: str,
    name: str,
    range_header: str | None,
    if_none_match: str | None,
    if_range: str | None,
    *,
    body: bool,
) -> tuple[Principal, Response]:
    principal, artifact = repository.read_artifact(connection, job_id, name, who)
    return principal, _artifact_response(artifact, store, range_header, if_none_match, if_range, body=body)


def _artifact_response(
    artifact: dict[str, Any],
    store: ObjectStore,
    range_header: str | None,
    if_none_match: str | None,
    if_range: str | None,
    *,
    body: bool,
) -> Response:
    etag = f'"{artifact["sha256"]}"'
    filename = artifact["name"].rsplit("/", 1)[-1]
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
    }
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    try:
        size = store.stat(artifact["storage_key"]).size
    except ObjectNotFound:
        raise NotFound(f"the stored content of artifact {artifact['name']!r} is missing") from None
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's partial copy is of another version: send everything
    selected = parse_range(range_header, size)
    if selected is None:
        start, end, status = 0, size - 1, 200
    else:
        (start, end), status = selected, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    if not body:  # the store is not read
        return Response(status_code=status, media_type=artifact["content_type"], headers=headers)
    if length <= CHUNK_SIZE:
        # One chunk of the store's stream, read here: streamed, it cost a thread hop per chunk and one
        # more for the end of the stream.
        content = b"".join(store.open_range(artifact["storage_key"], start, end)) if length else b""
        return Response(content, status_code=status, media_type=artifact["content_type"], headers=headers)
    chunks = store.open_range(artifact["storage_key"], start, end)
    return StreamingResponse(chunks, status_code=status, media_type=artifact["content_type"], headers=headers)
