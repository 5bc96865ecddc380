"""Engine and session factory; one transaction boundary per request or task."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

# A pooled PostgreSQL connection that sat unused longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
# Connections the pool keeps open, and the most it hands out at once (``api.deps.database_slots``).
POOL_SIZE = 30


def connection_of(db: Session | Connection) -> Connection:
    """The Core connection a statement runs on: a session's own (inside its transaction), or ``db``
    itself. Reads that need no ORM object take either, so a request that only reads can run them on a
    bare connection, without a session's bookkeeping."""
    return db.connection() if isinstance(db, Session) else db


def make_engine(database_url: str, *, connect_timeout_s: int | None = None, **kwargs: Any) -> Engine:
    """An engine for ``database_url``; ``connect_timeout_s`` bounds opening a PostgreSQL connection.

    Without a connect timeout a request or a heartbeat waits as long as the kernel keeps retrying a
    connection to a host that stopped answering (minutes); with it, it fails with an
    ``OperationalError`` the API turns into a 503. Connections that died while the database was away
    are replaced at checkout (:func:`_replace_dead_connections`), so the first request after it returns
    succeeds without a restart.

    The pool keeps every connection it opened (``POOL_SIZE``, no overflow): with a smaller pool and an
    overflow, each request past the pool's size under load opened a connection and closed it at the
    end (a PostgreSQL backend started and stopped per request).
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
    engine = create_engine(database_url, pool_size=POOL_SIZE, max_overflow=0, **kwargs)
    _replace_dead_connections(engine)
    return engine


def _replace_dead_connections(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it may be dead: it sat idle longer than
    ``IDLE_PING_SECONDS``, or its socket has something to read.

    An idle connection has nothing to read; a server that closed it (a restart, a crash, an
    administrator's terminate, a proxy that cut it) left an end-of-file or its farewell message on the
    socket, which a zero-timeout ``select`` sees without a round trip. ``pool_pre_ping`` sent a
    ``SELECT 1`` on every checkout instead: one round trip per request. A failed ping raises
    ``DisconnectionError``, on which the pool discards the connection and opens another.
    """

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_connection: Any, record: Any) -> None:
        record.info["lbc_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_needed(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("lbc_idle_since", None)
        if idle_since is None:  # opened for this checkout
            return
        if time.monotonic() - idle_since < IDLE_PING_SECONDS and not _has_input(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("a pooled connection failed its ping") from exc


def _has_input(dbapi_connection: Any) -> bool:
    """Whether the connection's socket is readable (or unusable) while nothing was asked of it."""
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError, AttributeError):
        return True
    return bool(readable)


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
