"""Property-based fuzzing of the whole OpenAPI surface with Schemathesis (Hypothesis underneath).

Every operation of ``/openapi.json`` gets generated requests (valid and invalid parameters, bodies,
headers) sent in-process through ASGI with a valid key. Half of the generated object ids are swapped for
real ones of the caller (a succeeded job with artifacts, masks, a report and events; a dataset; a
checkpoint), so the handlers are reached, not only the 404 of an unknown id. Checked on every response:

* never a 5xx (Schemathesis' ``not_a_server_error``);
* every 4xx/5xx body is the error envelope ``{"error": {"code", "message", "details", "request_id"}}``;
* status codes, content types, headers and 2xx bodies conform to the schema (Schemathesis' response
  checks).

The SSE route is fuzzed with ``follow=false`` (with ``follow=true`` it streams until the job finishes).

``FUZZ_EXAMPLES`` (environment, default 25) sets the examples per operation and generation mode
(positive: schema-valid requests; negative: schema-violating ones); ``-s`` prints the requests sent per
operation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from safetensors.numpy import save
from schemathesis import Case
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from api.schemas import EventOut
from tests.api.conftest import Service

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SSE_PATH = "/v1/jobs/{job_id}/events"


def masks_file() -> bytes:
    mask = np.tile(np.array([1, 1, 0, 0], bool), (4, 2))
    shapes = {"fc.small": list(mask.shape)}
    return save(
        {"fc.small": np.packbits(mask.reshape(-1))},
        metadata={"format": "lbc.masks/1", "bit_order": "big", "shapes": json.dumps(shapes)},
    )


# The smallest report that conforms to jobs/speedup_report.schema.json (what a CPU benchmark with no layer
# timings writes), so that the 200 of GET /report is checked against its documented schema.
REPORT: dict[str, Any] = {
    "schema": "lbc.speedup-report/3",
    "created_at": "2026-01-01T00:00:00Z",
    "model": {"name": None, "class": "LeNet5", "pattern": "2:4", "input_shape": [1, 28, 28]},
    "environment": {
        "device": "cpu",
        "device_name": "cpu",
        "compute_capability": None,
        "driver_version": None,
        "cuda_version": None,
        "cusparselt_version": None,
        "torch_version": "2.13.0",
        "python_version": "3.11",
        "platform": "linux",
        "backend": "none",
        "sparse_kernels": False,
        "sparse_kernel_reason": "no sparse kernel on CPU",
        "cpu_model": "cpu",
        "cpu_threads": 2,
    },
    "method": {
        "timer": "perf_counter",
        "warmup": 1,
        "repeats": 1,
        "min_repeat_ms": 1.0,
        "statistic": "median",
        "batch_sizes": [1],
        "dtypes": ["float32"],
        "min_speedup": 1.05,
        "correctness_rtol": 0.01,
        "launch": "eager",
    },
    "layers": [],
    "end_to_end": {"measurements": [], "conversions": [], "accuracy_given": None, "accuracy": []},
    "savings": {
        "params_dense": 0,
        "params_nonzero": 0,
        "sparsified_params": 0,
        "sparsified_nonzeros": 0,
        "flops_dense_per_sample": 0,
        "flops_nm_per_sample": 0.0,
        "flops_ratio": 1.0,
        "checkpoint_dense_bytes": None,
        "checkpoint_compressed_bytes": None,
        "checkpoint_ratio": None,
        "checkpoint_note": None,
        "files": [],
    },
    "summary": {
        "median_layer_speedup": None,
        "end_to_end_speedup": None,
        "layers_recommended_sparse": [],
        "layers_recommended_dense": [],
        "layers_not_applicable": [],
        "verdict": "no sparse kernel on CPU",
    },
    "notes": [],
}


@pytest.fixture
def fuzz_target(service: Service) -> tuple[Service, dict[str, str], dict[str, str]]:
    """The app, a valid key's headers, and real ids of that owner's objects."""
    caller = service.caller("fuzz")
    job = service.submit(caller)
    service.worker_runs(
        job["id"],
        events=[("log", {"message": "epoch 1"}), ("metrics", {"epoch": 1, "loss": 0.5})],
        finish="succeeded",
    )
    service.add_artifact(job["id"], "masks.safetensors", masks_file())
    service.add_artifact(job["id"], "model.nm.safetensors", b"weights")
    service.add_artifact(job["id"], "speedup_report.json", json.dumps(REPORT).encode(), "application/json")
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((12, 8, 8), np.uint8), y=np.arange(12) % 4)
    dataset = service.client.post(
        "/v1/datasets",
        files={"file": ("d.npz", buffer.getvalue())},
        data={"format": "npz"},
        headers=caller.headers,
    )
    checkpoint = service.client.post(
        "/v1/checkpoints",
        files={"file": ("c.safetensors", save({"w": np.zeros((4, 4), np.float32)}))},
        headers=caller.headers,
    )
    assert dataset.status_code == checkpoint.status_code == 201
    ids = {
        "job_id": job["id"],
        "dataset_id": dataset.json()["id"],
        "checkpoint_id": checkpoint.json()["id"],
        "name": "model.nm.safetensors",
        "layer": "fc.small",
    }
    return service, caller.headers, ids


@schemathesis.check
def error_envelope(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """Every error is the one envelope, with the request id of its X-Request-ID header."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["request_id"] == response.headers["x-request-id"][0], error
    return None


