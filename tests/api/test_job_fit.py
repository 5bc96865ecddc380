"""Jobs that cannot fit or cannot take their data are refused at submit time with a 422 naming why.

Model size: a memory estimate (jobs.sizing) against LBC_MAX_JOB_MEMORY_BYTES, for training jobs, for jobs
starting from an uploaded checkpoint and for benchmark jobs. Shape: architecture arguments that contradict
the sample shape fixed by the source or recorded by the upload.
"""

from __future__ import annotations

from typing import Any

from jobs.admission import job_memory
from jobs.db import transaction
from jobs.models import Checkpoint, Job
from jobs.sizing import format_bytes
from jobs.spec import parse_spec
from tests.api.conftest import AppFactory, Caller, Service, digits_spec
from tests.api.test_report import finished_job
from tests.api.test_uploads import npz_bytes, upload


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return {p["field"]: p["message"] for p in error["details"]}


def post_job(service: Service, caller: Caller, spec: dict[str, Any]) -> Any:
    return service.client.post("/v1/jobs", json=spec, headers=caller.headers)


def post_benchmark(service: Service, caller: Caller, body: dict[str, Any]) -> Any:
    return service.client.post("/v1/benchmarks", json=body, headers=caller.headers)


def checkpoint_row(service: Service, caller: Caller, parameter_count: int) -> str:
    """A checkpoint as the upload route leaves it, with the parameter count its validation recorded."""
    stored = service.store.put_bytes(f"checkpoints/{caller.owner_id}/big.safetensors", b"weights")
    with transaction(service.sessions) as session:
        checkpoint = Checkpoint(
            owner_id=caller.owner_id,
            name="big",
            format="safetensors",
            filename="big.safetensors",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
            summary={"tensor_count": 10, "parameter_count": parameter_count},
        )
        session.add(checkpoint)
        session.flush()
        return checkpoint.id


def no_jobs(service: Service, caller: Caller) -> bool:
    with transaction(service.sessions) as session:
        return session.query(Job).filter(Job.owner_id == caller.owner_id).count() == 0


# -- model size ---------------------------------------------------------------------------------------------
def test_models_that_cannot_fit_are_422_naming_the_estimate_and_the_limit(service: Service) -> None:
    alice = service.caller()
    for model in (
        {"architecture": "mlp", "args": {"hidden_sizes": [65536] * 64}},  # about 270 G parameters
        {"architecture": "resnet50", "args": {"width": 16}},
    ):
        found = problems(post_job(service, alice, digits_spec(model=model)))
        message = found["model"]
        assert message.startswith("the job would need about "), message
        assert "G parameters: weights " in message
        assert "over the limit of 8.0 GiB (8589934592 bytes, LBC_MAX_JOB_MEMORY_BYTES)" in message
        assert "smaller train.batch_size" in message
    assert (
        "270.6 G parameters"
        in problems(
            post_job(
                service,
                alice,
                digits_spec(model={"architecture": "mlp", "args": {"hidden_sizes": [65536] * 64}}),
            )
        )["model"]
    )
    assert no_jobs(service, alice) and service.queued_messages("gpu") == []


def test_the_batch_size_counts_and_the_limit_is_a_setting(app_factory: AppFactory) -> None:
    service = app_factory(max_job_memory_bytes=64 * 1024**2)
    alice = service.caller()
    big_batch = digits_spec(model={"architecture": "resnet20"}, train={"epochs": 1, "batch_size": 4096})
    assert "over the limit of 64.0 MiB" in problems(post_job(service, alice, big_batch))["model"]
    small_batch = digits_spec(model={"architecture": "resnet20"}, train={"epochs": 1, "batch_size": 16})
    assert post_job(service, alice, small_batch).status_code == 201

    unlimited = app_factory(max_job_memory_bytes=0)
    bob = unlimited.caller()
    huge = digits_spec(model={"architecture": "resnet50", "args": {"width": 16}})
    assert post_job(unlimited, bob, huge).status_code == 201


def test_every_cpu_process_of_a_job_counts_toward_the_limit(app_factory: AppFactory) -> None:
    """A job that fits on one process is refused on four: each CPU rank holds a copy of the model."""
    one = digits_spec(
        model={"architecture": "resnet20"}, train={"epochs": 1, "batch_size": 64, "device": "cpu"}
    )
    four = digits_spec(model=one["model"], train={**one["train"], "processes": 4})
    fits = job_memory(parse_spec(one))
    service = app_factory(max_job_memory_bytes=fits.total)
    alice = service.caller()

    message = problems(post_job(service, alice, four))["model"]
    assert message.startswith("the job would need about "), message
    assert "(4 processes x about " in message and "gradient buckets " in message
    assert (
        f"over the limit of {format_bytes(fits.total)} ({fits.total} bytes, LBC_MAX_JOB_MEMORY_BYTES)"
        in message
    )
    assert message.endswith("or fewer train.processes")
    assert no_jobs(service, alice)
    assert post_job(service, alice, one).status_code == 201


