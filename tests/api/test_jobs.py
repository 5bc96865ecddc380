"""Submitting, listing, cancelling and retrying jobs over HTTP."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from jobs import repository
from jobs.db import transaction
from jobs.models import Job, JobEvent
from jobs.spec import METHODS
from tests.api.conftest import AppFactory, Caller, Service, digits_spec

BOTH = pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)


@BOTH
def test_submit_queues_the_job_and_rings_the_broker_after_commit(service: Service) -> None:
    alice = service.caller("alice")
    response = service.client.post("/v1/jobs", json=digits_spec(name="first"), headers=alice.headers)

    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued"
    assert (job["method"], job["pattern"], job["architecture"], job["name"]) == (
        "lbc",
        "2:4",
        "lenet5",
        "first",
    )
    assert job["queue"] == "gpu"  # limits.queue "default" maps to settings.default_queue
    assert job["owner_id"] == alice.owner_id
    assert (
        job["spec"]["train"]["epochs"] == 2 and job["spec"]["train"]["momentum"] == 0.9
    )  # defaults filled in
    assert job["spec"]["train"]["lr"] is None  # the engine derives it from batch_size; result.lr says which
    assert job["warnings"] == []
    assert service.queued_messages("gpu") == [job["id"]]

    fetched = service.client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]
    assert fetched.json()["links"]["events"] == f"/v1/jobs/{job['id']}/events"


def test_submit_to_a_named_queue_with_limits(app_factory: AppFactory) -> None:
    service = app_factory(gpu_queues="gpu,h100")
    alice = service.caller()
    spec = digits_spec(limits={"queue": "h100", "priority": 9, "time_limit_s": 600})
    job = service.submit(alice, spec)
    assert (job["queue"], job["priority"], job["time_limit_s"]) == ("h100", 9, 600)
    assert service.queued_messages("h100") == [job["id"]]
    assert service.queued_messages("gpu") == []


def _problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["request_id"] == response.headers["X-Request-ID"]
    return {p["field"]: p["message"] for p in error["details"]}


@BOTH
def test_every_spec_problem_is_a_422_naming_its_field(service: Service) -> None:
    alice = service.caller()
    spec = digits_spec(
        model={"architecture": "resnet9000"},
        sparsity={"n": 4, "m": 4},
        train={"epochs": 0, "bogus": 1},
    )
    problems = _problems(service.client.post("/v1/jobs", json=spec, headers=alice.headers))
    assert "unknown architecture 'resnet9000'" in problems["model.architecture"]
    assert "must be smaller than m (4)" in problems["sparsity.n"]
    assert "train.epochs" in problems
    assert problems["train.bogus"].startswith("unknown field")
    assert service.queued_messages("gpu") == []
    with transaction(service.sessions) as session:
        assert session.query(Job).filter(Job.owner_id == alice.owner_id).count() == 0


SPEC_LIMITS: list[tuple[str, dict[str, Any], str, str]] = [
    ("epochs", {"train": {"epochs": 10_001}}, "train.epochs", "less than or equal to 10000"),
    ("batch size", {"train": {"batch_size": 1 << 20}}, "train.batch_size", "less than or equal to 65536"),
    ("n equals m", {"sparsity": {"n": 4, "m": 4}}, "sparsity.n", "must be smaller than m (4)"),
    ("n above m", {"sparsity": {"n": 8, "m": 4}}, "sparsity.n", "must be smaller than m (4)"),
    ("m above 16", {"sparsity": {"n": 2, "m": 32}}, "sparsity.m", "less than or equal to 16"),
    ("n zero", {"sparsity": {"n": 0, "m": 4}}, "sparsity.n", "greater than or equal to 1"),
    (
        "include matching no layer",
        {"sparsity": {"layers": {"include": ["features.*", "layer1.*"]}}},
        "sparsity.layers.include[1]",
        "pattern 'layer1.*' matches no Linear/Conv2d layer of lenet5; layers are: features.0",
    ),
    (
        "huge t_f",
        {"sparsity": {"schedule": {"t_f": 1e12}}},
        "sparsity.schedule.t_f",
        "must be <= train.epochs",
    ),
    ("negative lr", {"train": {"lr": -0.1}}, "train.lr", "greater than 0"),
    ("unknown key", {"train": {"epochs": 2, "learning_rate": 0.1}}, "train.learning_rate", "unknown field"),
    ("unknown section", {"optimizer": {"lr": 0.1}}, "optimizer", "unknown field"),
]


def test_specs_at_the_limits_are_422_naming_the_field(service: Service) -> None:
    alice = service.caller()
    for label, sections, field, fragment in SPEC_LIMITS:
        spec = digits_spec()
        for section, values in sections.items():
            spec[section] = {**spec.get(section, {}), **values}
        problems = _problems(service.client.post("/v1/jobs", json=spec, headers=alice.headers))
        assert field in problems and fragment in problems[field], (label, problems)
    assert service.queued_messages("gpu") == []


def test_a_hugging_face_model_path_is_a_422_until_models_are_uploads(service: Service) -> None:
    """A path would name a directory on the worker's disk: the service never reads one."""
    alice = service.caller()
    spec = {**digits_spec(), "model": {"source": "huggingface", "path": "/srv/models/llama"}}
    problems = _problems(service.client.post("/v1/jobs", json=spec, headers=alice.headers))
    assert "does not exist" in problems["model.path"], problems
    assert service.queued_messages("gpu") == []