def sse_events_are_event_out(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """The SSE stream, checked event by event: every ``data:`` line is an EventOut (id, kind, ...)."""
    if response.status_code != 200:
        return None
    text = response.content.decode()
    assert text.startswith("retry: 3000\n\n"), text[:200]
    for block in text.split("\n\n")[1:]:
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        EventOut.model_validate_json(fields["data"])
        assert fields["id"] == str(json.loads(fields["data"])["id"])
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    error_envelope,
]


def use_real_ids(case: Case, ids: dict[str, str]) -> None:
    """Swap about half of the generated path parameters for the caller's real objects (deterministic in
    the generated value, so Hypothesis replays and shrinks the same case)."""
    params = case.path_parameters or {}
    for name, value in list(params.items()):
        if name in ids and hashlib.sha256(repr(value).encode()).digest()[0] % 2 == 0:
            params[name] = ids[name]


def test_fuzz_every_operation(fuzz_target: tuple[Service, dict[str, str], dict[str, str]]) -> None:
    """Each operation, positive then negative generation, ``FUZZ_EXAMPLES`` examples each; every failing
    operation is reported (not only the first)."""
    service, headers, ids = fuzz_target
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    requests: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    reached: Counter[str] = Counter()  # 2xx per operation: the handler was reached with a real object
    failures: dict[str, str] = {}
    unsatisfiable: list[str] = []

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Case) -> None:
                use_real_ids(case, ids)
                if case.path == SSE_PATH:
                    case.query = {**(case.query or {}), "follow": "false"}
                requests[case.operation.label] += 1
                if case.path == SSE_PATH:
                    # Schemathesis reads a text/event-stream `schema` as the schema of each event; under
                    # OpenAPI 3.1 (what FastAPI emits) it is the schema of the whole stream, a string. The
                    # events are checked against EventOut instead.
                    response = case.call_and_validate(
                        headers=headers,
                        checks=[*CHECKS, sse_events_are_event_out],
                        excluded_checks=[response_schema_conformance],
                    )
                else:
                    response = case.call_and_validate(headers=headers, checks=CHECKS)
                statuses[f"{response.status_code // 100}xx"] += 1
                reached[case.operation.label] += response.status_code < 300

            try:
                run()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Unsatisfiable:
                # Negative mode for an operation without parameters or body: nothing can be made invalid.
                assert mode is GenerationMode.NEGATIVE and not operation.definition.raw.get("parameters")
                unsatisfiable.append(operation.label)
            except BaseException as exc:  # Hypothesis raises groups; collect every operation's, fail once
                failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"[:3000]

    total = sum(requests.values())
    print(
        f"\nfuzzed {len(operations)} operations, {total} requests, by status: {dict(sorted(statuses.items()))}"
    )
    print("  requests   2xx  operation")
    for label, count in sorted(requests.items()):
        print(f"  {count:8d}  {reached[label]:4d}  {label}")
    print(f"no invalid request exists for: {', '.join(sorted(unsatisfiable))}")
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


# -- the defects the fuzzer found, pinned ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/benchmarks"])
def test_an_undecodable_json_body_is_a_422_not_an_undocumented_400(service: Service, route: str) -> None:
    caller = service.caller()
    response = service.client.post(
        route,
        content=b"b\xff\x0c}|",
        headers={**caller.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    (problem,) = error["details"]
    assert (problem["field"], problem["location"]) == ("body", "body")
    assert problem["message"].startswith("the body is not valid JSON text")


@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize(
    ("path", "params", "headers"),
    [
        ("logs", {"after": str(2**63)}, {}),
        ("events", {"after": str(2**63), "follow": "false"}, {}),
        ("events", {"follow": "false"}, {"Last-Event-ID": str(2**70)}),
    ],
    ids=["logs-after", "events-after", "events-last-event-id"],
)
def test_event_ids_beyond_64_bits_are_a_422_not_a_database_overflow(
    service: Service, path: str, params: dict[str, str], headers: dict[str, str]
) -> None:
    caller = service.caller()
    job = service.submit(caller)
    response = service.client.get(
        f"/v1/jobs/{job['id']}/{path}", params=params, headers={**caller.headers, **headers}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    largest = service.client.get(
        f"/v1/jobs/{job['id']}/{path}",
        params={**params, "after": str(2**63 - 1)} if "after" in params else params,
        headers={**caller.headers, **({"Last-Event-ID": str(2**63 - 1)} if headers else {})},
    )
    assert largest.status_code == 200, largest.text