def test_an_uploaded_starting_checkpoint_counts_toward_the_estimate(service: Service) -> None:
    alice = service.caller()
    small = checkpoint_row(service, alice, parameter_count=45_000)
    assert (
        post_job(
            service, alice, digits_spec(model={"architecture": "lenet5", "checkpoint": small})
        ).status_code
        == 201
    )
    huge = checkpoint_row(service, alice, parameter_count=3 * 10**9)  # 12 GB read whole before loading
    message = problems(
        post_job(service, alice, digits_spec(model={"architecture": "lenet5", "checkpoint": huge}))
    )["model"]
    assert "checkpoint 11.2 GiB" in message and "LBC_MAX_JOB_MEMORY_BYTES" in message


def test_benchmarks_of_checkpoints_are_sized_at_their_largest_batch(service: Service) -> None:
    alice = service.caller()
    checkpoint = checkpoint_row(service, alice, parameter_count=25_557_032)
    source = {"checkpoint_id": checkpoint, "architecture": "resnet50"}
    fits = post_benchmark(service, alice, {"source": source, "benchmark": {"batch_sizes": [1, 64]}})
    assert fits.status_code == 201, fits.text
    found = problems(
        post_benchmark(service, alice, {"source": source, "benchmark": {"batch_sizes": [1, 65536]}})
    )
    message = found["benchmark.batch_sizes"]
    assert "over the limit of 8.0 GiB" in message and "smaller benchmark.batch_sizes" in message
    assert "activations " in message


def test_benchmarks_of_finished_jobs_are_sized_too(app_factory: AppFactory) -> None:
    service = app_factory(max_job_memory_bytes=32 * 1024**2)
    alice = service.caller()
    source = finished_job(service, alice)
    ok = post_benchmark(
        service, alice, {"source": {"job_id": source["id"]}, "benchmark": {"batch_sizes": [1]}}
    )
    assert ok.status_code == 201, ok.text
    too_big = {"source": {"job_id": source["id"]}, "benchmark": {"batch_sizes": [65536]}}
    assert (
        "over the limit of 32.0 MiB"
        in problems(post_benchmark(service, alice, too_big))["benchmark.batch_sizes"]
    )


# -- architecture arguments against the data ----------------------------------------------------------------
def test_arguments_that_contradict_a_built_in_source_are_422(service: Service) -> None:
    alice = service.caller()
    cases = [
        (
            digits_spec(model={"architecture": "lenet5", "args": {"in_channels": 3}}),
            "model.args.in_channels",
            "the digits dataset has 1-channel samples of shape [1, 8, 8]; got 3",
        ),
        (
            digits_spec(model={"architecture": "mlp", "args": {"input_features": 784}}),
            "model.args.input_features",
            "the digits dataset has samples of shape [1, 8, 8], 64 values each; got 784",
        ),
        (
            digits_spec(model={"architecture": "vit", "args": {"patch_size": 3}}),
            "model.args.patch_size",
            "patch_size 3 must divide the digits dataset's image size 8",
        ),
        (
            digits_spec(model={"architecture": "vit", "args": {"image_size": 32}}),
            "model.args.image_size",
            "the digits dataset has 8x8 samples; got 32",
        ),
        (
            digits_spec(
                model={"architecture": "resnet20"},
                dataset={"source": "synthetic", "synthetic": {"input_shape": [64]}},
            ),
            "model.architecture",
            "resnet20 needs image samples [C, H, W]; the synthetic dataset has flat samples [64]",
        ),
    ]
    for spec, field, message in cases:
        assert problems(post_job(service, alice, spec)) == {field: message}
    matching = digits_spec(model={"architecture": "mlp", "args": {"input_features": 64, "in_channels": 1}})
    assert post_job(service, alice, matching).status_code == 201


def test_arguments_that_contradict_an_uploads_recorded_shape_are_422(service: Service) -> None:
    alice = service.caller()
    dataset = upload(service, alice, "datasets", "d.npz", npz_bytes(), format="npz").json()  # 8x8 grey
    assert dataset["summary"]["input_shape"] == [1, 8, 8]
    data = {"source": "npz", "path": dataset["id"]}
    wrong_channels = digits_spec(model={"architecture": "lenet5", "args": {"in_channels": 3}}, dataset=data)
    assert problems(post_job(service, alice, wrong_channels)) == {
        "model.args.in_channels": f"dataset {dataset['id']} has 1-channel samples of shape [1, 8, 8]; got 3"
    }
    wrong_features = digits_spec(model={"architecture": "mlp", "args": {"input_features": 100}}, dataset=data)
    assert (
        "64 values each; got 100"
        in problems(post_job(service, alice, wrong_features))["model.args.input_features"]
    )
    assert (
        post_job(service, alice, digits_spec(model={"architecture": "lenet5"}, dataset=data)).status_code
        == 201
    )


def test_benchmark_input_shapes_that_the_model_cannot_take_are_422(service: Service) -> None:
    alice = service.caller()
    checkpoint = checkpoint_row(service, alice, parameter_count=45_000)
    body = {"source": {"checkpoint_id": checkpoint, "architecture": "lenet5", "input_shape": [3, 32, 32]}}
    assert problems(post_benchmark(service, alice, body)) == {
        "source.args.in_channels": "input_shape has 3-channel samples of shape [3, 32, 32]; got 1"
    }
    body["source"]["args"] = {"in_channels": 3}
    assert post_benchmark(service, alice, body).status_code == 201