def test_malformed_bodies_use_the_same_envelope(service: Service) -> None:
    alice = service.caller()
    headers = {**alice.headers, "Content-Type": "application/json"}
    not_json = service.client.post("/v1/jobs", content=b"{not json", headers=headers)
    assert _problems(not_json)["body"].startswith("the body is not valid JSON text (Expecting property name")
    a_list = service.client.post("/v1/jobs", json=[1, 2], headers=alice.headers)
    assert "a job spec is a mapping" in _problems(a_list)["body"]
    missing = _problems(
        service.client.post("/v1/jobs", json={"model": {"architecture": "mlp"}}, headers=alice.headers)
    )
    assert missing["dataset"] == "required field is missing"


def test_service_specs_name_uploads_not_paths(service: Service) -> None:
    alice = service.caller()
    spec = digits_spec(
        dataset={"source": "npz", "path": "/etc/passwd"}, model={"architecture": "mlp", "checkpoint": "x.pt"}
    )
    problems = _problems(service.client.post("/v1/jobs", json=spec, headers=alice.headers))
    assert problems["dataset.path"] == "dataset /etc/passwd does not exist"
    assert problems["model.checkpoint"] == "checkpoint x.pt does not exist"


@BOTH
def test_idempotency_key_returns_the_same_job_and_rejects_another_spec(service: Service) -> None:
    alice = service.caller()
    headers = {**alice.headers, "Idempotency-Key": "submit-1"}
    first = service.client.post("/v1/jobs", json=digits_spec(), headers=headers)
    again = service.client.post("/v1/jobs", json=digits_spec(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert service.queued_messages("gpu") == [first.json()["id"]]  # rung once

    other = service.client.post("/v1/jobs", json=digits_spec(train={"epochs": 3}), headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["details"] == {"job_id": first.json()["id"]}

    # Keys are per owner: bob's "submit-1" is a different job.
    bob = service.caller("bob")
    bobs = service.client.post(
        "/v1/jobs", json=digits_spec(), headers={**bob.headers, "Idempotency-Key": "submit-1"}
    )
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]


@BOTH
def test_pagination_applies_filters_before_the_limit(service: Service) -> None:
    alice, bob = service.caller("alice"), service.caller("bob")
    methods = ["lbc", "srste", "lbc", "asp", "lbc", "srste", "lbc"]
    ids = {m: [] for m in set(methods)}  # type: dict[str, list[str]]
    for method in methods:
        job = service.submit(alice, digits_spec(sparsity={"method": method, "n": 2, "m": 4}))
        ids[method].append(job["id"])
    service.submit(bob)  # another owner's lbc job never shows up

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"method": "lbc", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = service.client.get("/v1/jobs", params=params, headers=alice.headers).json()
        assert len(page["items"]) <= 2
        assert {item["method"] for item in page["items"]} <= {"lbc"}
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert seen == list(reversed(ids["lbc"]))  # newest first, no duplicates, no omissions

    everything = service.client.get("/v1/jobs", params={"limit": 200}, headers=alice.headers).json()
    assert len(everything["items"]) == 7 and everything["next_cursor"] is None
    by_status = service.client.get(
        "/v1/jobs", params={"status": "queued", "pattern": "2:4"}, headers=alice.headers
    )
    assert len(by_status.json()["items"]) == 7


def test_jobs_filter_by_every_method_the_spec_accepts_and_by_benchmark(service: Service) -> None:
    alice = service.caller()
    wanda = service.submit(alice, digits_spec(sparsity={"method": "wanda", "n": 2, "m": 4}))
    service.submit(alice)
    for method in (*METHODS, "benchmark"):
        listed = service.client.get("/v1/jobs", params={"method": method}, headers=alice.headers)
        assert listed.status_code == 200, method
    page = service.client.get("/v1/jobs", params={"method": "wanda"}, headers=alice.headers).json()
    assert [item["id"] for item in page["items"]] == [wanda["id"]]
    assert set(
        _problems(service.client.get("/v1/jobs", params={"method": "magnitude"}, headers=alice.headers))
    ) == {"method"}


def test_listing_parameters_are_validated(service: Service) -> None:
    alice = service.caller()
    bad = service.client.get("/v1/jobs", params={"limit": 0, "status": "sleeping"}, headers=alice.headers)
    problems = _problems(bad)
    assert set(problems) == {"limit", "status"}
    assert _problems(service.client.get("/v1/jobs", params={"cursor": "!!"}, headers=alice.headers))


@BOTH
def test_admin_keys_see_every_owner_and_others_get_404(service: Service) -> None:
    alice, bob, admin = service.caller("alice"), service.caller("bob"), service.caller("root", admin=True)
    job = service.submit(alice)
    bobs = service.submit(bob)

    for method, path in [
        ("GET", ""),
        ("POST", "/cancel"),
        ("POST", "/retry"),
        ("GET", "/events?follow=false"),
        ("GET", "/logs"),
        ("GET", "/metrics"),
        ("GET", "/artifacts"),
        ("GET", "/artifacts/model.safetensors"),
    ]:
        response = service.client.request(method, f"/v1/jobs/{job['id']}{path}", headers=bob.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
        assert job["id"] in response.json()["error"]["message"]
    listed = {item["id"] for item in service.client.get("/v1/jobs", headers=bob.headers).json()["items"]}
    assert listed == {bobs["id"]}

    admin_list = service.client.get("/v1/jobs", params={"limit": 200}, headers=admin.headers).json()["items"]
    assert {job["id"], bobs["id"]} <= {item["id"] for item in admin_list}
    assert service.client.get(f"/v1/jobs/{job['id']}", headers=admin.headers).status_code == 200


@BOTH
def test_cancel_queued_is_immediate_and_a_finished_job_is_409(service: Service) -> None:
    alice = service.caller()
    job = service.submit(alice)
    cancelled = service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert cancelled.status_code == 202
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None

    again = service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "illegal_transition"
    assert error["details"]["state"] == "cancelled"
    with transaction(service.sessions) as session:
        kinds = [
            e.data["state"] for e in session.query(JobEvent).filter_by(job_id=job["id"]).order_by(JobEvent.id)
        ]
    assert kinds == ["queued", "cancelled"]


def test_cancel_running_asks_the_worker_to_stop(service: Service) -> None:
    alice = service.caller()
    job = service.submit(alice)
    service.worker_runs(job["id"])
    response = service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert response.status_code == 202
    assert response.json()["state"] == "cancelling"
    assert response.json()["cancel_requested"] is True
    # Asking twice is fine while the worker winds down.
    assert service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers).status_code == 202


@BOTH
def test_retry_requeues_failed_and_cancelled_jobs_and_rings_again(service: Service) -> None:
    alice = service.caller()
    job = service.submit(alice)
    assert service.queued_messages("gpu") == [job["id"]]

    queued_retry = service.client.post(f"/v1/jobs/{job['id']}/retry", headers=alice.headers)
    assert queued_retry.status_code == 409
    assert queued_retry.json()["error"]["details"]["state"] == "queued"

    service.worker_runs(job["id"], finish="failed")
    failed = service.client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert (failed["state"], failed["error_type"]) == ("failed", "spec_error")

    retried = service.client.post(f"/v1/jobs/{job['id']}/retry", headers=alice.headers)
    assert retried.status_code == 202
    body = retried.json()
    assert (body["state"], body["attempt"], body["error_type"], body["finished_at"]) == (
        "queued",
        0,
        None,
        None,
    )
    assert service.queued_messages("gpu") == [job["id"]]


def test_unfinished_job_quota_is_a_429(app_factory: Any) -> None:
    service = app_factory(max_concurrent_jobs_per_owner=2)
    alice = service.caller()
    service.submit(alice)
    service.submit(alice)
    third = service.client.post("/v1/jobs", json=digits_spec(), headers=alice.headers)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "quota_exceeded"


# -- queues: only the deployment's job queues, routed by device ---------------------------------------------
@pytest.mark.parametrize(
    ("train", "limits", "queue"),
    [
        ({"device": "cpu"}, {}, "cpu"),
        ({"device": "cuda"}, {}, "gpu"),
        ({"device": "auto"}, {}, "gpu"),
        ({"device": "cpu"}, {"queue": "cpu"}, "cpu"),
        ({"device": "auto"}, {"queue": "cpu"}, "cpu"),
        ({"device": "cuda:1"}, {"queue": "gpu"}, "gpu"),
    ],
)
def test_jobs_are_routed_by_device(
    service: Service, train: dict[str, Any], limits: dict[str, Any], queue: str
) -> None:
    alice = service.caller()
    job = service.submit(alice, digits_spec(train={"epochs": 2, **train}, limits=limits))
    assert job["queue"] == queue
    assert service.queued_messages(queue) == [job["id"]]


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("/v1/jobs", digits_spec(limits={"queue": "nobody-listens"}), "unknown queue 'nobody-listens'"),
        ("/v1/jobs", digits_spec(limits={"queue": "maintenance"}), "queue 'maintenance' is reserved"),
        ("/v1/jobs", digits_spec(train={"device": "cpu"}, limits={"queue": "gpu"}), "device is cpu"),
        ("/v1/jobs", digits_spec(train={"device": "cuda"}, limits={"queue": "cpu"}), "device is cuda"),
        (
            "/v1/benchmarks",
            {
                "source": {"job_id": "0" * 32},
                "benchmark": {"device": "cuda"},
                "limits": {"queue": "maintenance"},
            },
            "reserved",
        ),
        (
            "/v1/benchmarks",
            {"source": {"job_id": "0" * 32}, "benchmark": {"device": "cpu"}, "limits": {"queue": "gpu"}},
            "device is cpu",
        ),
    ],
    ids=["unknown", "reserved", "cpu-on-gpu", "cuda-on-cpu", "benchmark-reserved", "benchmark-cpu-on-gpu"],
)
def test_a_queue_that_does_not_exist_or_disagrees_with_the_device_is_refused(
    service: Service, route: str, body: dict[str, Any], message: str
) -> None:
    alice = service.caller()
    response = service.client.post(route, json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["error"]["details"]}
    assert message in problems["limits.queue"], problems
    assert (
        "allowed: default, gpu, cpu" in problems["limits.queue"] or "use one of" in problems["limits.queue"]
    )
    assert service.queued_messages("nobody-listens") == service.queued_messages("maintenance") == []


