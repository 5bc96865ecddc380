"""Fixtures for the real services the tests talk to: PostgreSQL, Redis and an S3 endpoint over HTTP.

Each service fixture makes its own throw-away namespace (a fresh database, a free Redis DB number, a
bucket on a private moto server) and removes it afterwards. PostgreSQL and Redis on 127.0.0.1 are part
of the development and CI machines: when one is unreachable the tests that need it are skipped on a
laptop, but fail when the ``CI`` environment variable is set, so CI never goes green by skipping.
Addresses can be pointed elsewhere with ``LBC_TEST_POSTGRES_URL`` (an admin database URL that may
``CREATE DATABASE``) and ``LBC_TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from jobs.migrate import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "LBC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LBC_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _service_missing(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is an error, not a skip)")
    pytest.skip(message)


# -- PostgreSQL ---------------------------------------------------------------------------------------
@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    """Create ``lbc_test_<random>`` and yield its URL; drop it (and its connections) afterwards."""
    admin = create_engine(
        POSTGRES_ADMIN_URL,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )
    name = f"lbc_test_{uuid.uuid4().hex[:12]}"
    try:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # psycopg.OperationalError wrapped by SQLAlchemy, DNS errors, ...
            _service_missing(f"PostgreSQL at {make_url(POSTGRES_ADMIN_URL).render_as_string()}", exc)
        try:
            yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head, shared by the whole session, dropped at the end.

    For session- or module-scoped fixtures; tests want ``postgres_url``, which also empties it.
    """
    with _fresh_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's migrated PostgreSQL database, with every table emptied before this test.

    Migrating once and truncating per test is what makes a clean database affordable for each test.
    """
    engine = create_engine(postgres_database, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            # Fail loudly instead of hanging if an earlier test leaked an open transaction.
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            tables = conn.scalars(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ).all()
            if tables:
                quoted = ", ".join(f'"{table}"' for table in tables)
                conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    return postgres_database


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A fresh, empty (never migrated) PostgreSQL database for this test only."""
    with _fresh_postgres_database() as url:
        yield url


# -- SQLite -------------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file under the test's tmp_path, migrated to head."""
    url = f"sqlite:///{tmp_path / 'lbc.db'}"
    upgrade(url)
    return url


# -- Redis --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://.../<n>`` on a Redis DB number (1-15) that was empty when picked; flushed at the end."""
    import redis

    base = REDIS_URL.rstrip("/")
    numbers = random.sample(range(1, 16), 15)
    for number in numbers:
        client = redis.Redis.from_url(f"{base}/{number}", socket_connect_timeout=3)
        try:
            if client.dbsize() == 0:
                break
        except redis.RedisError as exc:
            client.close()
            _service_missing(f"Redis at {base}", exc)
        client.close()
    else:
        pytest.fail(f"no empty Redis database among 1-15 at {base}")
    try:
        yield f"{base}/{number}"
    finally:
        client.flushdb()
        client.close()


# -- S3 (moto server over HTTP) -----------------------------------------------------------------------
@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    bucket: str
    region: str = "us-east-1"


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A moto S3 server on a free local port with one bucket, and dummy credentials in the environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Keep a developer's ~/.aws profile out of the tests.
            "AWS_CONFIG_FILE": str(tmp_path_factory.mktemp("aws") / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path_factory.mktemp("aws") / "credentials"),
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            s3 = MotoS3(endpoint_url=f"http://{host}:{port}", bucket="lbc-test-artifacts")
            client = boto3.session.Session().client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region)
            client.create_bucket(Bucket=s3.bucket)
            yield s3
        finally:
            server.stop()
