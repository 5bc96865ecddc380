"""Bring a database to the current schema with the Alembic migrations, the only way the schema is made.

``alembic.ini`` and ``migrations/`` sit at the repository root, beside this package, and are found
through ``Path(__file__).resolve().parents[1]``. That holds for a source checkout and for the editable
install (``pip install -e .``), which is how this project is installed; a wheel would not carry them,
and ``alembic_config`` says so instead of failing somewhere inside Alembic.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
_alembic_lock = threading.Lock()
ALEMBIC_INI = ROOT / "alembic.ini"
MIGRATIONS = ROOT / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config bound to ``database_url``, for ``alembic.command`` calls (tests, tooling)."""
    if not ALEMBIC_INI.is_file() or not (MIGRATIONS / "env.py").is_file():
        raise RuntimeError(
            f"migrations not found beside the jobs package ({ALEMBIC_INI}, {MIGRATIONS}); "
            "install the project from a source checkout with `pip install -e .`"
        )
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False  # leave the calling process's logging alone
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``database_url``; a no-op when already current.

    Safe to call from several processes at once on PostgreSQL (they queue on an advisory lock, see
    migrations/env.py) and from several threads (Alembic's ``context`` is process-global, hence the lock).
    """
    with _alembic_lock:
        command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision in migrations/versions."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or ``None`` for a database never migrated.

    Does not create a SQLite file that does not exist yet.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        on_disk = database not in ("", ":memory:") and not database.startswith("file:")
        if on_disk and not Path(database).expanduser().exists():
            return None
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
