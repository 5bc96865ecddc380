"""Owner isolation and authentication, as a matrix: every route of the app × every caller.

Callers: the owner of the objects (A), another owner (B), an admin, no key, a bad key. For every route
that names an object (a path parameter), A and the admin succeed, B gets the same 404 as for an id that
does not exist (never a 403: existence does not leak), and a missing or bad key gets 401, all in the one
error envelope. Routes without a path parameter are checked for 401 and for lists that show only the
caller's objects (all of them to an admin). The plaintext keys never appear in a response (body or
headers) or in the logs.

The table is checked against ``app.routes``: a new route that is in none of the tables fails
``test_every_route_is_in_the_matrix``, so no endpoint escapes the matrix.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from safetensors.numpy import save

from tests.api.conftest import Caller, Service, digits_spec
from tests.hf_models import hand_made_model, zip_of

CALLERS = ("owner", "other", "admin", "no_key", "bad_key")
BAD_KEY = {"Authorization": "Bearer lbc_0123456789abcdefNOTAREALKEY"}


# -- the objects ----------------------------------------------------------------------------------------


def masks_file(masks: dict[str, np.ndarray]) -> bytes:
    packed = {name: np.packbits(mask.reshape(-1).astype(bool)) for name, mask in masks.items()}
    shapes = {name: list(mask.shape) for name, mask in masks.items()}
    return save(packed, metadata={"format": "lbc.masks/1", "bit_order": "big", "shapes": json.dumps(shapes)})


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((12, 8, 8), np.uint8), y=np.arange(12) % 4)
    return buffer.getvalue()


def checkpoint_bytes() -> bytes:
    return save({"features.0.weight": np.zeros((4, 1, 3, 3), np.float32)})


REPORT = {"schema": "lbc.speedup-report/3", "summary": {"median_layer_speedup": None}, "notes": []}


@dataclass
class World:
    """One object of each kind, all owned by A, plus factories for fresh ones that a route changes."""

    service: Service
    owner: Caller
    other: Caller
    admin: Caller
    ids: dict[str, str] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        return {
            "owner": self.owner.headers,
            "other": self.other.headers,
            "admin": self.admin.headers,
            "no_key": {},
            "bad_key": BAD_KEY,
        }[caller]

    @property
    def tokens(self) -> list[str]:
        return [
            c.headers["Authorization"].removeprefix("Bearer ") for c in (self.owner, self.other, self.admin)
        ]

    # fresh objects of A
    def succeeded_job(self) -> str:
        job = self.service.submit(self.owner)
        events = [
            ("state", {"state": "running"}),
            ("log", {"message": "epoch 1 done"}),
            ("metrics", {"epoch": 1, "loss": 0.5, "accuracy": 0.8}),
        ]
        self.service.worker_runs(job["id"], events=events, finish="succeeded")
        masks = {"fc.small": np.tile(np.array([1, 1, 0, 0], bool), (4, 2))}
        self.service.add_artifact(job["id"], "masks.safetensors", masks_file(masks))
        self.service.add_artifact(job["id"], "model.nm.safetensors", b"weights")
        self.service.add_artifact(job["id"], "manifest.json", b"{}", "application/json")
        self.service.add_artifact(
            job["id"], "speedup_report.json", json.dumps(REPORT).encode(), "application/json"
        )
        return str(job["id"])

    def queued_job(self) -> str:
        return str(self.service.submit(self.owner)["id"])

    def failed_job(self) -> str:
        job = self.service.submit(self.owner)
        self.service.worker_runs(job["id"], finish="failed")
        return str(job["id"])

    def benchmark_job(self, *, report: bool = True) -> str:
        response = self.service.client.post(
            "/v1/benchmarks", json={"source": {"job_id": self.ids["job"]}}, headers=self.owner.headers
        )
        assert response.status_code == 201, response.text
        job_id = str(response.json()["id"])
        if report:
            self.service.worker_runs(job_id, events=[("log", {"message": "timing"})], finish="succeeded")
            self.service.add_artifact(
                job_id, "speedup_report.json", json.dumps(REPORT).encode(), "application/json"
            )
        return job_id

    def failed_benchmark_job(self) -> str:
        job_id = self.benchmark_job(report=False)
        self.service.worker_runs(job_id, finish="failed")
        return job_id

    def upload(self, kind: str) -> str:
        filename, data, form = {
            "datasets": ("d.npz", npz_bytes(), {"format": "npz"}),
            "checkpoints": ("c.safetensors", checkpoint_bytes(), {}),
            "hf-models": ("m.zip", zip_of(hand_made_model()), {}),
        }[kind]
        response = self.service.client.post(
            f"/v1/{kind}",
            files={"file": (filename, data, "application/octet-stream")},
            data=form,
            headers=self.owner.headers,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def dataset(self) -> str:
        return self.upload("datasets")

    def checkpoint(self) -> str:
        return self.upload("checkpoints")

    def hf_model(self) -> str:
        return self.upload("hf-models")


@pytest.fixture
def world(service: Service) -> World:
    w = World(service, service.caller("a"), service.caller("b"), service.caller("root", admin=True))
    w.ids["job"] = w.succeeded_job()
    w.ids["benchmark"] = w.benchmark_job()
    w.ids["dataset"] = w.dataset()
    w.ids["checkpoint"] = w.checkpoint()
    w.ids["hf_model"] = w.hf_model()
    return w


# -- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One route applied to one kind of object.

    ``make`` names the World factory of a fresh object for each caller when the route changes it (so
    every caller meets the object in the same state); otherwise the shared object of ``kind`` is used.
    ``ok`` is what the owner and the admin get; ``after`` checks (with the owner's key) that B's
    refused attempt changed nothing.
    """

    method: str
    route: str
    kind: str
    ok: int
    make: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    public_catalog: bool = False  # the same for every owner (not an owned object)

    @property
    def id(self) -> str:
        return f"{self.method} {self.route} [{self.kind}]"


