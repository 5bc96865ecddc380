"""Time and plan of the unfinished-jobs quota count (run on every submit) for an owner with a long
history, on PostgreSQL (a temporary database at the migrations' head, dropped at the end). Prints
the median time and EXPLAIN ANALYZE of the current query (IN the unfinished states) and of the one it
replaced (NOT IN the terminal states); asserts nothing.

The data: one owner with --history finished jobs and 11 unfinished ones, and another owner with
--others queued jobs (what a shared queue looks like to a state-only index).

Usage:
  python benchmarks/quota_cost.py --history 200000 --others 20000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

from sqlalchemy import Select, create_engine, func, select, text
from sqlalchemy.engine import make_url

from jobs import repository
from jobs.auth import get_or_create_owner
from jobs.db import make_engine, make_session_factory, transaction
from jobs.migrate import upgrade
from jobs.models import Job
from jobs.states import TERMINAL, JobState

UNFINISHED = 11


def fill(url: str, history: int, others: int) -> str:
    """Creates the jobs by copying one real row in SQL (fast); returns the heavy owner's id."""
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            owner = get_or_create_owner(session, "heavy")
            other = get_or_create_owner(session, "other")
            summary = {"method": "lbc", "pattern": "2:4", "architecture": "mlp", "queue": "cpu"}
            job, _ = repository.create_job(
                session,
                owner=owner,
                spec={"model": {"architecture": "mlp"}},
                summary=summary,
                idempotency_key=None,
                max_attempts=1,
                max_active_jobs=1,
            )
            owner_id, other_id, template = owner.id, other.id, job.id
        with engine.begin() as connection:
            columns = connection.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'jobs' ORDER BY ordinal_position"
                )
            ).all()

            def copy(count: int, overrides: dict[str, str], parameters: dict[str, str]) -> None:
                values = ", ".join(overrides.get(column, f"t.{column}") for column in columns)
                connection.execute(
                    text(
                        f"INSERT INTO jobs ({', '.join(columns)}) SELECT {values} "
                        f"FROM jobs t, generate_series(1, {count}) i WHERE t.id = :template"
                    ),
                    {"template": template, **parameters},
                )

            state = f"CASE WHEN i < {UNFINISHED} THEN 'queued' ELSE 'succeeded' END"
            copy(history, {"id": "md5(i::text || 'h')", "state": state, "idempotency_key": "NULL"}, {})
            copy(
                others,
                {"id": "md5(i::text || 'o')", "owner_id": ":other", "idempotency_key": "NULL"},
                {"other": other_id},
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE jobs"))
    finally:
        engine.dispose()
    return owner_id


def report(url: str, owner_id: str, repeats: int) -> None:
    queries: dict[str, Select[int]] = {
        "current: state IN (unfinished)": select(func.count())
        .select_from(Job)
        .where(Job.owner_id == owner_id, Job.state.in_([s.value for s in JobState if s not in TERMINAL])),
        "before: state NOT IN (terminal)": select(func.count())
        .select_from(Job)
        .where(Job.owner_id == owner_id, Job.state.notin_([s.value for s in TERMINAL])),
    }
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            for label, query in queries.items():
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    count = connection.execute(query).scalar()
                    times.append((time.perf_counter() - started) * 1000)
                literal = query.compile(engine, compile_kwargs={"literal_binds": True})
                plan = connection.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {literal}"
                ).scalars()
                print(f"\n{label}: count {count}, median {statistics.median(times):.2f} ms over {repeats}")
                print("\n".join(f"  {line}" for line in plan))
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=200_000, help="finished jobs of the measured owner")
    parser.add_argument("--others", type=int, default=20_000, help="queued jobs of another owner")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the temporary database on",
    )
    args = parser.parse_args()
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    name = f"lbc_bench_quota_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.pg_admin_url).set(database=name).render_as_string(hide_password=False)
            upgrade(url)
            owner_id = fill(url, args.history, args.others)
            print(
                f"owner with {args.history + 1} jobs ({UNFINISHED} unfinished), "
                f"another owner with {args.others} queued"
            )
            report(url, owner_id, args.repeats)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
