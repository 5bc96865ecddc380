"""Speedup reports over HTTP: GET /v1/jobs/{id}/report, and benchmark jobs submitted with POST /v1/benchmarks
(validation, ownership, routing to the GPU or CPU queue)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs import repository
from jobs.db import transaction
from jobs.models import Checkpoint, Job
from tests.api.conftest import AppFactory, Caller, Service, digits_spec

BOTH = pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)

REPORT = {"schema": "lbc.speedup-report/3", "summary": {"median_layer_speedup": None}, "notes": ["..."]}


def finished_job(service: Service, caller: Caller, *, exports: bool = True, **spec: Any) -> dict[str, Any]:
    """A succeeded sparsification job (a worker played through the repository), with its exported model."""
    job = service.submit(caller, digits_spec(**spec))
    service.worker_runs(job["id"], finish="succeeded")
    if exports:
        service.add_artifact(job["id"], "manifest.json", b"{}", "application/json")
        service.add_artifact(job["id"], "model.nm.safetensors", b"weights")
    return job


def upload_checkpoint(service: Service, caller: Caller) -> str:
    """A checkpoint row as POST /v1/checkpoints leaves it (the upload route is tested elsewhere)."""
    stored = service.store.put_bytes(f"checkpoints/{caller.owner_id}/c.safetensors", b"weights")
    with transaction(service.sessions) as session:
        checkpoint = Checkpoint(
            owner_id=caller.owner_id,
            name="c",
            format="safetensors",
            filename="c.safetensors",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
        )
        session.add(checkpoint)
        session.flush()
        return checkpoint.id


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return {p["field"]: p["message"] for p in error["details"]}


def post(service: Service, caller: Caller, body: Any, **headers: str) -> Any:
    return service.client.post("/v1/benchmarks", json=body, headers={**caller.headers, **headers})


# -- GET /v1/jobs/{id}/report -------------------------------------------------------------------------------
@BOTH
def test_report_returns_the_artifact_to_its_owner_only(service: Service) -> None:
    alice, bob = service.caller("alice"), service.caller("bob")
    job = finished_job(service, alice)
    payload = json.dumps(REPORT).encode()
    service.add_artifact(job["id"], "speedup_report.json", payload, "application/json")

    response = service.client.get(f"/v1/jobs/{job['id']}/report", headers=alice.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == REPORT and response.content == payload
    etag = response.headers["ETag"]
    again = service.client.get(
        f"/v1/jobs/{job['id']}/report", headers={**alice.headers, "If-None-Match": etag}
    )
    assert again.status_code == 304
    other = service.client.get(f"/v1/jobs/{job['id']}/report", headers=bob.headers)
    assert other.status_code == 404 and other.json()["error"]["message"] == f"job {job['id']} not found"
    detail = service.client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert detail["links"]["report"] == f"/v1/jobs/{job['id']}/report"


def _no_report(service: Service, caller: Caller, job_id: str) -> dict[str, Any]:
    response = service.client.get(f"/v1/jobs/{job_id}/report", headers=caller.headers)
    assert response.status_code == 404, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"].startswith(f"job {job_id} has no speedup report: ")
    assert error["details"]["job_id"] == job_id
    return error


def test_a_job_without_a_report_is_a_404_that_says_why(service: Service) -> None:
    alice = service.caller()
    queued = service.submit(alice)
    error = _no_report(service, alice, queued["id"])
    assert "not yet: the job is queued" in error["message"] and error["details"]["state"] == "queued"

    running = service.submit(alice)
    service.worker_runs(running["id"])
    assert "not yet: the job is running" in _no_report(service, alice, running["id"])["message"]

    failed = service.submit(alice)
    service.worker_runs(failed["id"], finish="failed")
    assert "the job failed (spec_error)" in _no_report(service, alice, failed["id"])["message"]

    disabled = finished_job(service, alice, benchmark={"enabled": False})
    assert "benchmark.enabled false" in _no_report(service, alice, disabled["id"])["message"]

    broken = service.submit(alice)
    with transaction(service.sessions) as session:
        repository.claim_job(session, broken["id"], "test-worker", 60)
    with transaction(service.sessions) as session:
        speedup = {"error_type": "benchmark_error", "message": "ValueError: CUDA is not available"}
        repository.finish_success(session, broken["id"], "test-worker", [], {"speedup": speedup})
    message = _no_report(service, alice, broken["id"])["message"]
    assert message.endswith("benchmarking failed: ValueError: CUDA is not available")


def test_a_report_whose_stored_file_is_gone_is_a_404(service: Service) -> None:
    alice = service.caller()
    job = finished_job(service, alice)
    service.add_artifact(job["id"], "speedup_report.json", b"{}", "application/json")
    service.store.delete(f"jobs/{job['id']}/artifacts/speedup_report.json")

    response = service.client.get(f"/v1/jobs/{job['id']}/report", headers=alice.headers)
    assert response.status_code == 404
    assert "stored content" in response.json()["error"]["message"]


# -- POST /v1/benchmarks ------------------------------------------------------------------------------------
@BOTH
def test_benchmark_of_a_finished_job_is_queued_for_the_gpu_workers(service: Service) -> None:
    alice = service.caller()
    source = finished_job(service, alice)
    assert service.queued_messages("gpu") == [source["id"]]

    response = post(service, alice, {"name": "h100 report", "source": {"job_id": source["id"]}})

    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert (job["kind"], job["method"], job["pattern"], job["architecture"]) == (
        "benchmark",
        "benchmark",
        "2:4",
        "lenet5",
    )
    assert (job["state"], job["queue"], job["name"], job["checkpoint_id"]) == (
        "queued",
        "gpu",
        "h100 report",
        None,
    )
    assert job["spec"]["source"]["job_id"] == source["id"]
    assert job["spec"]["benchmark"] == {
        "enabled": True,
        "device": None,
        "batch_sizes": [1, 64, 256],
        "dtypes": None,
        "launch": "eager",
    }
    assert service.queued_messages("gpu") == [job["id"]]
    assert service.queued_messages("cpu") == []

    listed = service.client.get("/v1/jobs", params={"kind": "benchmark"}, headers=alice.headers).json()
    assert [item["id"] for item in listed["items"]] == [job["id"]]
    sparsify = service.client.get("/v1/jobs", params={"kind": "sparsify"}, headers=alice.headers).json()
    assert [item["id"] for item in sparsify["items"]] == [source["id"]]
    assert sparsify["items"][0]["kind"] == "sparsify"
    by_method = service.client.get("/v1/jobs", params={"method": "benchmark"}, headers=alice.headers).json()
    assert [item["id"] for item in by_method["items"]] == [job["id"]]


@pytest.mark.parametrize(
    ("benchmark", "limits", "queue"),
    [
        ({"device": "cpu"}, {}, "cpu"),
        ({"device": "cuda"}, {}, "gpu"),
        ({"device": "cuda:1"}, {}, "gpu"),
        ({"device": "auto"}, {}, "gpu"),
        ({}, {}, "gpu"),
        ({"device": "cpu"}, {"queue": "big-cpus"}, "big-cpus"),
        ({"device": "cuda"}, {"queue": "h100"}, "h100"),
    ],
)
def test_benchmark_jobs_are_routed_by_device(
    app_factory: AppFactory, benchmark: dict[str, Any], limits: dict[str, Any], queue: str
) -> None:
    service = app_factory(gpu_queues="gpu,h100", cpu_queues="cpu,big-cpus")
    alice = service.caller()
    checkpoint_id = upload_checkpoint(service, alice)
    body = {
        "source": {"checkpoint_id": checkpoint_id, "architecture": "lenet5"},
        "benchmark": benchmark,
        "limits": limits,
    }

    response = post(service, alice, body)

    assert response.status_code == 201, response.text
    job = response.json()
    assert job["queue"] == queue
    assert (job["checkpoint_id"], job["architecture"], job["pattern"]) == (checkpoint_id, "lenet5", "2:4")
    assert service.queued_messages(queue) == [job["id"]]


def test_benchmark_submit_honours_idempotency_keys(service: Service) -> None:
    alice = service.caller()
    checkpoint_id = upload_checkpoint(service, alice)
    body = {"source": {"checkpoint_id": checkpoint_id, "architecture": "mlp", "pattern": {"n": 1, "m": 4}}}

    first = post(service, alice, body, **{"Idempotency-Key": "bench-1"})
    second = post(service, alice, body, **{"Idempotency-Key": "bench-1"})

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and first.json()["pattern"] == "1:4"
    other = {**body, "benchmark": {"device": "cpu"}}
    assert post(service, alice, other, **{"Idempotency-Key": "bench-1"}).status_code == 409


@BOTH
def test_benchmark_spec_problems_are_422s_naming_their_fields(service: Service) -> None:
    alice = service.caller()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({}, "source", "required field is missing"),
        ({"source": {}}, "source", "exactly one of job_id and checkpoint_id"),
        (
            {"source": {"job_id": "a", "checkpoint_id": "b"}},
            "source",
            "exactly one of job_id and checkpoint_id",
        ),
        (
            {"source": {"job_id": "a", "architecture": "mlp"}},
            "source.architecture",
            "only used with checkpoint_id",
        ),
        ({"source": {"job_id": "a", "input_shape": [1, 8, 8]}}, "source.input_shape", "only used with"),
        ({"source": {"checkpoint_id": "a"}}, "source.architecture", "required with checkpoint_id"),
        (
            {"source": {"checkpoint_id": "a", "architecture": "resnet9000"}},
            "source.architecture",
            "resnet9000",
        ),
        (
            {"source": {"checkpoint_id": "a", "architecture": "mlp", "args": {"depht": 2}}},
            "source.args.depht",
            "unknown",
        ),
        (
            {"source": {"checkpoint_id": "a", "architecture": "mlp", "pattern": {"n": 4, "m": 4}}},
            "source.pattern.n",
            "must be smaller than m (4)",
        ),
        (
            {"source": {"checkpoint_id": "a", "architecture": "mlp", "input_shape": [8, 8]}},
            "source.input_shape",
            "[C, H, W] or [F]",
        ),
        (
            {"source": {"job_id": "a"}, "benchmark": {"enabled": False}},
            "benchmark.enabled",
            "always benchmarks",
        ),
        (
            {"source": {"job_id": "a"}, "benchmark": {"batch_sizes": [0]}},
            "benchmark.batch_sizes[0]",
            "greater than",
        ),
        ({"source": {"job_id": "a"}, "benchmark": {"device": "tpu"}}, "benchmark.device", "should match"),
        ({"source": {"job_id": "a"}, "benchmark": {"dtypes": ["int4"]}}, "benchmark.dtypes[0]", ""),
        ({"source": {"job_id": "a"}, "bogus": 1}, "bogus", "xtra"),
        ({"source": {"job_id": "../etc"}}, "source.job_id", "should match"),
    ]
    for body, field, message in cases:
        found = problems(post(service, alice, body))
        assert field in found, (body, found)
        assert message in found[field], (body, found)
    assert service.queued_messages("gpu") == []
    with transaction(service.sessions) as session:
        assert session.query(Job).filter(Job.owner_id == alice.owner_id).count() == 0


@BOTH
def test_sources_of_another_owner_do_not_exist(service: Service) -> None:
    alice, mallory = service.caller("alice"), service.caller("mallory")
    malloys_job = finished_job(service, mallory)
    mallorys_checkpoint = upload_checkpoint(service, mallory)

    assert problems(post(service, alice, {"source": {"job_id": malloys_job["id"]}})) == {
        "source.job_id": f"job {malloys_job['id']} does not exist"
    }
    assert problems(post(service, alice, {"source": {"job_id": "f" * 32}})) == {
        "source.job_id": f"job {'f' * 32} does not exist"
    }
    body = {"source": {"checkpoint_id": mallorys_checkpoint, "architecture": "lenet5"}}
    assert problems(post(service, alice, body)) == {
        "source.checkpoint_id": f"checkpoint {mallorys_checkpoint} does not exist"
    }


def test_only_a_succeeded_sparsification_job_with_an_export_can_be_benchmarked(service: Service) -> None:
    alice = service.caller()
    queued = service.submit(alice)
    dense = finished_job(service, alice, sparsity={"method": "dense"})
    bare = finished_job(service, alice, exports=False)
    source = finished_job(service, alice)
    benchmark = post(service, alice, {"source": {"job_id": source["id"]}}).json()

    def message(job_id: str) -> str:
        return problems(post(service, alice, {"source": {"job_id": job_id}}))["source.job_id"]

    assert message(queued["id"]) == (
        f"job {queued['id']} is queued; only a succeeded job's exported model can be benchmarked"
    )
    assert "trained a dense baseline (method dense)" in message(dense["id"])
    assert message(bare["id"]) == f"job {bare['id']} has no exported model"
    assert (
        message(benchmark["id"]) == f"job {benchmark['id']} is a benchmark job; benchmark the job it measured"
    )


def test_openapi_documents_the_benchmark_and_report_routes(service: Service) -> None:
    schema = service.client.get("/openapi.json").json()
    submit = schema["paths"]["/v1/benchmarks"]["post"]
    body = submit["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/BenchmarkJobSpec"
    assert set(body["examples"]) == {"job", "checkpoint"}
    assert {"200", "201", "409", "422", "429"} <= set(submit["responses"])
    source = schema["components"]["schemas"]["BenchmarkSource"]
    assert {"job_id", "checkpoint_id", "architecture", "args", "pattern", "input_shape"} == set(
        source["properties"]
    )
    report = schema["paths"]["/v1/jobs/{job_id}/report"]["get"]
    assert {"200", "304", "404"} <= set(report["responses"])
    documented = report["responses"]["200"]["content"]["application/json"]["schema"]
    assert documented["properties"]["schema"] == {"const": "lbc.speedup-report/3"}
    assert "kind" in schema["components"]["schemas"]["JobSummary"]["properties"]
