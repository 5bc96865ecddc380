"""Bearer authentication, owner scoping without auth, and the one error envelope for every failure."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.auth import digest
from jobs.db import transaction
from jobs.models import ApiKey, Job, Owner, utcnow
from tests.api.conftest import AppFactory, Service, digits_spec

BOTH = pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


@BOTH
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer lbc_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "invalid", "wrong-scheme", "empty"],
)
def test_requests_without_a_valid_key_are_401(service: Service, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/datasets"),
        ("GET", "/v1/models"),
    ]:
        response = service.client.request(method, path, headers=headers, json=digits_spec())
        _error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"


@BOTH
def test_a_bad_key_is_a_401_and_a_missing_job_a_404_before_invalid_parameters_are_a_422(
    service: Service,
) -> None:
    """Routes check the key and look their job up in the same step as their work, after FastAPI has
    validated their parameters; the order of the answers is still key, then job, then parameters."""
    alice = service.caller()
    job_id = service.submit(alice)["id"]
    bad = {"Authorization": "Bearer lbc_not-a-real-key"}
    for path in ("/v1/jobs?limit=500", f"/v1/jobs/{job_id}/events?after=-1", f"/v1/jobs/{'x' * 65}"):
        for headers in ({}, bad):
            _error(service.client.get(path, headers=headers), 401, "unauthorized")
    for path in ("/v1/jobs/nope/events?after=-1", f"/v1/jobs/nope/artifacts/{'n' * 201}"):
        _error(service.client.get(path, headers=alice.headers), 404, "not_found")
    for path in (f"/v1/jobs/{job_id}/events?after=-1", f"/v1/jobs/{job_id}/artifacts/{'n' * 201}"):
        _error(service.client.get(path, headers=alice.headers), 422, "validation_error")
    assert service.client.get(f"/v1/jobs/{job_id}", headers=alice.headers).status_code == 200


@BOTH
def test_a_valid_key_authenticates_and_is_stored_only_as_a_digest(service: Service) -> None:
    alice = service.caller()
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    assert service.client.get("/v1/jobs", headers=alice.headers).status_code == 200
    with transaction(service.sessions) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.owner_id == alice.owner_id))
        assert key is not None
        assert key.digest == digest(token) and token not in (key.prefix, key.digest)
        assert key.last_used_at is not None


def test_revoked_keys_are_refused(service: Service) -> None:
    alice = service.caller()
    with transaction(service.sessions) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.owner_id == alice.owner_id))
        assert key is not None
        key.revoked_at = utcnow()
    _error(service.client.get("/v1/jobs", headers=alice.headers), 401, "unauthorized")


def test_keys_never_reach_the_logs(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    alice = service.caller()
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    caplog.set_level(logging.DEBUG)
    service.client.get("/v1/jobs", headers=alice.headers)
    service.client.get("/v1/jobs", headers={"Authorization": "Bearer lbc_wrong-secret"})
    service.client.get("/v1/jobs/nope", headers=alice.headers)
    assert token not in caplog.text and "lbc_wrong-secret" not in caplog.text


def test_without_auth_one_implicit_owner_still_scopes_everything(app_factory: AppFactory) -> None:
    service = app_factory(auth_enabled=False)
    response = service.client.post("/v1/jobs", json=digits_spec())
    assert response.status_code == 201
    job = response.json()
    with transaction(service.sessions) as session:
        owner = session.get(Owner, job["owner_id"])
        assert owner is not None and owner.name == "local" and not owner.is_admin
    assert [item["id"] for item in service.client.get("/v1/jobs").json()["items"]] == [job["id"]]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("DELETE", "/v1/jobs", 405, "method_not_allowed"),
        ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef", 404, "not_found"),
        ("GET", "/v1/datasets/missing", 404, "not_found"),
        ("GET", "/v1/checkpoints/missing", 404, "not_found"),
        ("GET", "/v1/models/alexnet", 404, "not_found"),
    ],
)
def test_routing_errors_use_the_envelope(
    service: Service, method: str, path: str, status: int, code: str
) -> None:
    alice = service.caller()
    _error(service.client.request(method, path, headers=alice.headers), status, code)


def test_query_validation_names_the_parameter(service: Service) -> None:
    alice = service.caller()
    error = _error(
        service.client.get("/v1/jobs", params={"limit": 500}, headers=alice.headers), 422, "validation_error"
    )
    assert error["details"][0]["field"] == "limit"
    assert error["details"][0]["location"] == "query"


def test_unexpected_errors_are_500s_that_hide_internals(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = app_factory(raise_server_exceptions=False)
    alice = service.caller()
    from jobs import repository

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(repository, "list_jobs", explode)
    response = service.client.get("/v1/jobs", headers={**alice.headers, "X-Request-ID": "trace-me-123"})
    error = _error(response, 500, "internal_error")
    assert error["request_id"] == "trace-me-123"
    assert "secret" not in response.text
    assert "secret internal detail" in caplog.text  # logged for the operator
    assert "trace-me-123" in caplog.text


def test_request_ids_are_echoed_or_made(service: Service) -> None:
    assert (
        service.client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    made = service.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers[
        "X-Request-ID"
    ]
    assert made != "bad id with spaces" and len(made) == 32


def test_an_unreachable_database_is_a_503_with_retry_after(app_factory: AppFactory, tmp_path: Any) -> None:
    service = app_factory(database_url=f"sqlite:///{tmp_path / 'missing-dir' / 'nope.db'}")
    response = service.client.get("/v1/jobs", headers={"Authorization": "Bearer lbc_x"})
    error = _error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert "nope.db" not in error["message"]


class _DriverError(Exception):
    """Stands in for the DBAPI exception SQLAlchemy wraps."""


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (sa_exc.OperationalError("SELECT 1", {}, _DriverError("server closed the connection")), 503, None),
        (sa_exc.InterfaceError("SELECT 1", {}, _DriverError("the connection is closed")), 503, None),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"), 503, None),
        (sa_exc.DBAPIError("SELECT 1", {}, _DriverError("lost"), connection_invalidated=True), 503, None),
        (sa_exc.IntegrityError("INSERT", {}, _DriverError("duplicate key")), 500, "internal_error"),
        (sa_exc.ProgrammingError("SELECT", {}, _DriverError("syntax error")), 500, "internal_error"),
    ],
    ids=["operational", "interface", "pool-timeout", "invalidated", "integrity", "programming"],
)
def test_lost_database_connections_are_503s_and_other_database_errors_500s(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, raised: Exception, status: int, code: str | None
) -> None:
    service = app_factory(raise_server_exceptions=False, retry_after_seconds=9)
    alice = service.caller()
    from jobs import repository

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise raised

    monkeypatch.setattr(repository, "list_jobs", explode)
    response = service.client.get("/v1/jobs", headers=alice.headers)
    error = _error(response, status, code or "database_unavailable")
    if status == 503:
        assert response.headers["Retry-After"] == "9"
        assert error["message"] == "the database is unavailable; retry in 9 s"
    assert "connection" not in error["message"] and "duplicate" not in error["message"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_commit_that_loses_the_database_is_a_503_and_nothing_is_kept(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """The connection breaks after the route ran, at the request's commit: the client learns the write
    did not happen (503, retry), not a 201 for a job that is not there."""
    service = app_factory(backend, raise_server_exceptions=False)
    alice = service.caller()
    commit = Session.commit

    def commit_loses_connection(self: Session) -> None:
        if any(isinstance(obj, Job) for obj in self):  # the submit's session, which holds its new job
            raise sa_exc.OperationalError("COMMIT", {}, _DriverError("server closed the connection"))
        commit(self)

    monkeypatch.setattr(Session, "commit", commit_loses_connection)
    response = service.client.post("/v1/jobs", json=digits_spec(), headers=alice.headers)
    _error(response, 503, "database_unavailable")
    monkeypatch.setattr(Session, "commit", commit)
    assert service.client.get("/v1/jobs", headers=alice.headers).json()["items"] == []
