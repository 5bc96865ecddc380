"""PostgreSQL goes away and comes back while ``lbc api`` runs: 503s with Retry-After, then recovery.

The API process reaches PostgreSQL through a loopback proxy that the test controls (see ``tcp_proxy``):
first refused connections with the open ones cut (a crashed database), then connections that are
accepted and never answered (a host gone from the network), then the database again on the same port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from jobs import auth
from jobs.db import make_engine, make_session_factory, transaction
from jobs.migrate import upgrade
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

    # -- the database crashed: connections refused, the pooled ones cut ----------------------------------
    api.proxy.down()
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
    assert api.process.alive()
    assert "unhandled error" not in api.process.log()  # no 500 on the way
