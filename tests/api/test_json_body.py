"""JSON request bodies: the key is checked before a byte of body is read, and bodies are capped while
they stream in (declared, chunked or with a lying Content-Length) with a 413 in the error envelope.

The streaming cases drive the ASGI app directly with a body that counts the chunks the app pulled: the
test client reads a request body whole before the app sees it, so it cannot show what was left unread.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.api.conftest import AppFactory, Service, digits_spec

CHUNK = b"[" + b" " * ((1 << 20) - 1)  # 1 MiB that would start a (hostile) JSON document
LIMIT = 64 * 1024


class CountingBody:
    """``chunks`` pieces of CHUNK as ASGI ``http.request`` messages; ``pulled`` counts what the app read."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks
        self.pulled = 0

    async def receive(self) -> dict[str, Any]:
        if self.left == 0:
            await anyio.sleep_forever()  # the request is over: nothing more to read until the app answers
        self.left -= 1
        self.pulled += 1
        return {"type": "http.request", "body": CHUNK, "more_body": self.left > 0}


def asgi_post(
    app: FastAPI, path: str, body: CountingBody, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST through the ASGI interface; returns status, headers and the decoded JSON answer."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }

    async def call() -> None:
        with anyio.fail_after(30):
            await app(scope, body.receive, send)

    anyio.run(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], answer_headers, json.loads(payload)


@pytest.fixture
def capped(app_factory: AppFactory) -> Service:
    return app_factory(max_json_body_bytes=LIMIT)


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/benchmarks"])
def test_an_unauthenticated_body_is_refused_before_it_is_read(capped: Service, path: str) -> None:
    body = CountingBody(300)  # 300 MB, declared and then sent
    status, _, answer = asgi_post(
        capped.app, path, body, {"Content-Type": "application/json", "Content-Length": str(300 * len(CHUNK))}
    )
    assert status == 401, answer
    assert answer["error"]["code"] == "unauthorized"
    assert body.pulled == 0, f"the app read {body.pulled} MiB of an unauthenticated body"


def test_an_unauthenticated_chunked_body_is_refused_before_it_is_read(capped: Service) -> None:
    body = CountingBody(300)
    status, _, _ = asgi_post(capped.app, "/v1/jobs", body, {"Content-Type": "application/json"})
    assert status == 401
    assert body.pulled == 0


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/benchmarks"])
def test_a_declared_body_over_the_cap_is_413_before_it_is_read(capped: Service, path: str) -> None:
    headers = {
        **capped.caller().headers,
        "Content-Type": "application/json",
        "Content-Length": str(300 * len(CHUNK)),
    }
    body = CountingBody(300)
    status, answer_headers, answer = asgi_post(capped.app, path, body, headers)
    assert status == 413, answer
    error = answer["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == "payload_too_large"
    assert f"limit of {LIMIT} bytes" in error["message"]
    assert error["details"] == {"max_json_body_bytes": LIMIT}
    assert answer_headers["connection"] == "close"
    assert body.pulled == 0


@pytest.mark.parametrize(
    "content_length", [None, "10"], ids=["chunked-without-content-length", "content-length-lies"]
)
def test_a_streamed_body_over_the_cap_is_cut_off_with_413(
    capped: Service, content_length: str | None
) -> None:
    headers = {**capped.caller().headers, "Content-Type": "application/json"}
    if content_length is not None:
        headers["Content-Length"] = content_length
    body = CountingBody(300)
    status, _, answer = asgi_post(capped.app, "/v1/jobs", body, headers)
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"
    assert body.pulled == 1, "the body was read past the first chunk over the cap"


def test_a_body_over_the_cap_through_the_client_is_413(capped: Service) -> None:
    alice = capped.caller()
    spec = digits_spec(name="x" * LIMIT)
    response = capped.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert capped.client.post("/v1/jobs", json=digits_spec(), headers=alice.headers).status_code == 201


def test_a_deeply_nested_body_is_422_naming_the_depth(service: Service) -> None:
    alice = service.caller()
    response = service.client.post(
        "/v1/jobs",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    problem = response.json()["error"]["details"][0]
    assert problem["field"] == "body"
    assert "nests 100000 levels deep, over the limit of 64" in problem["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "the body is empty"), (b"{not json", "not valid JSON"), (b"\xff\xfe{}", "not valid JSON")],
)
def test_an_empty_or_malformed_body_is_422(service: Service, content: bytes, message: str) -> None:
    alice = service.caller()
    response = service.client.post(
        "/v1/jobs", content=content, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["details"][0]["message"]


def test_a_bad_benchmark_spec_still_names_each_field(service: Service) -> None:
    alice = service.caller()
    response = service.client.post(
        "/v1/benchmarks", json={"source": {"job_id": 5}, "extra": 1}, headers=alice.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == [
        {"field": "source.job_id", "message": "Input should be a valid string", "location": "body"},
        {"field": "extra", "message": "Extra inputs are not permitted", "location": "body"},
    ]


def test_no_route_lets_fastapi_read_a_body_before_authentication(service: Service) -> None:
    """FastAPI reads ``Body()`` parameters before any dependency runs: JSON routes take ``JsonBody``."""
    readers = [
        route.path
        for route in service.app.routes
        if isinstance(route, APIRoute) and route.body_field is not None
    ]
    assert readers == []


def test_the_submit_routes_document_their_body_schema(service: Service) -> None:
    schema = service.client.get("/openapi.json").json()
    for path, name in (("/v1/jobs", "JobSpec"), ("/v1/benchmarks", "BenchmarkJobSpec")):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert name in schema["components"]["schemas"]
