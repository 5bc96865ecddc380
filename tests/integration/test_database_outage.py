"""PostgreSQL goes away and comes back while ``lbc api`` runs: 503s with Retry-After, then recovery.

The API process reaches PostgreSQL through a loopback proxy that the test controls (see ``tcp_proxy``):
first refused connections with the open ones cut (a crashed database), then connections that are
accepted and never answered (a host gone from the network), then the database again on the same port.
A worker running a job through the same kind of proxy keeps the job across a short outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from jobs import auth, repository
from jobs.db import make_engine, make_session_factory, transaction
from jobs.migrate import upgrade
from jobs.models import Job
from jobs.settings import Settings
from jobs.spec import dump_spec, parse_spec
from jobs.states import JobState
from tests.integration.support import Process, Processes, free_port, wait_for
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(120)

RETRY_AFTER = 7
CONNECT_TIMEOUT = 2
SPEC: dict[str, Any] = {
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 200},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 1},
}


@dataclass
class Api:
    client: httpx.Client
    process: Process
    proxy: TcpProxy


@pytest.fixture
def api(processes: Processes, empty_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Api]:
    upgrade(empty_postgres_url)
    engine = make_engine(empty_postgres_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            owner = auth.get_or_create_owner(session, "outage")
            _, token = auth.create_api_key(session, owner, "outage test")
    finally:
        engine.dispose()
    url = make_url(empty_postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.up()
    port = free_port()
    env = {
        "LBC_HOME": str(tmp_path / "home"),
        "LBC_DATABASE_URL": url.set(port=proxy.port).render_as_string(hide_password=False),
        "LBC_BROKER_URL": redis_url,
        "LBC_STORAGE_PATH": str(tmp_path / "objects"),
        "LBC_DATABASE_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
        "LBC_RETRY_AFTER_SECONDS": str(RETRY_AFTER),
    }
    process = processes.start("api", "api", "--port", str(port), env=env)
    # The hard bound on every request: a request that hangs fails the test instead of passing late.
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    try:
        wait_for(lambda: client.get("/healthz").status_code == 200, 60, "the API to answer /healthz")
        yield Api(client, process, proxy)
    finally:
        client.close()
        proxy.close()
        processes.stop_all()


class EventStream:
    """``GET /v1/jobs/{id}/events`` followed in a thread of its own, line by line."""

    def __init__(self, client: httpx.Client, job_id: str) -> None:
        self.lines: list[str] = []
        self.error: BaseException | None = None
        self._client = httpx.Client(base_url=client.base_url, headers=client.headers, timeout=30)
        self.thread = threading.Thread(target=self._follow, args=(job_id,), daemon=True)
        self.thread.start()

    def _follow(self, job_id: str) -> None:
        try:
            with self._client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    self.lines.append(line)
        except BaseException as exc:
            self.error = exc
        finally:
            self._client.close()


def submit(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/jobs", json=SPEC)


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert f"retry in {RETRY_AFTER} s" in error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert "127.0.0.1" not in response.text and "postgres" not in response.text.lower()


def test_writes_get_503_with_retry_after_while_postgres_is_away_and_succeed_when_it_returns(api: Api) -> None:
    client = api.client
    first = submit(client)
    assert first.status_code == 201, first.text
    job_id = first.json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    stream = EventStream(client, job_id)  # a dashboard following the job across the outage
    wait_for(lambda: stream.lines, 30, "the event stream to start")

    # -- the database crashed: connections refused, the pooled ones cut ----------------------------------
    api.proxy.down()
    started = time.monotonic()
    assert_database_unavailable(submit(client))
    print(
        f"POST /v1/jobs with the database refusing connections: 503 after {time.monotonic() - started:.3f}s"
    )
    for response in (
        submit(client),
        client.post(f"/v1/jobs/{job_id}/cancel"),
        client.post(f"/v1/jobs/{job_id}/retry"),
        client.post("/v1/datasets", files={"file": ("d.npz", b"not read", "application/octet-stream")}),
        client.get("/v1/jobs"),  # reads are 503 too: every route authenticates against the database
        client.get(f"/v1/jobs/{job_id}"),
    ):
        assert_database_unavailable(response)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["components"]["database"]["ok"] is False
    assert client.get("/healthz").status_code == 200  # liveness: restarting the API would not help

    # -- the database host stopped answering: only the connect timeout ends the wait ---------------------
    api.proxy.hang()
    started = time.monotonic()
    response = submit(client)
    hung_for = time.monotonic() - started
    assert_database_unavailable(response)
    print(f"POST /v1/jobs with an unanswering database: 503 after {hung_for:.2f}s (connect timeout 2s)")

    # -- the database is back on the same address: the very next request succeeds, no restart -----------
    api.proxy.up()
    back = time.monotonic()
    again = submit(client)
    print(f"database back -> first 201: {time.monotonic() - back:.3f}s")
    assert again.status_code == 201, again.text
    listed = client.get("/v1/jobs").json()["items"]
    assert {job["id"] for job in listed} == {job_id, again.json()["id"]}
    assert client.get("/readyz").status_code == 200

    # The stream opened before the outage is still open and delivers what happened after it.
    assert stream.thread.is_alive(), stream.lines
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    stream.thread.join(timeout=30)
    assert not stream.thread.is_alive() and stream.error is None, stream.error
    assert any(line.startswith("data: ") and '"cancelled"' in line for line in stream.lines), stream.lines
    assert api.process.alive()
    assert "unhandled error" not in api.process.log()  # no 500 on the way


# 1000 small steps: long enough that the database is lost in the middle of training even on an idle
# machine, where one epoch of 100 steps ended before the outage began.
TRAINING: dict[str, Any] = {
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 1000},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 10, "batch_size": 8, "device": "cpu"},
    "benchmark": {"enabled": False},
}


def test_a_worker_keeps_its_job_through_a_short_database_outage(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Heartbeats that fail are retried (the lease outlives the outage), a checkpoint that cannot be
    recorded does not stop training, and the end of the attempt waits for the database: the job
    succeeds in its first attempt."""
    from worker import execution
    from worker.context import build_context

    engine = make_engine(postgres_url)
    direct = make_session_factory(engine)
    with transaction(direct) as session:
        owner = auth.get_or_create_owner(session, "outage")
        job, _ = repository.create_job(
            session,
            owner=owner,
            spec=dump_spec(parse_spec(TRAINING)),
            summary={"method": "lbc", "pattern": "2:4", "architecture": "mlp", "queue": "cpu"},
            idempotency_key=None,
            max_attempts=3,
            max_active_jobs=100,
        )
        job_id = job.id
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.up()
    settings = Settings(
        home=tmp_path / "home",
        database_url=url.set(port=proxy.port).render_as_string(hide_password=False),
        lease_seconds=60,
        heartbeat_seconds=0.2,
        progress_interval_seconds=0.1,
        database_connect_timeout_seconds=2,
    )
    ctx = build_context(settings, worker_id="outage-worker/1")
    result: list[JobState | None] = []
    worker = threading.Thread(target=lambda: result.append(execution.run_job(ctx, job_id)), daemon=True)
    caplog.set_level(logging.WARNING, logger="worker")

    def progress() -> int:
        with transaction(direct) as session:
            found = session.get(Job, job_id)
            assert found is not None
            return int(found.progress.get("global_step", 0))

    try:
        worker.start()
        wait_for(lambda: progress() >= 3, 120, "training to start")
        proxy.down()
        wait_for(
            lambda: "the database is unreachable" in caplog.text or "heartbeat for job" in caplog.text,
            60,
            "the worker to notice",
        )
        proxy.up()
        worker.join(timeout=120)
    finally:
        proxy.up()  # a failed wait must not leave the worker without its database
        worker.join(timeout=120)
        proxy.close()
        ctx.close()
    try:
        with transaction(direct) as session:
            done = session.get(Job, job_id)
            assert done is not None
            final = (done.state, done.attempt)
    finally:
        engine.dispose()

    assert result == [JobState.SUCCEEDED]
    assert final == ("succeeded", 1)
    print(
        "worker warnings during the outage:",
        sorted({r.getMessage().split(":")[0][:70] for r in caplog.records if r.levelno >= logging.WARNING}),
    )
