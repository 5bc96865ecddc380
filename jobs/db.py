"""Engine and session factory; one transaction boundary per request or task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str, *, connect_timeout_s: int | None = None, **kwargs: Any) -> Engine:
    """An engine for ``database_url``; ``connect_timeout_s`` bounds opening a PostgreSQL connection.

    Without a connect timeout a request or a heartbeat waits as long as the kernel keeps retrying a
    connection to a host that stopped answering (minutes); with it, it fails with an
    ``OperationalError`` the API turns into a 503. ``pool_pre_ping`` replaces connections that died
    while the database was away, so the first request after it returns succeeds without a restart.
    """
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if connect_timeout_s is not None:
        kwargs["connect_args"] = {"connect_timeout": connect_timeout_s, **kwargs.get("connect_args", {})}
    return create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached or its connection broke, which retrying
    later can fix: a refused or timed-out connect, a connection lost mid-request, an exhausted pool.
    Constraint violations and SQL errors are bugs or conflicts, not outages."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