def test_the_deployment_declares_its_queues(app_factory: AppFactory) -> None:
    service = app_factory(gpu_queues="gpu,a100", cpu_queues="cpu,big-cpus")
    alice = service.caller()
    job = service.submit(
        alice, digits_spec(train={"epochs": 2, "device": "cpu"}, limits={"queue": "big-cpus"})
    )
    assert job["queue"] == "big-cpus"
    refused = service.client.post(
        "/v1/jobs", json=digits_spec(limits={"queue": "h100"}), headers=alice.headers
    )
    assert refused.status_code == 422
    assert "allowed: default, gpu, a100, cpu, big-cpus" in refused.text
    with pytest.raises(ValueError, match="default_queue 'cpu' is not one of gpu_queues"):
        app_factory(default_queue="cpu")


# -- retry checks the uploads the job reads ---------------------------------------------------------------
def _upload_npz(service: Service, caller: Caller) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((12, 8, 8), np.uint8), y=np.arange(12) % 4)
    response = service.client.post(
        "/v1/datasets",
        files={"file": ("d.npz", buffer.getvalue())},
        data={"format": "npz"},
        headers=caller.headers,
    )
    assert response.status_code == 201, response.text
    dataset_id: str = response.json()["id"]
    return dataset_id


def _failed_job_on_an_upload(service: Service, caller: Caller) -> tuple[str, dict[str, Any]]:
    """``(dataset id, job)``: a job on an uploaded dataset that failed, so it may be retried."""
    dataset_id = _upload_npz(service, caller)
    spec = digits_spec(
        dataset={"source": "npz", "path": dataset_id},
        model={"architecture": "lenet5", "args": {"width": 0.5, "num_classes": 4}},
    )
    job = service.submit(caller, spec)
    service.worker_runs(job["id"], finish="failed")
    return dataset_id, job


