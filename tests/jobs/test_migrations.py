"""The migrations build exactly the schema of jobs/models.py, on SQLite and on PostgreSQL, and undo it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Index, MetaData, String, create_engine, inspect

from jobs import migrate
from jobs.models import Base

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'lbc.db'}"  # the directory does not exist yet either
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def _schema_diff(database_url: str, metadata: MetaData = Base.metadata) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def _tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_head_builds_exactly_the_models_schema(empty_database_url: str) -> None:
    assert migrate.current_revision(empty_database_url) is None

    migrate.upgrade(empty_database_url)

    assert migrate.current_revision(empty_database_url) == migrate.head_revision() is not None
    assert _schema_diff(empty_database_url) == []
    assert _tables(empty_database_url) == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrade_is_a_no_op_when_current(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    migrate.upgrade(empty_database_url)
    assert migrate.current_revision(empty_database_url) == migrate.head_revision()


def test_downgrade_to_base_removes_every_table(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)

    command.downgrade(migrate.alembic_config(empty_database_url), "base")

    assert migrate.current_revision(empty_database_url) is None
    assert _tables(empty_database_url) <= {"alembic_version"}
    migrate.upgrade(empty_database_url)  # and back up again
    assert _schema_diff(empty_database_url) == []


def _job_indexes(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return {index["name"] for index in inspect(engine).get_indexes("jobs") if index["name"]}
    finally:
        engine.dispose()


def test_0003_adds_the_owner_state_index_and_its_downgrade_removes_it(empty_database_url: str) -> None:
    config = migrate.alembic_config(empty_database_url)
    command.upgrade(config, "0002")
    assert "ix_jobs_owner_state" not in _job_indexes(empty_database_url)

    command.upgrade(config, "0003")
    assert "ix_jobs_owner_state" in _job_indexes(empty_database_url)

    command.downgrade(config, "0002")
    assert "ix_jobs_owner_state" not in _job_indexes(empty_database_url)
    migrate.upgrade(empty_database_url)
    assert _schema_diff(empty_database_url) == []


def test_the_comparison_notices_a_model_the_migrations_lack(sqlite_url: str) -> None:
    # Guards the tests above against passing vacuously.
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    jobs = changed.tables["jobs"]
    jobs.append_column(Column("new_column", String(10), nullable=True))
    Index("ix_jobs_new_column", jobs.c.new_column)

    kinds = {diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in _schema_diff(sqlite_url, changed)}

    assert {"add_column", "add_index"} <= kinds


def test_concurrent_upgrades_on_postgresql_serialise(empty_postgres_url: str) -> None:
    # Separate processes, as when several API replicas start at once against one database.
    code = "import sys; from jobs.migrate import upgrade; upgrade(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", code, empty_postgres_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [(p.communicate(timeout=120)[1], p.returncode) for p in processes]
    failures = [stderr for stderr, returncode in outcomes if returncode != 0]

    assert failures == []
    assert migrate.current_revision(empty_postgres_url) == migrate.head_revision()
    assert _schema_diff(empty_postgres_url) == []


def test_upgrade_from_several_threads_is_serialised(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'db{i}.db'}" for i in range(3)]
    errors: list[BaseException] = []

    def run(url: str) -> None:
        try:
            migrate.upgrade(url)
        except BaseException as exc:  # collected and asserted on in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(url,)) for url in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert all(migrate.current_revision(url) == migrate.head_revision() for url in urls)


def test_current_revision_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    assert migrate.current_revision(f"sqlite:///{path}") is None
    assert not path.exists()


def _alembic_cli(*args: str, cwd: Path, database_url: str) -> None:
    env = {**os.environ, "LBC_DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), *args],
        cwd=cwd,  # anywhere: alembic.ini locates the migrations relative to itself
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alembic_command_line_prefers_x_db_url_over_settings(tmp_path: Path) -> None:
    chosen, configured = tmp_path / "chosen.db", tmp_path / "configured.db"

    _alembic_cli(
        "-x",
        f"db_url=sqlite:///{chosen}",
        "upgrade",
        "head",
        cwd=tmp_path,
        database_url=f"sqlite:///{configured}",
    )

    assert migrate.current_revision(f"sqlite:///{chosen}") == migrate.head_revision()
    assert not configured.exists()


def test_alembic_command_line_falls_back_to_the_service_settings(tmp_path: Path) -> None:
    configured = tmp_path / "configured.db"

    _alembic_cli("upgrade", "head", cwd=tmp_path, database_url=f"sqlite:///{configured}")

    assert migrate.current_revision(f"sqlite:///{configured}") == migrate.head_revision()


def test_alembic_config_keeps_percent_encoded_passwords_intact() -> None:
    url = "postgresql+psycopg://lbc:p%40ss%25word@db.internal:5432/lbc"
    config = migrate.alembic_config(url)
    assert config.get_main_option("sqlalchemy.url") == url
    assert config.get_main_option("script_location") == str(ROOT / "migrations")