def _job_cases(kind: str, fresh: dict[str, str], extra: list[Case]) -> list[Case]:
    return [
        Case("GET", "/v1/jobs/{job_id}", kind, 200),
        Case("POST", "/v1/jobs/{job_id}/cancel", kind, 202, make=fresh["queued"]),
        Case("POST", "/v1/jobs/{job_id}/retry", kind, 202, make=fresh["failed"]),
        Case("GET", "/v1/jobs/{job_id}/events", kind, 200, query={"follow": "false"}),
        Case("GET", "/v1/jobs/{job_id}/metrics", kind, 200),
        Case("GET", "/v1/jobs/{job_id}/logs", kind, 200),
        Case("GET", "/v1/jobs/{job_id}/artifacts", kind, 200),
        Case("GET", "/v1/jobs/{job_id}/report", kind, 200),
        *extra,
    ]


OBJECT_CASES: list[Case] = [
    *_job_cases(
        "job",
        {"queued": "queued_job", "failed": "failed_job"},
        [
            Case(
                "GET",
                "/v1/jobs/{job_id}/artifacts/{name:path}",
                "job",
                200,
                params={"name": "model.nm.safetensors"},
            ),
            Case("GET", "/v1/jobs/{job_id}/masks", "job", 200),
            Case("GET", "/v1/jobs/{job_id}/masks/{layer}", "job", 200, params={"layer": "fc.small"}),
        ],
    ),
    *_job_cases(
        "benchmark",
        {"queued": "benchmark_job_queued", "failed": "failed_benchmark_job"},
        [
            Case(
                "GET",
                "/v1/jobs/{job_id}/artifacts/{name:path}",
                "benchmark",
                200,
                params={"name": "speedup_report.json"},
            ),
        ],
    ),
    Case("GET", "/v1/datasets/{dataset_id}", "dataset", 200),
    Case("DELETE", "/v1/datasets/{dataset_id}", "dataset", 204, make="dataset"),
    Case("GET", "/v1/checkpoints/{checkpoint_id}", "checkpoint", 200),
    Case("DELETE", "/v1/checkpoints/{checkpoint_id}", "checkpoint", 204, make="checkpoint"),
    Case("GET", "/v1/hf-models/{model_id}", "hf_model", 200),
    Case("DELETE", "/v1/hf-models/{model_id}", "hf_model", 204, make="hf_model"),
    Case("GET", "/v1/models/{name}", "model", 200, params={"name": "lenet5"}, public_catalog=True),
]

# Routes without a path parameter: (method, route) -> what A gets with a valid key.
COLLECTION_ROUTES: dict[tuple[str, str], int] = {
    ("GET", "/v1/jobs"): 200,
    ("POST", "/v1/jobs"): 201,
    ("POST", "/v1/benchmarks"): 201,
    ("GET", "/v1/datasets"): 200,
    ("POST", "/v1/datasets"): 201,
    ("GET", "/v1/checkpoints"): 200,
    ("POST", "/v1/checkpoints"): 201,
    ("GET", "/v1/hf-models"): 200,
    ("POST", "/v1/hf-models"): 201,
    ("GET", "/v1/models"): 200,
}

