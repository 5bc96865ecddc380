"""The threads that run requests' database work, off the event loop.

A request's database work (its authentication, its reads and writes, its commit) is blocking driver
code, so it runs in a worker thread while the event loop serves other requests. Starlette's
``run_in_threadpool`` hands work over through anyio (a capacity limiter, a cancel scope and a
context lookup per call) and shares its 40 threads with everything else; that bookkeeping was a
measurable part of a status read's CPU. Here one plain executor, sized to the database pool (a
request holds a database slot, :func:`api.deps.database_slots`, while its work runs), takes the
work directly.

A thread is never abandoned: a request that is cancelled while its work runs (the client went away)
waits for that work, its commit or its rollback, before it lets the cancellation through.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Without a bounded pool (SQLite), as many threads as anyio's default limiter offered.
DEFAULT_THREADS = 40


class DatabaseThreads:
    """One executor for the API's database work; :meth:`run` awaits a call in it."""

    def __init__(self, threads: int | None) -> None:
        self.size = threads or DEFAULT_THREADS
        self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="api-db")

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` in a worker thread, with the caller's context variables; its result or its
        exception. Cancelled meanwhile, it still waits for ``work`` to finish, then re-raises the
        cancellation."""
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(self._executor, context.run, work, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await _wait_out(future)
            raise

    def close(self) -> None:
        """Wait for the work in flight and stop the threads (at the app's shutdown)."""
        self._executor.shutdown(wait=True)


async def _wait_out(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, however often this task is cancelled meanwhile (a cancel scope
    repeats its cancellation at every await)."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except Exception:  # its failure is not this request's answer any more: it was cancelled
            return
