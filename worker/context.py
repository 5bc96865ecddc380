"""What a worker process needs to run jobs: settings, a DB session factory, the object store, its id.

Built once per worker *child* process (after the fork), never in the Celery parent, so no database
connection, boto3 client or CUDA context is shared across a fork.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import make_engine, make_session_factory
from jobs.settings import Settings
from jobs.storage import ObjectStore, make_store

# (job id, queue, time limit in seconds) -> rings the bell for a job; called only after a commit.
SendJob = Callable[[str, str, "int | None"], None]


def _no_send(job_id: str, queue: str, time_limit_s: int | None) -> None:
    """Without a broker (in-process execution) a re-queued job waits for the reaper's re-send."""


@dataclass
class ShutdownRequest:
    """Set when the worker must stop soon: its process got SIGTERM (``lbc serve`` stopping, a Celery
    warm shutdown forwarded to its pool child, a container stop), or the process that started it is
    gone. The running job then checkpoints and hands itself back to the queue without counting an
    attempt (``worker.execution``).

    Written from a signal handler, so it is two plain attributes: no lock a handler could deadlock on.
    """

    reason: str | None = None
    since: float | None = None  # time.monotonic() of the request

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.since = time.monotonic()
            self.reason = reason

    def overdue(self, grace_seconds: float) -> bool:
        """Asked more than ``grace_seconds`` ago and still not stopped."""
        return self.since is not None and time.monotonic() - self.since > grace_seconds


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    worker_id: str
    send: SendJob = field(default=_no_send)
    shutdown: ShutdownRequest = field(default_factory=ShutdownRequest)
    # The process that started this one (the Celery worker's main process); when it is gone the job
    # stops as for a shutdown. None: not watched (in-process execution, tests).
    parent_pid: int | None = None

    def check_parent(self) -> None:
        """Request a shutdown when the parent process died (we were re-parented)."""
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.shutdown.request(f"the worker process {self.parent_pid} that started this job is gone")

    def close(self) -> None:
        self.engine.dispose()


def default_worker_id(node_name: str | None = None) -> str:
    """``<celery node name or host>/<pid>``: names the exact process that holds a job's lease."""
    return f"{node_name or socket.gethostname()}/{os.getpid()}"


def build_context(
    settings: Settings, *, worker_id: str | None = None, send: SendJob | None = None
) -> WorkerContext:
    engine = make_engine(settings.database_url, connect_timeout_s=settings.database_connect_timeout_seconds)
    return WorkerContext(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        store=make_store(settings),
        worker_id=worker_id or default_worker_id(),
        send=send or _no_send,
    )
