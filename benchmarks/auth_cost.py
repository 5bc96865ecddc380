"""CPU and wall time of one authenticated transaction (``jobs.auth.authenticate`` inside
``jobs.db.transaction``), the working tree's version against the one of an earlier commit, on SQLite
and on PostgreSQL (a temporary database, dropped at the end). Prints medians; asserts nothing.

The two versions alternate in rounds, so other load on the machine hits both alike. CPU time is this
process's (client side: SQLAlchemy, the driver); wall time also holds the database's own work and the
round trips.

Usage:
  python benchmarks/auth_cost.py --baseline 8244252     # the two-query version before the joined one
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from jobs import auth
from jobs.db import make_engine, make_session_factory, transaction
from jobs.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]


def load_baseline(revision: str, directory: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{revision}:jobs/auth.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = directory / "baseline_auth.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_auth", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(
    url: str, versions: dict[str, ModuleType], calls: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median (cpu ms, wall ms) per authenticated transaction of each version."""
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with transaction(factory) as session:
            owner = auth.get_or_create_owner(session, "bench")
            _, token = auth.create_api_key(session, owner, "bench")
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        for number in range(rounds):
            order = list(versions.items())
            for name, module in order if number % 2 == 0 else reversed(order):
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    with transaction(factory) as session:
                        module.authenticate(session, token)
                samples[name].append(
                    ((time.process_time() - cpu) * 1000 / calls, (time.perf_counter() - wall) * 1000 / calls)
                )
    finally:
        engine.dispose()
    return {
        name: (statistics.median(c for c, _ in values), statistics.median(w for _, w in values))
        for name, values in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="git revision whose jobs/auth.py to compare with")
    parser.add_argument("--calls", type=int, default=500, help="transactions per round and version")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the temporary database on",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbc-auth-cost-") as directory:
        versions = {args.baseline: load_baseline(args.baseline, Path(directory)), "working tree": auth}
        results = {"sqlite": measure(f"sqlite:///{directory}/auth.db", versions, args.calls, args.rounds)}
        admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        name = f"lbc_bench_auth_{uuid.uuid4().hex[:6]}"
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(args.pg_admin_url).set(database=name).render_as_string(hide_password=False)
                results["postgresql"] = measure(url, versions, args.calls, args.rounds)
            finally:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()
    print(f"{'database':<11} {'version':<14} {'cpu ms':>7} {'wall ms':>8}   (per authenticated transaction)")
    for database, by_version in results.items():
        for version, (cpu, wall) in by_version.items():
            print(f"{database:<11} {version:<14} {cpu:7.3f} {wall:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
