"""Hostile text at every edge of the API, on SQLite and PostgreSQL alike.

A NUL character anywhere (a spec string, a free-form argument, a path id, a query parameter, a form field,
a file name) is a 422 naming the field: PostgreSQL cannot store it and answered 500, SQLite stored it.
Control and bidirectional characters in a name (job, benchmark, upload) are a 422 too: names are shown in
terminals and in the dashboard. Nothing is stored by a refused request.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from httpx import Response

from tests.api.conftest import Caller, Service, digits_spec

BOTH = pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)

ANSI_CLEAR = "\x1b]0;pwned\x07\x1b[2J"
BIDI_OVERRIDE = "invoice\u202egnp.exe"


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((12, 8, 8), np.uint8), y=np.arange(12) % 4)
    return buffer.getvalue()


def submit(spec: dict[str, Any]) -> Callable[[Service, Caller], Response]:
    return lambda service, caller: service.client.post("/v1/jobs", json=spec, headers=caller.headers)


def benchmark(body: dict[str, Any]) -> Callable[[Service, Caller], Response]:
    return lambda service, caller: service.client.post("/v1/benchmarks", json=body, headers=caller.headers)


def get(path: str, **params: str) -> Callable[[Service, Caller], Response]:
    return lambda service, caller: service.client.get(path, params=params, headers=caller.headers)


def upload(filename: str, **fields: str) -> Callable[[Service, Caller], Response]:
    def send(service: Service, caller: Caller) -> Response:
        return service.client.post(
            "/v1/datasets",
            files={"file": (filename, npz_bytes())},
            data={"format": "npz", **fields},
            headers=caller.headers,
        )

    return send


def upload_raw_file_name(filename: bytes) -> Callable[[Service, Caller], Response]:
    """A form whose file name holds raw bytes (httpx would percent-encode a NUL, a hostile client does not)."""

    def send(service: Service, caller: Caller) -> Response:
        boundary = b"hostile-boundary"
        body = b"".join(
            [
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="format"\r\n\r\nnpz\r\n',
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="',
                filename,
                b'"\r\nContent-Type: application/octet-stream\r\n\r\n',
                npz_bytes(),
                b"\r\n--" + boundary + b"--\r\n",
            ]
        )
        headers = {**caller.headers, "Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
        return service.client.post("/v1/datasets", content=body, headers=headers)

    return send


def nul_cursor() -> str:
    raw = json.dumps(["2026-01-01T00:00:00+00:00", "a\x00b"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class HostileText:
    id: str
    send: Callable[[Service, Caller], Response]
    field: str  # the field the 422 must name
    reason: str  # a word of the message


CASES = [
    # NUL: refused in any string, on both databases.
    HostileText("nul-job-name", submit(digits_spec(name="a\x00b")), "name", "NUL"),
    HostileText(
        "nul-dataset-path",
        submit(digits_spec(dataset={"source": "npz", "path": "abc\x00"})),
        "dataset.path",
        "NUL",
    ),
    HostileText(
        "nul-checkpoint-id",
        submit(digits_spec(model={"architecture": "lenet5", "checkpoint": "\x00"})),
        "model.checkpoint",
        "NUL",
    ),
    HostileText(
        "nul-in-free-form-args",
        submit(digits_spec(model={"architecture": "lenet5", "args": {"width\x00": 0.5}})),
        "model.args.width\x00",
        "NUL",
    ),
    HostileText(
        "nul-layer-glob",
        submit(digits_spec(sparsity={"layers": {"include": ["conv\x00*"]}})),
        "sparsity.layers.include[0]",
        "NUL",
    ),
    HostileText(
        "nul-benchmark-checkpoint-id",
        benchmark({"source": {"checkpoint_id": "a\x00", "architecture": "lenet5"}}),
        "source.checkpoint_id",
        "NUL",
    ),
    HostileText("nul-job-id", get("/v1/jobs/a%00b"), "job_id", "NUL"),
    HostileText("nul-dataset-id", get("/v1/datasets/%00"), "dataset_id", "NUL"),
    HostileText("nul-checkpoint-id-path", get("/v1/checkpoints/%00"), "checkpoint_id", "NUL"),
    HostileText("nul-query", get("/v1/jobs", cursor="a\x00"), "cursor", "NUL"),
    HostileText("nul-inside-the-cursor", get("/v1/jobs", cursor=nul_cursor()), "cursor", "cursor"),
    HostileText("nul-upload-name", upload("d.npz", name="a\x00"), "name", "NUL"),
    HostileText("nul-upload-file-name", upload_raw_file_name(b"d\x00.npz"), "file", "NUL"),
    HostileText("ansi-upload-file-name", upload_raw_file_name(b"d\x1b[2J.npz"), "file", "control"),
    # Control and bidirectional characters: refused in names.
    HostileText("ansi-job-name", submit(digits_spec(name=f"job{ANSI_CLEAR}")), "name", "control"),
    HostileText("bidi-job-name", submit(digits_spec(name=BIDI_OVERRIDE)), "name", "bidirectional"),
    HostileText("newline-job-name", submit(digits_spec(name="a\nb")), "name", "control"),
    HostileText(
        "ansi-benchmark-name",
        benchmark({"name": ANSI_CLEAR, "source": {"checkpoint_id": "x", "architecture": "lenet5"}}),
        "name",
        "control",
    ),
    HostileText("ansi-upload-name", upload("d.npz", name=ANSI_CLEAR), "name", "control"),
    HostileText("bidi-upload-file-name", upload(f"{BIDI_OVERRIDE}.npz"), "file", "bidirectional"),
]


@BOTH
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_text_is_a_422_naming_the_field_on_both_databases(
    service: Service, case: HostileText
) -> None:
    caller = service.caller()

    response = case.send(service, caller)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    problems = {problem["field"]: problem["message"] for problem in error["details"]}
    assert case.field in problems, error
    assert case.reason in problems[case.field] or case.reason in error["message"], error
    jobs = service.client.get("/v1/jobs", headers=caller.headers).json()["items"]
    datasets = service.client.get("/v1/datasets", headers=caller.headers).json()["items"]
    assert jobs == [] and datasets == []


@BOTH
def test_names_in_any_script_are_accepted(service: Service) -> None:
    """The rule refuses control characters, not languages: accents, CJK, emoji and RTL text pass."""
    caller = service.caller()
    name = "résumé 稀疏 ✂️ שלום"
    job = service.submit(caller, digits_spec(name=name))
    assert job["name"] == name
    stored = upload(f"{name}.npz")(service, caller)
    assert stored.status_code == 201 and stored.json()["name"] == f"{name}.npz"
