"""The API under test: a real app on a migrated database, a local object store and a real Celery app
on an embedded SQLite broker (so a submit really writes a broker message).

SQLite databases are copies of one database migrated once per session (fast); tests parametrized with
``@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)`` also run against the
session's PostgreSQL database, where each test works with its own owners and deletes them afterwards.
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import StarletteDeprecationWarning

from api.app import create_app
from jobs import repository
from jobs.auth import create_api_key, get_or_create_owner
from jobs.db import transaction
from jobs.migrate import upgrade
from jobs.models import Artifact, Job, Owner
from jobs.queue import RUN_JOB_TASK
from jobs.settings import Settings
from jobs.storage import ObjectStore

with warnings.catch_warnings():
    # Starlette 1.x wants the httpx2 package for its TestClient and warns when it falls back to httpx,
    # which is what this project installs. Ignored for this one import only.
    warnings.filterwarnings(
        "ignore",
        message="Using `httpx` with `starlette.testclient` is deprecated",
        category=StarletteDeprecationWarning,
    )
    from fastapi.testclient import TestClient


HERE = Path(__file__).resolve().parent


def digits_spec(**overrides: Any) -> dict[str, Any]:
    """A small valid spec; keyword arguments replace whole sections."""
    spec: dict[str, Any] = {
        "model": {"architecture": "lenet5", "args": {"width": 0.5}},
        "dataset": {"source": "digits"},
        "sparsity": {"method": "lbc", "n": 2, "m": 4},
        "train": {"epochs": 2, "batch_size": 64},
    }
    spec.update(overrides)
    return spec


@dataclass
class Caller:
    owner_id: str
    name: str
    headers: dict[str, str]


@dataclass
class Service:
    app: FastAPI
    client: TestClient
    settings: Settings
    created_owners: list[str] = field(default_factory=list)

    @property
    def sessions(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.app.state.session_factory
        return factory

    @property
    def celery(self) -> Celery:
        celery: Celery = self.app.state.celery
        return celery

    @property
    def store(self) -> ObjectStore:
        store: ObjectStore = self.app.state.store
        return store

    def caller(self, name: str = "alice", *, admin: bool = False) -> Caller:
        """A fresh owner with an API key (made through jobs.auth, as the CLI does)."""
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        with transaction(self.sessions) as session:
            owner = get_or_create_owner(session, unique, is_admin=admin)
            _, token = create_api_key(session, owner, "test key")
            owner_id = owner.id
        self.created_owners.append(owner_id)
        return Caller(owner_id, unique, {"Authorization": f"Bearer {token}"})

    def submit(self, caller: Caller, spec: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
        response = self.client.post(
            "/v1/jobs", json=spec or digits_spec(), headers={**caller.headers, **headers}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def queued_messages(self, queue: str) -> list[str]:
        """Job ids of the run-job messages waiting on ``queue`` in the broker (consumes them)."""
        ids = []
        with self.celery.connection_for_read() as connection:
            simple = connection.SimpleQueue(queue)
            try:
                while True:
                    try:
                        message = simple.get(block=True, timeout=0.2)
                    except simple.Empty:
                        break
                    assert message.headers["task"] == RUN_JOB_TASK
                    ids.append(message.payload[0][0])
                    message.ack()
            finally:
                simple.close()
        return ids

    def worker_runs(
        self, job_id: str, *, events: Sequence[tuple[str, dict[str, Any]]] = (), finish: str | None = None
    ) -> None:
        """Play a worker through the repository: claim, report events, then finish."""
        with transaction(self.sessions) as session:
            job = repository.claim_job(session, job_id, "test-worker", 60)
            assert job is not None
            for kind, data in events:
                repository.add_event(session, job_id, kind, data, attempt=1)
        if finish == "succeeded":
            with transaction(self.sessions) as session:
                repository.finish_success(session, job_id, "test-worker", [], {"accuracy": 0.9})
        elif finish == "failed":
            with transaction(self.sessions) as session:
                repository.finish_failure(session, job_id, "spec_error", "boom", retryable=False)

    def add_artifact(
        self, job_id: str, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        stored = self.store.put_bytes(f"jobs/{job_id}/artifacts/{name}", data, content_type)
        with transaction(self.sessions) as session:
            session.add(
                Artifact(
                    job_id=job_id,
                    name=name,
                    size=stored.size,
                    sha256=stored.sha256,
                    content_type=content_type,
                    storage_key=stored.key,
                )
            )


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "lbc.db"
    upgrade(f"sqlite:///{path}")
    return path


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "database_url": database_url,
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "storage_path": tmp_path / "objects",
        "default_queue": "gpu",
    }
    values.update(overrides)
    return Settings(**values)


AppFactory = Callable[..., Service]


@pytest.fixture
def app_factory(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite_template: Path
) -> Iterator[AppFactory]:
    """``app_factory(backend="sqlite", raise_server_exceptions=True, **settings)`` -> a running Service."""
    services: list[Service] = []

    def make(backend: str = "sqlite", raise_server_exceptions: bool = True, **overrides: Any) -> Service:
        if backend == "postgres":
            database_url = request.getfixturevalue("postgres_url")
        else:
            db = tmp_path / f"lbc-{len(services)}.db"
            shutil.copyfile(migrated_sqlite_template, db)
            database_url = f"sqlite:///{db}"
        database_url = overrides.pop("database_url", database_url)
        settings = make_settings(tmp_path, database_url, **overrides)
        app = create_app(settings)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        service = Service(app, client, settings)
        services.append(service)
        return service

    yield make
    for service in services:
        if service.created_owners and service.settings.database_url.startswith("postgresql"):
            with transaction(service.sessions) as session:
                session.execute(delete(Job).where(Job.owner_id.in_(service.created_owners)))
                session.execute(delete(Owner).where(Owner.id.in_(service.created_owners)))
        service.client.__exit__(None, None, None)


@pytest.fixture(params=["sqlite"])
def service(request: pytest.FixtureRequest, app_factory: AppFactory) -> Service:
    """The app on SQLite; parametrize indirectly with "postgres" to run a test on PostgreSQL too."""
    return app_factory(request.param)
