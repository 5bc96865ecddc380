"""A dense checkpoint the API accepted but that does not fit the job's model fails the job at once.

The API checks an uploaded checkpoint's format and values (not its shapes: the model's shapes depend on
the data). The worker loads it into the built model and names every mismatch; the job ends
``invalid_input`` on its first attempt, with no retry.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from jobs import auth
from jobs.db import transaction
from jobs.models import Checkpoint, Job
from jobs.states import JobState
from lbc_core.models import build_model
from tests.worker.test_execution import FAST, ctx, load, settings, submit
from worker import execution
from worker.context import WorkerContext

__all__ = ["ctx", "settings"]  # fixtures shared with test_execution


def stored_checkpoint(ctx: WorkerContext, state: dict[str, torch.Tensor], tmp_path: Path) -> str:
    path = tmp_path / "dense.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        stored = ctx.store.put_file("checkpoints/alice/dense.safetensors", path)
        row = Checkpoint(
            owner_id=owner.id,
            name="dense",
            format="safetensors",
            filename="dense.safetensors",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
        )
        session.add(row)
        session.flush()
        return row.id


def run_with_checkpoint(ctx: WorkerContext, checkpoint_id: str) -> tuple[JobState | None, Job]:
    spec = json.loads(json.dumps(FAST))
    spec["model"]["checkpoint"] = checkpoint_id
    job_id = submit(ctx, spec, checkpoint_id=checkpoint_id)
    state = execution.run_job(ctx, job_id)
    return state, load(ctx, job_id)


def test_a_checkpoint_with_wrong_shapes_fails_the_job_naming_the_tensor_and_both_shapes(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    # Saved for 28x28 inputs; the job's digits are 8x8, so its first layer takes 64 features, not 784.
    state = build_model("mlp", num_classes=10, input_features=784).state_dict()
    checkpoint_id = stored_checkpoint(ctx, state, tmp_path)
    outcome, job = run_with_checkpoint(ctx, checkpoint_id)

    assert (outcome, job.error_type, job.attempt) == (JobState.FAILED, "invalid_input", 1)
    assert f"checkpoint {checkpoint_id} does not fit the model" in (job.error_message or "")
    assert "features.0.weight (256, 784) != (256, 64)" in (job.error_message or "")
    assert ctx.sent == []  # type: ignore[attr-defined]  # not sent again for another attempt


def test_a_checkpoint_with_nan_weights_fails_the_job_naming_the_tensor(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    state = build_model("mlp", num_classes=10, input_features=64).state_dict()
    state["classifier.bias"][3] = float("nan")
    outcome, job = run_with_checkpoint(ctx, stored_checkpoint(ctx, state, tmp_path))

    assert (outcome, job.error_type, job.attempt) == (JobState.FAILED, "invalid_input", 1)
    assert "tensor classifier.bias contains NaN or infinity" in (job.error_message or "")
