"""What a worker process needs to run jobs: settings, a DB session factory, the object store, its id.

Built once per worker *child* process (after the fork), never in the Celery parent, so no database
connection, boto3 client or CUDA context is shared across a fork.
"""

from __future__ import annotations

import os
import socket
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
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    worker_id: str
    send: SendJob = field(default=_no_send)

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
