"""Health, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta

from jobs.db import transaction
from jobs.models import Job
from tests.api.conftest import AppFactory, Service


def test_healthz_needs_nothing(service: Service) -> None:
    response = service.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_store(service: Service) -> None:
    response = service.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name: part["ok"] for name, part in body["components"].items()} == {
        "broker": True,
        "database": True,
        "store": True,
    }


def test_readyz_is_503_naming_a_dead_broker(app_factory: AppFactory) -> None:
    service = app_factory(broker_url="redis://127.0.0.1:1/0")
    response = service.client.get("/readyz")
    assert response.status_code == 503
    components = response.json()["components"]
    assert components["broker"]["ok"] is False and components["broker"]["detail"]
    assert components["database"]["ok"] and components["store"]["ok"]
    assert service.client.get("/healthz").status_code == 200


def test_metrics_expose_job_gauges_durations_and_request_latency(service: Service) -> None:
    alice = service.caller()
    queued = service.submit(alice)
    service.submit(alice, {**_spec(), "limits": {"queue": "cpu"}})
    done = service.submit(alice)
    service.worker_runs(done["id"], finish="succeeded")
    with transaction(service.sessions) as session:  # make the run take 90 s
        job = session.get(Job, done["id"])
        assert job is not None and job.finished_at is not None
        job.started_at = job.finished_at - timedelta(seconds=90)
    service.client.get(f"/v1/jobs/{queued['id']}", headers=alice.headers)

    response = service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'lbc_jobs{state="queued"} 2.0' in text
    assert 'lbc_jobs{state="succeeded"} 1.0' in text
    assert 'lbc_jobs{state="failed"} 0.0' in text
    assert 'lbc_queue_depth{queue="gpu"} 1.0' in text
    assert 'lbc_queue_depth{queue="cpu"} 1.0' in text
    assert 'lbc_job_duration_seconds_bucket{le="60.0",state="succeeded"} 0.0' in text
    assert 'lbc_job_duration_seconds_bucket{le="300.0",state="succeeded"} 1.0' in text
    assert 'lbc_job_duration_seconds_count{state="succeeded"} 1.0' in text
    assert "lbc_metrics_database_up 1.0" in text
    assert (
        'lbc_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{job_id}",status="200"} 1.0'
        in text
    )
    assert 'route="/v1/jobs",status="201"' in text


def _spec() -> dict[str, object]:
    from tests.api.conftest import digits_spec

    return digits_spec()


def test_openapi_documents_every_route_with_the_error_envelope(service: Service) -> None:
    schema = service.client.get("/openapi.json").json()
    assert "JobSpec" in schema["components"]["schemas"]
    assert "SparsitySpec" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    submit = schema["paths"]["/v1/jobs"]["post"]
    body = submit["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/JobSpec"
    assert body["examples"]["digits"]["value"]["sparsity"]["n"] == 2
    assert {"200", "201", "401", "409", "422", "429"} <= set(submit["responses"])
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                error = operation["responses"]["401"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path)
                assert operation.get("security") == [{"ApiKey": []}], (method, path)
            assert operation.get("summary"), (method, path)
    upload = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["required"] == ["file", "format"]
