"""The API's threads for database work: results, errors, context, and no abandoned work on cancel."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from api.db_threads import DatabaseThreads

REQUEST = contextvars.ContextVar("request", default="none")


@pytest.fixture
def threads() -> Iterator[DatabaseThreads]:
    pool = DatabaseThreads(2)
    yield pool
    pool.close()


def test_the_work_runs_off_the_event_loop_and_returns_its_result(threads: DatabaseThreads) -> None:
    async def main() -> tuple[str, str]:
        return await threads.run(lambda: threading.current_thread().name), threading.current_thread().name

    worker, loop = asyncio.run(main())
    assert worker.startswith("api-db") and worker != loop


def test_the_works_exception_reaches_the_caller(threads: DatabaseThreads) -> None:
    def fail() -> None:
        raise LookupError("job 42 not found")

    with pytest.raises(LookupError, match="job 42 not found"):
        asyncio.run(threads.run(fail))


def test_the_work_sees_the_callers_context_variables(threads: DatabaseThreads) -> None:
    async def main() -> str:
        REQUEST.set("req-7")
        return await threads.run(REQUEST.get)

    assert asyncio.run(main()) == "req-7"


def test_a_cancelled_request_waits_for_its_work_before_it_goes(threads: DatabaseThreads) -> None:
    """A client that goes away mid-commit cancels its request; the commit (or rollback) still runs to
    its end before the request lets the cancellation through, however often it is cancelled."""
    release = threading.Event()
    finished: list[str] = []

    def commit() -> None:
        release.wait(10)
        finished.append("committed")

    async def main() -> None:
        request = asyncio.create_task(threads.run(commit))
        await asyncio.sleep(0.05)
        for _ in range(3):  # a cancel scope repeats its cancellation
            request.cancel()
            await asyncio.sleep(0.05)
            assert not request.done() and not finished
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert finished == ["committed"]

    asyncio.run(main())


def test_a_cancelled_requests_failed_work_still_ends_in_the_cancellation(threads: DatabaseThreads) -> None:
    release = threading.Event()

    def rollback_fails() -> None:
        release.wait(10)
        raise RuntimeError("connection lost")

    async def main() -> None:
        request = asyncio.create_task(threads.run(rollback_fails))
        await asyncio.sleep(0.05)
        request.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await request

    asyncio.run(main())
