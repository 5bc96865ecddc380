"""CPU of the parts of the API's two hot reads, a job's status and a page of 20 jobs, each timed alone in
one thread (``time.thread_time``: this thread's CPU, not the database's and not time spent waiting for
it), against a temporary PostgreSQL database (dropped at the end). Prints the best of five rounds per
part in ms; asserts nothing.

It answers "which part of a read is worth making cheaper", which a whole request (benchmarks/route_cpu.py)
or a profile under load (``load.py --py-spy-gil``) shows only mixed with the framework's work.

Parts:
  connection         take an autocommit connection from the pool and give it back (every read does)
  authenticate       ``jobs.auth.authenticate`` on its own connection (the requests that write: the
                     reads check the key in their own statement)
  list query         ``repository.list_jobs`` for a page of 20 with the key's check, on an open
                     connection
  list page build    ``JobSummary.page_of`` and ``JobPage`` from those rows
  list page json     the page serialised as the response body
  status read        ``repository.read_job`` with the key's check and ``JobDetail.of_row``, on its own
                     connection

Usage:
  python benchmarks/read_path_cpu.py
  python benchmarks/read_path_cpu.py --calls 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import load  # noqa: E402  (benchmarks/load.py: the same temporary stack and spec)
import route_cpu  # noqa: E402  (the app called as ASGI, to submit the jobs)

AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def best_ms(work: Callable[[], object], calls: int, rounds: int = 5) -> float:
    for _ in range(max(1, calls // 10)):
        work()
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(calls):
            work()
        best = min(best, (time.thread_time() - started) / calls * 1000)
    return best


def measure(app: Any, token: str, calls: int) -> None:
    from pydantic import TypeAdapter

    from api.schemas import JobDetail, JobPage, JobSummary, job_detail_columns, job_summary_columns
    from jobs import repository
    from jobs.auth import KeyCheck, authenticate

    call = route_cpu.asgi_caller(app, token)
    spec = json.dumps(load.TINY_SPEC).encode()

    async def submit_page() -> str:
        job_id = ""
        for _ in range(20):
            status, body = await call("POST", "/v1/jobs", spec)
            assert status == 201, body
            job_id = json.loads(body)["id"]
        return job_id

    job_id = asyncio.run(submit_page())
    engine = app.state.engine
    key = KeyCheck(token)
    filters, columns = repository.JobFilters(), job_summary_columns()
    open_connection = engine.connect().execution_options(**AUTOCOMMIT)
    _, rows, _ = repository.list_jobs(open_connection, key, filters, columns=columns, limit=20)
    page = JobPage(items=JobSummary.page_of(rows), next_cursor=None)
    page_json = TypeAdapter(JobPage)

    def on_connection(work: Callable[[Any], object]) -> Callable[[], None]:
        def run() -> None:
            with engine.connect() as connection:
                connection.execution_options(**AUTOCOMMIT)
                work(connection)

        return run

    parts: dict[str, Callable[[], object]] = {
        "connection": on_connection(lambda connection: None),
        "authenticate": on_connection(lambda connection: authenticate(connection, token)),
        "list query": lambda: repository.list_jobs(open_connection, key, filters, columns=columns, limit=20),
        "list page build": lambda: JobPage(items=JobSummary.page_of(rows), next_cursor=None),
        "list page json": lambda: page_json.dump_json(page),
        "status read": on_connection(
            lambda connection: JobDetail.of_row(
                repository.read_job(connection, job_id, key, job_detail_columns())[1]
            )
        ),
    }
    print(f"{'part':<18} {'ms CPU/call':>11}")
    for name, work in parts.items():
        print(f"{name:<18} {best_ms(work, calls):>11.4f}")
    open_connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and part (default 2000)")
    parser.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="an empty Redis DB")
    args = parser.parse_args()
    stack = load.Stack("distributed", args.pg_admin_url, args.redis_url, max_jobs=10_000_000)
    try:
        stack.prepare()
        token = stack.run_lbc("keys", "create", "--name", "read-path").strip()
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("LBC_")})
        from api.app import create_app
        from jobs.settings import Settings

        measure(create_app(Settings()), token, args.calls)
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