@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)
def test_retrying_a_job_whose_dataset_was_deleted_is_a_409_naming_it(service: Service) -> None:
    alice = service.caller()
    dataset_id, job = _failed_job_on_an_upload(service, alice)
    deleted = service.client.delete(f"/v1/datasets/{dataset_id}", headers=alice.headers)
    assert deleted.status_code == 204, deleted.text

    response = service.client.post(f"/v1/jobs/{job['id']}/retry", headers=alice.headers)

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["details"] == [{"field": "dataset.path", "message": f"dataset {dataset_id} does not exist"}]
    assert dataset_id in error["message"]
    after = service.client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert after["state"] == "failed"  # nothing changed
    assert service.queued_messages("gpu") == [job["id"]]  # only the first submit rang


@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)
def test_retrying_a_benchmark_whose_checkpoint_was_deleted_is_a_409_naming_it(service: Service) -> None:
    alice = service.caller()
    buffer = save({"w": np.zeros((4, 4), np.float32)})
    uploaded = service.client.post(
        "/v1/checkpoints", files={"file": ("c.safetensors", buffer)}, headers=alice.headers
    )
    checkpoint_id = uploaded.json()["id"]
    body = {
        "source": {"checkpoint_id": checkpoint_id, "architecture": "lenet5"},
        "benchmark": {"device": "cpu"},
    }
    job = service.client.post("/v1/benchmarks", json=body, headers=alice.headers).json()
    service.worker_runs(job["id"], finish="failed")
    assert service.client.delete(f"/v1/checkpoints/{checkpoint_id}", headers=alice.headers).status_code == 204

    response = service.client.post(f"/v1/jobs/{job['id']}/retry", headers=alice.headers)

    assert response.status_code == 409, response.text
    assert response.json()["error"]["details"] == [
        {"field": "source.checkpoint_id", "message": f"checkpoint {checkpoint_id} does not exist"}
    ]