# Outside /v1, without a key by design: operations probes, the dashboard page, its static files, the docs.
PUBLIC_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "/healthz",
    ("GET", "/readyz"): "/readyz",
    ("GET", "/metrics"): "/metrics",
    ("GET", "/"): "/",
    ("GET", "/openapi.json"): "/openapi.json",
    ("GET", "/docs"): "/docs",
    ("GET", "/docs/oauth2-redirect"): "/docs/oauth2-redirect",
    ("GET", "/redoc"): "/redoc",
    ("MOUNT", "/static"): "/static/favicon.svg",
    ("MOUNT", "/docs-assets"): "/docs-assets/swagger-ui.css",
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers flattened; HEAD is implied."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        methods = route.methods
        if not methods:  # a mount
            found.add(("MOUNT", str(route.path)))
            continue
        found.update((method, str(route.path)) for method in methods if method != "HEAD")
    return found


def test_every_route_is_in_the_matrix(service: Service) -> None:
    routes = app_routes(service.app)
    assert len(routes) > 20, routes  # the flattening found the included routers
    object_routes = {(case.method, case.route) for case in OBJECT_CASES}
    tabled = object_routes | set(COLLECTION_ROUTES) | set(PUBLIC_ROUTES)
    missing = sorted(routes - tabled)
    assert not missing, f"routes missing from the isolation matrix: {missing}"
    stale = sorted(tabled - routes)
    assert not stale, f"matrix entries for routes the app no longer has: {stale}"
    with_params = {r for r in routes if r[1].startswith("/v1") and "{" in r[1]}
    assert with_params <= object_routes, sorted(with_params - object_routes)
    for method, path in routes:  # nothing under /v1 is public
        assert not path.startswith("/v1") or (method, path) not in PUBLIC_ROUTES


# -- the checks ------------------------------------------------------------------------------------------


def envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["code"] == code, error
    assert error["request_id"] and error["request_id"] == response.headers["X-Request-ID"]
    return error


def assert_no_key_in(response: Any, tokens: list[str]) -> None:
    exposed = response.content.decode("latin-1") + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for token in tokens:
        assert token not in exposed, f"an API key leaked in {response.request.method} {response.request.url}"
        assert token[-16:] not in exposed  # not even its secret part


def url_for(case: Case, object_id: str) -> str:
    path = case.route.replace("{name:path}", "{name}")
    values = {**case.params}
    for param in ("job_id", "dataset_id", "checkpoint_id", "model_id"):
        values[param] = object_id
    return path.format(**values)


def object_for(world: World, case: Case, caller: str) -> str:
    if case.public_catalog:
        return ""
    if case.make is None:
        return world.ids[case.kind]
    if case.make == "benchmark_job_queued":
        return world.benchmark_job(report=False)
    make: Callable[[], str] = getattr(world, case.make)
    return make()


def unchanged(world: World, case: Case, object_id: str, before: dict[str, Any]) -> None:
    """B's refused attempt left A's object as it was."""
    collection = {
        "job": "jobs",
        "benchmark": "jobs",
        "dataset": "datasets",
        "checkpoint": "checkpoints",
        "hf_model": "hf-models",
    }
    if case.kind not in collection:
        return
    response = world.service.client.get(
        f"/v1/{collection[case.kind]}/{object_id}", headers=world.owner.headers
    )
    assert response.status_code == 200, response.text
    after = response.json()
    for key in ("state", "cancel_requested", "attempt", "updated_at", "sha256"):
        assert after.get(key) == before.get(key), (case.id, key)


