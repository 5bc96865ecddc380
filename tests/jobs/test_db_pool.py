"""The engine's pool replaces a connection the server closed, without a ping on every checkout."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, text

from jobs.db import make_engine


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _count_pings(engine: Engine) -> list[object]:
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(postgres_url: str) -> None:
    engine, admin = make_engine(postgres_url), make_engine(postgres_url)
    try:
        pid = _backend_pid(engine)  # back in the pool, idle for far less than the ping threshold
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 30
            while connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one():
                assert time.monotonic() < deadline, "the terminated backend did not exit"
                time.sleep(0.05)
        assert _backend_pid(engine) != pid  # the dead connection was seen and replaced, no error
    finally:
        engine.dispose()
        admin.dispose()


def test_a_connection_in_steady_use_is_not_pinged(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        pid = _backend_pid(engine)
        pings = _count_pings(engine)
        for _ in range(3):
            assert _backend_pid(engine) == pid
        assert pings == []
    finally:
        engine.dispose()
