"""How a running job talks to the database: heartbeats, throttled progress, events and log lines.

Every write is one short transaction. A background thread keeps the lease alive while the job does
something other than training (downloading data, uploading artifacts); the training loop adds throttled
progress writes. Each write learns whether the job is still this worker's and whether cancel was asked.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs import repository
from jobs.db import transaction
from worker.context import WorkerContext
from worker.lifecycle import exit_if_overdue

log = logging.getLogger(__name__)

MAX_LINES_PER_EVENT = 200
MAX_BUFFERED_LINES = 10_000


def jsonable(value: Any) -> Any:
    """Plain JSON (PostgreSQL's JSON type rejects NaN and infinity, so those become null)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        number = float(value)  # numpy and torch scalars
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


# An absolute path that is not part of a URL (``http://host/a`` is left alone): at least two components.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.+@~-]+/)+[\w.+@~-]*")
DETAILS_IN_SERVER_LOG = "details in the server log"


def public_text(text: str, scratch: Path | None = None) -> str:
    """``text`` as the job's owner may see it: no paths of the server's machine.

    Paths inside the attempt's ``scratch`` directory become relative to it (``inputs/data.npz``); any
    other absolute path is shortened to its last component (``.../torch/serialization.py`` becomes
    ``.../serialization.py``). The server log keeps the full text.
    """
    if scratch is not None:
        text = text.replace(f"{scratch}/", "").replace(str(scratch), ".")
    return _ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


class JobLogFormatter(logging.Formatter):
    """The job log's lines: the message alone, never a traceback or a stack (those stay in the server
    log, which the same record reaches through the worker's own handler), and no server paths."""

    def __init__(self, scratch: Path | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.scratch = scratch

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info or record.stack_info:
            line += f" ({DETAILS_IN_SERVER_LOG})"
        return public_text(line, self.scratch)


class JobLogHandler(logging.Handler):
    """Captures a job's log lines: appended to ``job.log`` in the scratch dir and buffered for the
    reporter, which writes them in batches as ``log`` events. ``scratch`` is the attempt's directory,
    whose paths the lines show relative to it."""

    def __init__(self, path: Path, level: int = logging.INFO, *, scratch: Path | None = None) -> None:
        super().__init__(level)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._buffer: list[str] = []
        self._buffer_lock = threading.Lock()
        self.setFormatter(JobLogFormatter(scratch))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self._file.write(line + "\n")
            self._file.flush()
            with self._buffer_lock:
                if len(self._buffer) < MAX_BUFFERED_LINES:
                    self._buffer.append(line)
        except Exception:
            self.handleError(record)

    def drain(self) -> list[str]:
        with self._buffer_lock:
            lines, self._buffer = self._buffer, []
        return lines

    def restore(self, lines: list[str]) -> None:
        """Put drained lines back in front (their write failed; the next beat retries them)."""
        with self._buffer_lock:
            self._buffer[:0] = lines

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            super().close()


class JobReporter:
    """All writes of one job attempt, serialised by a lock; the owner of the ``lost``/``cancel`` flags.

    ``lost`` means another process owns the job now (or it is gone): the attempt must stop and must not
    write anything else about the job.
    """

    def __init__(
        self, ctx: WorkerContext, job_id: str, attempt: int, logs: JobLogHandler | None = None
    ) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.attempt = attempt
        self.logs = logs
        self.lost = False
        self.cancel_requested = False
        self._lock = threading.Lock()
        self._progress: dict[str, Any] | None = None
        self._phase: str | None = None  # to be written
        self.current_phase: str | None = None
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._last_progress_write = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the job reports ---------------------------------------------------------------------------
    def phase(self, name: str, **data: Any) -> None:
        """Enter a phase: recorded on the job row and as a ``phase`` event, written now."""
        log.info("phase: %s%s", name, "".join(f" {k}={v}" for k, v in data.items()))
        with self._lock:
            self._phase = self.current_phase = name
            self._events.append(("phase", {"phase": name, **data}))
        self.beat()

    def event(self, kind: str, data: dict[str, Any], *, now: bool = True) -> None:
        with self._lock:
            self._events.append((kind, data))
        if now:
            self.beat()

    def progress(self, progress: dict[str, Any]) -> None:
        """Throttled: written at most once per ``progress_interval_seconds`` (also as an event)."""
        with self._lock:
            self._progress = progress
            due = time.monotonic() - self._last_progress_write >= self.ctx.settings.progress_interval_seconds
            if due:
                self._events.append(("progress", progress))
        if due:
            self.beat()

    # -- the one write ----------------------------------------------------------------------------------
    def beat(self) -> None:
        """Extend the lease and flush whatever is pending, in one short transaction.

        A failed write (database briefly unreachable) is logged and retried on the next beat; the
        pending data is kept. The lease is what decides whether this worker still owns the job.
        """
        with self._lock:
            if self.lost:
                return
            progress, phase = self._progress, self._phase
            events = list(self._events)
            lines = self.logs.drain() if self.logs is not None else []
            try:
                with transaction(self.ctx.sessions) as session:
                    owned, cancel = repository.heartbeat(
                        session,
                        self.job_id,
                        self.ctx.worker_id,
                        self.ctx.settings.lease_seconds,
                        progress=jsonable(progress) if progress is not None else None,
                        phase=phase,
                    )
                    if owned:
                        for kind, data in events:
                            repository.add_event(session, self.job_id, kind, jsonable(data), self.attempt)
                        for start in range(0, len(lines), MAX_LINES_PER_EVENT):
                            chunk = lines[start : start + MAX_LINES_PER_EVENT]
                            repository.add_event(session, self.job_id, "log", {"lines": chunk}, self.attempt)
            except Exception as exc:
                if self.logs is not None and lines:
                    self.logs.restore(lines)
                log.warning("heartbeat for job %s failed (will retry): %s", self.job_id, exc)
                return
            del self._events[: len(events)]
            self._phase = None
            if progress is not None:
                self._last_progress_write = time.monotonic()
                if self._progress is progress:
                    self._progress = None
            if not owned:
                self.lost = True
                log.warning("job %s is no longer owned by %s; stopping", self.job_id, self.ctx.worker_id)
            elif cancel and not self.cancel_requested:
                self.cancel_requested = True
                log.info("cancel requested for job %s", self.job_id)

    # -- the background heartbeat ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()

    @property
    def shutdown_requested(self) -> bool:
        """The worker is stopping: the job should checkpoint and hand itself back (``worker.lifecycle``)."""
        return self.ctx.shutdown.requested

    def _run(self) -> None:
        # Woken often enough to notice a lost parent or an overdue stop soon, whatever the heartbeat.
        interval = min(self.ctx.settings.heartbeat_seconds, 1.0)
        last_beat = time.monotonic()
        while not self._stop.wait(interval):
            self.ctx.check_parent()
            exit_if_overdue(self.ctx)
            if time.monotonic() - last_beat >= self.ctx.settings.heartbeat_seconds:
                last_beat = time.monotonic()
                self.beat()
                if self.lost:
                    return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(30.0, 2 * self.ctx.settings.heartbeat_seconds))
            self._thread = None
