"""Failures retrying cannot fix end the job at the first attempt, saying what to change: an allocation that
failed (``resources_exceeded``, with the submit-time estimate) and a model that cannot take the data's
shape (``invalid_input`` naming the layer). A cancel asked while the model is built stops before training.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lbc_core.models.source
import lbc_core.pipeline
from jobs import auth, repository
from jobs.db import transaction
from jobs.models import Dataset, Job
from jobs.states import JobState
from tests.worker.test_execution import FAST, ctx, load, settings, submit  # noqa: F401 (fixtures)
from worker import execution
from worker.context import WorkerContext

CPU_ALLOCATOR_MESSAGE = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 36028797018963968 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(CPU_ALLOCATOR_MESSAGE),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
    ids=["MemoryError", "cpu-allocator", "cuda"],
)
def test_allocation_failures_are_resources_exceeded_and_not_retried(error: BaseException) -> None:
    error_type, message, retryable = execution.classify(error, "about 1.0 TiB (270.6 G parameters: ...)")
    assert (error_type, retryable) == ("resources_exceeded", False)
    assert "the job was estimated to need about 1.0 TiB (270.6 G parameters" in message
    assert message.startswith("out of CUDA memory" if "CUDA" in str(error) else "out of host memory")
    assert repository.is_retryable(error_type) is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_cuda_out_of_memory_is_resources_exceeded() -> None:
    with pytest.raises(torch.OutOfMemoryError) as raised:
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda")
    error_type, message, retryable = execution.classify(raised.value, "about 1.0 PiB")
    assert (error_type, retryable) == ("resources_exceeded", False)
    assert message.startswith("out of CUDA memory (OutOfMemoryError: ")


def test_retryability_is_decided_by_the_one_list() -> None:
    for error, expected in [
        (RuntimeError("connection reset"), ("internal_error", True)),
        (FloatingPointError("loss became nan"), ("diverged", False)),
        (ValueError("bad data"), ("invalid_input", False)),
        (execution.TimeLimitExceeded("late"), ("time_limit", False)),
        (execution.PublishError("disk full"), ("publish_error", True)),
    ]:
        error_type, _, retryable = execution.classify(error)
        assert (error_type, retryable) == expected
        assert (
            retryable
            == repository.is_retryable(error_type)
            == (error_type not in repository.NON_RETRYABLE_ERRORS)
        )


def test_a_model_that_cannot_be_allocated_fails_at_once_with_the_estimate(
    ctx: WorkerContext,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_build = lbc_core.models.source.build_model

    def build_too_big(name: str, **kwargs: Any) -> nn.Module:
        model = real_build(name, **kwargs)
        torch.empty(1 << 55, dtype=torch.uint8)  # what the real allocator says when the host has no room
        return model

    monkeypatch.setattr(lbc_core.models.source, "build_model", build_too_big)
    job_id = submit(ctx, FAST)

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.state, job.error_type, job.attempt) == ("failed", "resources_exceeded", 1)
    message = job.error_message or ""
    assert message.startswith("out of host memory (RuntimeError: [enforce fail at alloc_cpu.cpp")
    assert "DefaultCPUAllocator: can't allocate memory" in message
    assert "the job was estimated to need about " in message and " parameters: weights " in message
    assert ctx.sent == []  # type: ignore[attr-defined]  # not re-queued


def _npz_dataset(ctx: WorkerContext) -> str:  # noqa: F811
    """An uploaded 8x8 grayscale npz set: the spec cannot know its shape, only the worker does."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, x=rng.random((200, 1, 8, 8), dtype=np.float32), y=np.arange(200) % 4)
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        stored = ctx.store.put_bytes("datasets/npz/data.npz", buffer.getvalue())
        dataset = Dataset(
            owner_id=owner.id,
            name="npz",
            format="npz",
            filename="data.npz",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
        )
        session.add(dataset)
        session.flush()
        return dataset.id


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (
            {"architecture": "lenet5", "args": {"in_channels": 3}},
            "layer features.0 (Conv2d) cannot take the data: samples of shape [1, 8, 8] give: ",
        ),
        (
            {"architecture": "mlp", "args": {"input_features": 784}},
            "the model itself (MLP) cannot take the data: samples of shape [1, 8, 8] give: "
            "MLP expects 784 input features per sample, got 64",
        ),
        (
            {"architecture": "resnet20", "args": {"in_channels": 3, "width": 0.5}},
            "layer conv1 (Conv2d) cannot take the data: samples of shape [1, 8, 8] give: ",
        ),
    ],
    ids=["lenet5-channels", "mlp-features", "resnet20-channels"],
)
def test_a_model_that_cannot_take_the_data_is_invalid_input_naming_the_layer(
    ctx: WorkerContext,  # noqa: F811
    model: dict[str, Any],
    named: str,
) -> None:
    dataset_id = _npz_dataset(ctx)
    spec = json.loads(json.dumps(FAST))
    spec["model"] = model
    spec["dataset"] = {"source": "npz", "path": dataset_id}
    job_id = submit(ctx, spec, dataset_id=dataset_id)
    started = time.monotonic()

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.error_type, job.attempt) == ("invalid_input", 1), job.error_message
    assert f"InputShapeError: {named}" in (job.error_message or ""), job.error_message
    if "channels" in str(model):  # the engine's own words follow
        assert "expected input[1, 1, 8, 8] to have 3 channels, but got 1 channels" in (
            job.error_message or ""
        )
    assert time.monotonic() - started < 20
    assert ctx.sent == []  # type: ignore[attr-defined]


def test_a_cancel_asked_while_the_model_is_built_stops_before_training(
    ctx: WorkerContext,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_build = lbc_core.models.source.build_model
    job_id = submit(ctx, FAST)

    def slow_build(name: str, **kwargs: Any) -> nn.Module:
        with transaction(ctx.sessions) as session:
            job = session.get(Job, job_id)
            assert job is not None
            repository.request_cancel(session, job)
        time.sleep(1.0)  # a large model: the heartbeat sees the cancel meanwhile
        return real_build(name, **kwargs)

    monkeypatch.setattr(lbc_core.models.source, "build_model", slow_build)

    assert execution.run_job(ctx, job_id) == JobState.CANCELLED

    job = load(ctx, job_id)
    assert job.state == "cancelled"
    assert job.checkpoint_key is None and not job.progress.get("global_step")  # not one step, nothing saved
    assert ctx.store.list(f"jobs/{job_id}/checkpoints/") == []