def test_a_retry_with_its_uploads_in_place_still_queues(service: Service) -> None:
    alice = service.caller()
    _, job = _failed_job_on_an_upload(service, alice)
    response = service.client.post(f"/v1/jobs/{job['id']}/retry", headers=alice.headers)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued"


# -- echoed values are cut --------------------------------------------------------------------------------
def test_a_huge_name_is_not_echoed_back_whole(service: Service) -> None:
    alice = service.caller()
    # As large as a body may be (LBC_MAX_JSON_BODY_BYTES, 1 MiB by default; larger bodies are a 413).
    huge = "n" * 1_000_000
    response = service.client.post("/v1/jobs", json=digits_spec(name=huge), headers=alice.headers)
    assert response.status_code == 422
    assert len(response.content) < 5_000, len(response.content)
    (problem,) = response.json()["error"]["details"]
    assert problem["field"] == "name"
    assert "at most 200 characters" in problem["message"]
    assert problem["message"].endswith("more characters)")


@BOTH
def test_a_job_whose_model_did_not_learn_shows_the_warning_in_detail_and_listing(service: Service) -> None:
    alice = service.caller("alice")
    job_id = service.submit(alice, digits_spec(name="stuck"))["id"]
    warning = {"code": "did_not_learn", "message": "the model did not learn: ... try a lower train.lr"}
    service.worker_runs(job_id)
    with transaction(service.sessions) as session:
        repository.finish_success(
            session, job_id, "test-worker", [], {"val_accuracy": 0.103, "warnings": [warning]}
        )

    detail = service.client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()
    assert detail["state"] == "succeeded"  # it ran; the warning says the model is useless
    assert detail["warnings"] == [warning]
    (listed,) = service.client.get("/v1/jobs", headers=alice.headers).json()["items"]
    assert listed["warnings"] == [warning]
    schema = service.client.get("/openapi.json").json()["components"]["schemas"]
    assert "did_not_learn" in schema["JobSummary"]["properties"]["warnings"]["description"]


