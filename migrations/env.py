"""Alembic environment for the job database; imports only ``jobs.settings`` and ``jobs.models``.

The URL comes from ``alembic -x db_url=...``, else from ``sqlalchemy.url`` set by the caller
(``jobs.migrate`` does that), else from the service settings (``LBC_DATABASE_URL`` or the embedded
SQLite default), so the CLI and the service always migrate the same database.
"""

from __future__ import annotations

import logging.config
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from jobs.models import Base
from jobs.settings import get_settings

config = context.config
target_metadata = Base.metadata

# Several API processes may start at once and each run `upgrade`; on PostgreSQL they queue on this
# transaction-scoped advisory lock so that exactly one applies each revision.
_PG_MIGRATION_LOCK = 0x4C_42_43_4D  # "LBCM"


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("db_url") or config.get_main_option("sqlalchemy.url")
    return url or get_settings().database_url


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _ensure_sqlite_directory(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def run_migrations_offline(url: str) -> None:
    """``alembic upgrade head --sql``: print the DDL instead of running it."""
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online(url: str) -> None:
    if _is_sqlite(url):
        _ensure_sqlite_directory(url)
    # A plain engine, not jobs.db's: its SQLite connections turn foreign keys on, and batch migrations
    # (copy table, drop, rename) would then cascade deletes through the copied tables.
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is minimal
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


# jobs.migrate turns this off: fileConfig would replace the logging setup of the process calling it.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline(_database_url())
else:
    run_migrations_online(_database_url())
