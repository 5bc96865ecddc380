"""Jobs that train on 2 processes (gloo on CPU), one attempt at a time in this process against SQLite and a
local store: the job process launches the ranks, relays rank 0's progress and checkpoints, and stops or
fails every rank together."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from jobs import repository
from jobs.admission import stored_job_memory
from jobs.db import transaction
from jobs.models import Job
from jobs.settings import Settings
from jobs.states import JobState
from tests.integration.support import spawned_children
from tests.worker.test_execution import load, submit
from worker import execution
from worker.context import WorkerContext, build_context

pytestmark = pytest.mark.timeout(300)

TWO: dict[str, Any] = {  # 7 steps per epoch
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 600},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "device": "cpu", "processes": 2},
    "benchmark": {"enabled": False},
}


@pytest.fixture
def ctx(tmp_path: Path, sqlite_url: str) -> Iterator[WorkerContext]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=sqlite_url,
        lease_seconds=30,
        heartbeat_seconds=0.2,
        progress_interval_seconds=0.05,
        worker_threads=1,
    )
    context = build_context(settings, worker_id=f"test-worker/{os.getpid()}", send=lambda *a: None)
    yield context
    context.close()


def masks_of(ctx: WorkerContext, job_id: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    with transaction(ctx.sessions) as session:
        artifact = repository.get_artifact(session, job_id, "masks.safetensors")
    path = tmp_path / f"{job_id}-masks.safetensors"
    ctx.store.download_file(artifact.storage_key, path)
    return load_file(path)


def test_a_two_process_job_succeeds_like_the_same_job_on_one_process(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    one = submit(ctx, {**TWO, "train": {**TWO["train"], "processes": 1}})
    two = submit(ctx, TWO)

    assert execution.run_job(ctx, one) == JobState.SUCCEEDED
    assert execution.run_job(ctx, two) == JobState.SUCCEEDED

    job, reference = load(ctx, two), load(ctx, one)
    assert job.result is not None and reference.result is not None and job.result["verified_nm"] is True
    assert job.progress["global_step"] == job.progress["total_steps"] == reference.progress["global_step"]
    assert job.result["val_accuracy"] == pytest.approx(reference.result["val_accuracy"])
    expected, actual = masks_of(ctx, one, tmp_path), masks_of(ctx, two, tmp_path)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert spawned_children(os.getpid()) == []


def test_a_rank_out_of_memory_quotes_the_estimate_of_every_process(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ranks_out_of_memory(*args: Any, **kwargs: Any) -> None:
        # What the job process raises for a rank that reported an allocation failure (multiprocess._failure).
        raise MemoryError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes"
        )

    monkeypatch.setattr(execution, "run_spec_processes", ranks_out_of_memory)
    job_id = submit(ctx, TWO)

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.error_type, job.attempt) == ("resources_exceeded", 1)
    with transaction(ctx.sessions) as session:
        estimate = stored_job_memory(session, session.get(Job, job_id))
    assert estimate is not None and estimate.processes == 2
    assert f"the job was estimated to need {estimate.describe()}" in (job.error_message or "")
    assert "(2 processes x about " in estimate.describe()


def test_a_killed_rank_fails_the_attempt_and_the_next_one_resumes_from_the_checkpoint(
    ctx: WorkerContext,
) -> None:
    spec = {**TWO, "dataset": {"source": "digits"}, "train": {**TWO["train"], "epochs": 4, "batch_size": 16}}
    job_id = submit(ctx, spec)
    killed: list[int] = []

    def kill_a_rank_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            ranks = spawned_children(os.getpid())
            if load(ctx, job_id).checkpoint_key and len(ranks) == 2:
                os.kill(max(ranks), signal.SIGKILL)
                killed.append(max(ranks))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_rank_after_the_first_checkpoint, daemon=True)
    killer.start()
    assert execution.run_job(ctx, job_id) == JobState.QUEUED  # a machine fault: retried
    killer.join()

    job = load(ctx, job_id)
    assert killed and job.attempt == 1 and job.error_type == "internal_error"
    assert "died with signal SIGKILL" in (job.error_message or ""), job.error_message
    assert job.checkpoint_key is not None
    assert spawned_children(os.getpid()) == []  # the launcher stopped the surviving rank
    checkpoint_step = int(Path(job.checkpoint_key).stem)

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED
    job = load(ctx, job_id)
    assert job.attempt == 2 and job.result is not None
    assert job.result["resumed_from"]["global_step"] == checkpoint_step > 0
    assert spawned_children(os.getpid()) == []


def test_a_cancel_stops_every_rank_at_the_same_step_with_a_checkpoint(ctx: WorkerContext) -> None:
    job_id = submit(ctx, {**TWO, "train": {**TWO["train"], "epochs": 200}})  # minutes, unless cancelled
    result: list[JobState | None] = []
    runner = threading.Thread(target=lambda: result.append(execution.run_job(ctx, job_id)), daemon=True)
    runner.start()
    deadline = time.monotonic() + 120
    while load(ctx, job_id).progress.get("global_step", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    ranks = spawned_children(os.getpid())
    assert len(ranks) == 2

    with transaction(ctx.sessions) as session:
        repository.request_cancel(session, session.get(Job, job_id))  # type: ignore[arg-type]
    asked = time.monotonic()
    runner.join(timeout=60)

    assert result == [JobState.CANCELLED]
    print(f"cancel -> cancelled with 2 ranks: {time.monotonic() - asked:.2f}s")
    job = load(ctx, job_id)
    assert job.checkpoint_key and ctx.store.exists(job.checkpoint_key)  # rank 0's stop checkpoint
    assert int(Path(job.checkpoint_key).stem) >= 3
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)


def test_more_cpu_ranks_than_the_worker_has_cores_fail_at_once_naming_both(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 ranks on a 2-core worker used to start: every rank imported torch before the first step, the
    # machine's load passed 20, and a cancel waited until the ranks reached the training loop.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    job_id = submit(ctx, TWO)
    assert execution.run_job(ctx, job_id) == JobState.FAILED
    job = load(ctx, job_id)
    assert (job.error_type, job.attempt) == ("invalid_input", 1)
    assert job.error_message is not None
    assert job.error_message.startswith(
        "TooManyProcesses: train.processes is 2 but this worker may use 1 CPU core; CPU ranks beyond its "
        "cores only wait for each other: use at most 1"
    ), job.error_message
