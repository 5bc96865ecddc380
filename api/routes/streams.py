"""What a job reports while it runs: live events (Server-Sent Events), its log, its metrics history."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CallerDep, JobDep, JobRef, SessionDep
from api.errors import ERROR_RESPONSES, NOT_FOUND
from api.schemas import EventOut, LogLine, LogPage, MetricsHistory
from jobs import repository
from jobs.db import is_database_unavailable, transaction
from jobs.errors import InvalidInput
from jobs.models import Job, JobEvent
from jobs.states import TERMINAL, JobState

log = logging.getLogger("api.streams")

router = APIRouter(prefix="/v1/jobs", tags=["job progress"], responses={**ERROR_RESPONSES, **NOT_FOUND})

EVENT_BATCH = 500
MAX_METRICS_EVENTS = 100_000
# Event ids are 64-bit integer keys: a larger id is refused up front, not sent to the database (where it
# overflows the column type: a 500, or a stream that dies after its 200).
MAX_EVENT_ID = 2**63 - 1


def _event_text(event: EventOut) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"


def _poll(factory: sessionmaker[Session], job_id: str, after: int) -> tuple[bool, list[EventOut]]:
    """(job finished, next events). The state is read first: a terminal state's own event is written in
    the same transaction, so once the job is seen terminal the events read next include the last one."""
    with transaction(factory) as session:
        state = session.scalar(select(Job.state).where(Job.id == job_id))
        events = repository.list_events(session, job_id, after_id=after, limit=EVENT_BATCH)
        return (state is None or JobState(state) in TERMINAL), [EventOut.of(e) for e in events]


async def event_stream(
    factory: sessionmaker[Session],
    job_id: str,
    after: int,
    *,
    follow: bool,
    poll_s: float,
    heartbeat_s: float,
) -> AsyncIterator[str]:
    yield "retry: 3000\n\n"
    last_write = time.monotonic()
    while True:
        try:
            # The database work runs in a worker thread; the event loop only waits.
            finished, events = await anyio.to_thread.run_sync(_poll, factory, job_id, after)
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            # The stream stays open and polls again: a browser's EventSource gives up for good when its
            # reconnection meets the 503, and every event is still there once the database is back.
            log.info("event stream of job %s waits for the database: %s", job_id, type(exc).__name__)
            finished, events = False, []
        for event in events:
            yield _event_text(event)
            after = event.id
        if events:
            last_write = time.monotonic()
        if len(events) == EVENT_BATCH:
            continue  # more are waiting
        if finished or not follow:
            return
        if time.monotonic() - last_write >= heartbeat_s:
            yield ": heartbeat\n\n"  # a comment line keeps proxies from closing an idle stream
            last_write = time.monotonic()
        await anyio.sleep(poll_s)


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 0 or number > MAX_EVENT_ID:
        raise InvalidInput(
            "Last-Event-ID must be a non-negative integer event id",
            details=[
                {"field": "Last-Event-ID", "message": "must be a non-negative integer", "location": "header"}
            ],
        )
    return number


@router.get(
    "/{job_id}/events",
    summary="Stream job events (SSE)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: one event per state, phase, progress, metrics or log record",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": 'id: 42\nevent: state\ndata: {"id": 42, "kind": "state", "attempt": 1, '
                    '"created_at": "2025-01-01T12:00:00Z", "data": {"state": "running"}}\n\n',
                }
            },
        }
    },
)
async def stream_events(
    request: Request,
    job_id: JobRef,
    caller: CallerDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this event id (sent by EventSource)"),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id")
    ] = None,
    follow: Annotated[bool, Query(description="Keep the stream open until the job finishes")] = True,
) -> StreamingResponse:
    """Replays the events after `Last-Event-ID` (or `after`), then follows new ones until the job is
    finished and every event was sent. A comment line is sent as a heartbeat every 15 s of silence.
    With `follow=false` it sends what exists and closes."""
    await caller.run(lambda session, owner: repository.get_job(session, job_id, owner), read_only=True)
    header = _parse_last_event_id(last_event_id)
    start = header if header is not None else (after or 0)
    state = request.app.state
    stream = event_stream(
        state.session_factory,
        job_id,
        start,
        follow=follow,
        poll_s=state.sse_poll_seconds,
        heartbeat_s=state.sse_heartbeat_seconds,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{job_id}/metrics", response_model=MetricsHistory, summary="Metrics history")
def job_metrics(job: JobDep, session: SessionDep) -> MetricsHistory:
    """Per-epoch metrics as the worker reported them (loss, accuracy, learning rate, alive combinations)."""
    history: list[dict[str, object]] = []
    after = 0
    while len(history) < MAX_METRICS_EVENTS:
        events = repository.list_events(session, job.id, after_id=after, kinds=["metrics"], limit=1000)
        history.extend(event.data for event in events)
        if len(events) < 1000:
            break
        after = events[-1].id
    return MetricsHistory(job_id=job.id, history=history)


def _lines(event: JobEvent) -> list[str]:
    data = event.data or {}
    lines = data.get("lines")
    if isinstance(lines, list):
        return [str(line) for line in lines]
    for key in ("message", "line"):
        if key in data:
            return [str(data[key])]
    return [json.dumps(data)]


@router.get(
    "/{job_id}/logs",
    summary="Job log",
    response_model=LogPage,
    responses={
        200: {
            "description": "The log lines: text/plain by default, JSON with `Accept: application/json`",
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": "2025-01-01 12:00:00 INFO phase: training\n",
                }
            },
            "headers": {
                "X-Next-After": {"description": "Pass as `after` to continue", "schema": {"type": "integer"}}
            },
        }
    },
)
def job_logs(
    request: Request,
    job: JobDep,
    session: SessionDep,
    tail: Annotated[int | None, Query(ge=1, le=100_000, description="Only the last N lines")] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_EVENT_ID, description="Only lines of log records after this event id"),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=100_000, description="Stop after this many lines (the last record is kept whole)")
    ] = 5000,
) -> Response:
    if tail is not None and after is not None:
        raise InvalidInput(
            "use either tail or after, not both",
            details=[{"field": "tail", "message": "cannot be combined with after", "location": "query"}],
        )
    items: list[LogLine] = []
    next_after = after or 0
    if tail is not None:
        records: list[JobEvent] = []
        count = 0
        before: int | None = None
        while count < tail:  # newest first, in batches, until enough lines
            query = select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.kind == "log")
            if before is not None:
                query = query.where(JobEvent.id < before)
            batch = list(session.scalars(query.order_by(JobEvent.id.desc()).limit(200)))
            for event in batch:
                records.append(event)
                count += len(_lines(event))
                if count >= tail:
                    break
            if len(batch) < 200:
                break
            before = batch[-1].id
        records.reverse()
        items = [_line(event, line) for event in records for line in _lines(event)][-tail:]
        next_after = records[-1].id if records else 0
    else:
        while len(items) < limit:
            events = repository.list_events(session, job.id, after_id=next_after, kinds=["log"], limit=200)
            for event in events:
                items.extend(_line(event, line) for line in _lines(event))
                next_after = event.id
                if len(items) >= limit:
                    break
            if len(events) < 200:
                break
    headers = {"X-Next-After": str(next_after)}
    if "application/json" in request.headers.get("accept", ""):
        page = LogPage(items=items, next_after=next_after)
        return JSONResponse(page.model_dump(mode="json"), headers=headers)
    text = "".join(f"{item.line}\n" for item in items)
    return PlainTextResponse(text, headers=headers)


def _line(event: JobEvent, line: str) -> LogLine:
    return LogLine(event_id=event.id, attempt=event.attempt, created_at=event.created_at, line=line)