def _job_in(service: Service, caller: Caller, state: str) -> str:
    """A job of ``caller`` brought to ``state`` the way a worker and a user would."""
    job_id = service.submit(caller)["id"]
    if state in ("running", "cancelling", "succeeded", "failed"):
        service.worker_runs(job_id, finish=state if state in ("succeeded", "failed") else None)
    if state in ("cancelling", "cancelled"):
        assert service.client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers).status_code == 202
    return job_id


@pytest.mark.parametrize(
    ("state", "actions"),
    [
        ("queued", ["cancel"]),
        ("running", ["cancel"]),
        ("cancelling", []),
        ("succeeded", []),
        ("failed", ["retry"]),
        ("cancelled", ["retry"]),
    ],
)
def test_a_job_lists_exactly_the_actions_its_state_accepts(
    service: Service, state: str, actions: list[str]
) -> None:
    """The dashboard shows only these buttons: each listed action must succeed and each other one must be
    the 409 it would get, in the listing and the detail alike."""
    alice = service.caller()
    job_id = _job_in(service, alice, state)
    detail = service.client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()
    assert (detail["state"], detail["actions"]) == (state, actions)
    listed = service.client.get("/v1/jobs", headers=alice.headers).json()["items"]
    assert [item["actions"] for item in listed if item["id"] == job_id] == [actions]
    for action in ("cancel", "retry"):
        response = service.client.post(f"/v1/jobs/{job_id}/{action}", headers=alice.headers)
        if action in actions:
            assert response.status_code == 202, response.text
            break  # the job has moved on; the other action belongs to its new state
        if (state, action) != ("cancelling", "cancel"):  # a repeated cancel is a no-op there, not a 409
            assert response.status_code == 409, (action, response.text)


@BOTH
def test_a_listed_job_is_its_detail_without_the_spec_and_links(service: Service) -> None:
    """The listing reads selected columns and only the spec's dataset section; the detail reads the whole
    job: both must describe each job alike (dataset_source, warnings, actions, progress, result)."""
    alice = service.caller("alice")
    finished = service.submit(alice, digits_spec(name="finished"))["id"]
    service.worker_runs(finished)
    warning = {"code": "did_not_learn", "message": "the model did not learn"}
    with transaction(service.sessions) as session:
        repository.finish_success(
            session, finished, "test-worker", [], {"val_accuracy": 0.5, "warnings": [warning]}
        )
    service.submit(alice, digits_spec(name="queued"))
    listed = service.client.get("/v1/jobs", headers=alice.headers).json()["items"]
    assert [job["name"] for job in listed] == ["queued", "finished"]
    for job in listed:
        detail = service.client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert {k: v for k, v in detail.items() if k not in ("spec", "links")} == job
    assert listed[0]["dataset_source"] == "digits" and listed[1]["warnings"] == [warning]
    filtered = {"status": "succeeded", "pattern": "2:4", "kind": "sparsify", "method": "lbc"}
    page = service.client.get("/v1/jobs", params=filtered, headers=alice.headers).json()
    assert page["items"] == [listed[1]] and page["next_cursor"] is None
    assert (
        service.client.get("/v1/jobs", params={"kind": "benchmark"}, headers=alice.headers).json()["items"]
        == []
    )