@pytest.mark.parametrize("case", OBJECT_CASES, ids=lambda c: c.id)
def test_object_routes_by_caller(world: World, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = world.service.client
    for caller in CALLERS:
        object_id = object_for(world, case, caller)
        url = url_for(case, object_id)
        headers = world.headers(caller)
        before: dict[str, Any] = {}
        if caller == "other" and not case.public_catalog:
            collection = {"dataset": "datasets", "checkpoint": "checkpoints", "hf_model": "hf-models"}.get(
                case.kind, "jobs"
            )
            before = client.get(f"/v1/{collection}/{object_id}", headers=world.owner.headers).json()
        response = client.request(case.method, url, params=case.query, headers=headers)
        assert_no_key_in(response, world.tokens)

        if caller in ("no_key", "bad_key"):
            envelope(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"] == "Bearer"
        elif caller in ("owner", "admin") or case.public_catalog:
            assert response.status_code == case.ok, (caller, case.id, response.text)
        else:
            error = envelope(response, 404, "not_found")
            # Exactly what an id that does not exist gets: nothing tells the two apart.
            ghost = uuid.uuid4().hex
            missing = client.request(case.method, url_for(case, ghost), params=case.query, headers=headers)
            ghost_error = envelope(missing, 404, "not_found")
            assert error["message"] == ghost_error["message"].replace(ghost, object_id)
            assert error["details"] == ghost_error["details"]
            unchanged(world, case, object_id, before)
    for token in world.tokens:
        assert token not in caplog.text


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


def test_collection_routes_by_caller(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = world.service.client
    uploads = {
        "/v1/datasets": {"files": {"file": ("d.npz", npz_bytes())}, "data": {"format": "npz"}},
        "/v1/checkpoints": {"files": {"file": ("c.safetensors", checkpoint_bytes())}},
        "/v1/hf-models": {"files": {"file": ("m.zip", zip_of(hand_made_model()))}},
    }
    bodies = {
        "/v1/jobs": {"json": digits_spec()},
        "/v1/benchmarks": {"json": {"source": {"job_id": world.ids["job"]}}},
    }
    responses = []
    for (method, route), ok in COLLECTION_ROUTES.items():
        kwargs: dict[str, Any] = uploads.get(route, {}) if method == "POST" else {}
        kwargs = {**kwargs, **(bodies.get(route, {}) if method == "POST" else {})}
        for caller in ("no_key", "bad_key"):
            response = client.request(method, route, headers=world.headers(caller), **kwargs)
            envelope(response, 401, "unauthorized")
            responses.append(response)
        response = client.request(method, route, headers=world.owner.headers, **kwargs)
        assert response.status_code == ok, (route, response.text)
        responses.append(response)

    # Lists: A sees its own, B nothing of A's, the admin everything.
    for kind, collection in (
        ("job", "jobs"),
        ("dataset", "datasets"),
        ("checkpoint", "checkpoints"),
        ("hf_model", "hf-models"),
    ):
        mine = world.ids[kind]
        listed = {
            caller: client.get(f"/v1/{collection}", headers=world.headers(caller))
            for caller in ("owner", "other", "admin")
        }
        responses.extend(listed.values())
        assert mine in _ids(listed["owner"]) and mine in _ids(listed["admin"])
        assert _ids(listed["other"]) == set()
    assert world.ids["benchmark"] in _ids(client.get("/v1/jobs", headers=world.admin.headers))

    # References to A's objects from B's submits are refused exactly like ids that do not exist.
    ghost = uuid.uuid4().hex
    for body_of in (
        lambda ref: digits_spec(dataset={"source": "npz", "path": ref}),
        lambda ref: digits_spec(model={"architecture": "lenet5", "checkpoint": ref}),
    ):
        theirs = client.post("/v1/jobs", json=body_of(world.ids["dataset"]), headers=world.other.headers)
        nothing = client.post("/v1/jobs", json=body_of(ghost), headers=world.other.headers)
        responses += [theirs, nothing]
        a, b = envelope(theirs, 422, "validation_error"), envelope(nothing, 422, "validation_error")
        assert json.dumps(a["details"]).replace(world.ids["dataset"], ghost) == json.dumps(b["details"])
    model_spec = lambda ref: digits_spec(model={"source": "huggingface", "path": ref})  # noqa: E731
    theirs = client.post("/v1/jobs", json=model_spec(world.ids["hf_model"]), headers=world.other.headers)
    nothing = client.post("/v1/jobs", json=model_spec(ghost), headers=world.other.headers)
    responses += [theirs, nothing]
    a, b = envelope(theirs, 422, "validation_error"), envelope(nothing, 422, "validation_error")
    assert json.dumps(a["details"]).replace(world.ids["hf_model"], ghost) == json.dumps(b["details"])
    for ref in (world.ids["job"], ghost):
        response = client.post(
            "/v1/benchmarks", json={"source": {"job_id": ref}}, headers=world.other.headers
        )
        error = envelope(response, 422, "validation_error")
        assert json.dumps(error["details"]).replace(ref, "X") == json.dumps(
            envelope(
                client.post(
                    "/v1/benchmarks", json={"source": {"job_id": ghost}}, headers=world.other.headers
                ),
                422,
                "validation_error",
            )["details"]
        ).replace(ghost, "X")
        responses.append(response)

    for response in responses:
        assert_no_key_in(response, world.tokens)
    for token in world.tokens:
        assert token not in caplog.text


def test_public_routes_need_no_key_and_show_none(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for url in PUBLIC_ROUTES.values():
        for caller in CALLERS:
            response = world.service.client.get(url, headers=world.headers(caller))
            assert response.status_code == 200, (url, caller, response.status_code)
            assert_no_key_in(response, world.tokens)
    for token in world.tokens:
        assert token not in caplog.text
