"""One attempt of a claimed job, in this process against SQLite and a local store (no Celery, no broker)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import func, select

from jobs import auth, repository
from jobs.db import transaction
from jobs.models import Artifact, Dataset, Job, JobEvent
from jobs.settings import Settings
from jobs.spec import dump_spec, parse_spec
from jobs.states import JobState
from lbc_core.sparsity import NMPattern, count_violations
from lbc_core.training import StepEvent
from worker import execution, tasks
from worker.callback import ServiceCallback
from worker.context import ShutdownRequest, WorkerContext, build_context

FAST: dict[str, Any] = {  # well under a second of training
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 600},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu"},
}
SLOW: dict[str, Any] = {  # 90 steps per epoch; tests that stop it early make it long
    "model": {"architecture": "lenet5"},
    "dataset": {"source": "digits"},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "device": "cpu"},
}


def long_running(spec: dict[str, Any], epochs: int = 50) -> dict[str, Any]:
    """The same job with many more epochs (minutes): whatever stops it early, it is not the end of training."""
    longer = json.loads(json.dumps(spec))
    longer["train"]["epochs"] = epochs
    return longer


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=sqlite_url,
        lease_seconds=30,
        heartbeat_seconds=0.2,
        progress_interval_seconds=0.05,
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    sent: list[tuple[str, str, int | None]] = []
    context = build_context(settings, worker_id="test-worker/1", send=lambda *a: sent.append(a))
    context.sent = sent  # type: ignore[attr-defined]
    yield context
    context.close()


def submit(ctx: WorkerContext, spec: dict[str, Any], **job_fields: Any) -> str:
    parsed = parse_spec(spec)
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        job, _ = repository.create_job(
            session,
            owner=owner,
            spec=dump_spec(parsed),
            summary={
                "method": parsed.sparsity.method,
                "pattern": f"{parsed.sparsity.n}:{parsed.sparsity.m}",
                "architecture": parsed.model.architecture,
                "queue": "cpu",
                **job_fields,
            },
            idempotency_key=None,
            max_attempts=3,
            max_active_jobs=100,
        )
        return job.id


def load(ctx: WorkerContext, job_id: str) -> Job:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def artifact_count(ctx: WorkerContext, job_id: str) -> int:
    with transaction(ctx.sessions) as session:
        return int(
            session.scalar(select(func.count()).select_from(Artifact).where(Artifact.job_id == job_id)) or 0
        )


def events(ctx: WorkerContext, job_id: str, kind: str | None = None) -> list[JobEvent]:
    with transaction(ctx.sessions) as session:
        return repository.list_events(session, job_id, kinds=[kind] if kind else None, limit=100_000)


def run_in_thread(ctx: WorkerContext, job_id: str) -> tuple[threading.Thread, list[JobState | None]]:
    result: list[JobState | None] = []
    thread = threading.Thread(target=lambda: result.append(execution.run_job(ctx, job_id)), daemon=True)
    thread.start()
    return thread, result


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cancel_after(ctx: WorkerContext, job_id: str, global_step: int) -> None:
    wait_for(lambda: load(ctx, job_id).progress.get("global_step", 0) >= global_step, 60, "training progress")
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        repository.request_cancel(session, job)


def masks_of(ctx: WorkerContext, job_id: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    with transaction(ctx.sessions) as session:
        artifact = repository.get_artifact(session, job_id, "masks.safetensors")
    path = tmp_path / f"{job_id}-masks.safetensors"
    ctx.store.download_file(artifact.storage_key, path)
    return load_file(path)


# -- success ------------------------------------------------------------------------------------------------
def test_success_publishes_every_artifact_and_the_summary(ctx: WorkerContext, tmp_path: Path) -> None:
    job_id = submit(ctx, FAST)

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    job = load(ctx, job_id)
    assert job.state == "succeeded" and job.attempt == 1 and job.phase == "done"
    assert job.result is not None
    assert job.result["verified_nm"] is True and 0.4 < job.result["density"] < 1.0
    assert job.result["val_accuracy"] > 0.5 and job.result["device"] == "cpu"
    with transaction(ctx.sessions) as session:
        artifacts = {a.name: a for a in repository.list_artifacts(session, job_id)}
    assert set(artifacts) == {
        "model.safetensors",
        "masks.safetensors",
        "model.nm.safetensors",
        "manifest.json",
        "metrics.json",
        "speedup_report.json",  # benchmark.enabled defaults to true (tests/worker/test_benchmarking.py)
        "speedup_report.html",
        "speedup_chart.svg",
        "job.log",
    }
    for artifact in artifacts.values():
        local = tmp_path / artifact.name
        ctx.store.download_file(artifact.storage_key, local)
        assert local.stat().st_size == artifact.size
        assert execution_sha256(local) == artifact.sha256
        assert re.fullmatch(
            rf"jobs/{job_id}/artifacts/a1-[0-9a-f]{{12}}/{re.escape(artifact.name)}", artifact.storage_key
        )
    weights = load_file(tmp_path / "model.safetensors")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    sparse = [layer["name"] for layer in manifest["layers"] if layer.get("verified_nm")]
    assert sparse, manifest["layers"]
    for name in sparse:
        assert count_violations(weights[f"{name}.weight"], NMPattern(2, 4)) == 0
    assert "phase: uploading" in (tmp_path / "job.log").read_text()

    phases = [e.data["phase"] for e in events(ctx, job_id, "phase")]
    assert phases == ["preparing data", "training", "finalizing", "benchmarking", "uploading"]
    assert len(events(ctx, job_id, "metrics")) == 2
    assert events(ctx, job_id, "progress")
    log_lines = [line for e in events(ctx, job_id, "log") for line in e.data["lines"]]
    assert any("epoch 2/2" in line for line in log_lines)
    # The training checkpoints are deleted once the job has succeeded; the scratch directory is gone.
    assert ctx.store.list(f"jobs/{job_id}/checkpoints/") == []
    assert not any((ctx.settings.home / "scratch").iterdir())


def execution_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_job_asking_for_onnx_publishes_both_graphs_with_the_manifests_hashes(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    spec = json.loads(json.dumps(FAST))
    spec["export"] = {"onnx": True}
    spec["benchmark"] = {"enabled": False}
    job_id = submit(ctx, spec)
    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED
    job = load(ctx, job_id)
    assert job.result is not None
    assert job.result["onnx"] == {
        "status": "exported",
        "files": {"model.onnx": "verified", "model.fp16.onnx": "verified"},
    }
    with transaction(ctx.sessions) as session:
        artifacts = {a.name: a for a in repository.list_artifacts(session, job_id)}
    assert {"model.onnx", "model.fp16.onnx", "manifest.json"} <= set(artifacts)
    manifest_path = tmp_path / "manifest.json"
    ctx.store.download_file(artifacts["manifest.json"].storage_key, manifest_path)
    listed = {entry["name"]: entry for entry in json.loads(manifest_path.read_text())["files"]}
    for name in ("model.onnx", "model.fp16.onnx"):
        assert artifacts[name].sha256 == listed[name]["sha256"]
        assert artifacts[name].content_type == "application/octet-stream"


def test_artifact_rows_and_succeeded_are_one_transaction(ctx: WorkerContext) -> None:
    job_id = submit(ctx, FAST)
    job = execution.claim(ctx, job_id)
    assert job is not None
    row = {"name": "x", "size": 1, "sha256": "0" * 64, "content_type": "text/plain", "storage_key": "k"}
    outcome = execution.Outcome("succeeded", artifacts=[row, dict(row)], result={"val_accuracy": 1.0})

    with pytest.raises(Exception, match="UNIQUE"):  # the second row breaks the unique (job, name)
        execution.finish(ctx, job, outcome)

    assert load(ctx, job_id).state == "running"
    assert artifact_count(ctx, job_id) == 0


def test_uploaded_npz_and_mnist_datasets_are_downloaded_and_extracted(ctx: WorkerContext) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.random((200, 1, 8, 8), dtype=np.float32), y=np.arange(200) % 4)
    mnist_zip = io.BytesIO()
    with zipfile.ZipFile(mnist_zip, "w") as archive:  # wrapped in one folder, as people zip directories
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            archive.write(Path("/work/shared/data/mnist-t10k") / name, f"mnist/{name}")
    uploads = {"npz": ("data.npz", buffer.getvalue()), "mnist": ("digits.zip", mnist_zip.getvalue())}
    for fmt, (filename, payload) in uploads.items():
        with transaction(ctx.sessions) as session:
            owner = auth.get_or_create_owner(session, "alice")
            stored = ctx.store.put_bytes(f"datasets/{fmt}/{filename}", payload)
            dataset = Dataset(
                owner_id=owner.id,
                name=fmt,
                format=fmt,
                filename=filename,
                size=stored.size,
                sha256=stored.sha256,
                storage_key=stored.key,
            )
            session.add(dataset)
            session.flush()
            dataset_id = dataset.id
        spec = json.loads(json.dumps(FAST))
        spec["dataset"] = {"source": fmt, "path": dataset_id, "limit": 400}
        job_id = submit(ctx, spec, dataset_id=dataset_id)

        assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED, load(ctx, job_id).error_message


# -- failures -----------------------------------------------------------------------------------------------
def test_invalid_input_fails_fast_and_is_not_retried(ctx: WorkerContext) -> None:
    spec = json.loads(json.dumps(FAST))
    spec["sparsity"]["layers"] = {"include": ["no_such_layer*"]}
    job_id = submit(ctx, spec)
    started = time.monotonic()

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert time.monotonic() - started < 10
    assert (job.state, job.error_type, job.attempt) == ("failed", "invalid_input", 1)
    assert "no_such_layer" in (job.error_message or "")
    assert ctx.sent == []  # type: ignore[attr-defined]


def test_dataset_of_another_owner_is_invalid_input(ctx: WorkerContext) -> None:
    # The submit refuses another owner's upload under the owner lock, so the row is handed to mallory after
    # the job exists: the worker must not trust what was true at submit time.
    with transaction(ctx.sessions) as session:
        alice = auth.get_or_create_owner(session, "alice")
        stored = ctx.store.put_bytes("datasets/m/x.npz", b"not really")
        dataset = Dataset(
            owner_id=alice.id,
            name="x",
            format="npz",
            filename="x.npz",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
        )
        session.add(dataset)
        session.flush()
        dataset_id = dataset.id
    spec = json.loads(json.dumps(FAST))
    spec["dataset"] = {"source": "npz", "path": dataset_id}
    job_id = submit(ctx, spec)
    with transaction(ctx.sessions) as session:
        session.get_one(Dataset, dataset_id).owner_id = auth.get_or_create_owner(session, "mallory").id

    assert execution.run_job(ctx, job_id) == JobState.FAILED
    job = load(ctx, job_id)
    assert job.error_type == "invalid_input"
    assert "not one of the job owner's uploads" in (job.error_message or "")


def test_internal_errors_are_retried_and_the_job_is_sent_again(ctx: WorkerContext) -> None:
    job_id = submit(ctx, FAST)
    job = execution.claim(ctx, job_id)
    assert job is not None
    outcome = execution.Outcome("failed", error_type="internal_error", message="disk on fire", retryable=True)

    assert execution.finish(ctx, job, outcome) == JobState.QUEUED

    assert ctx.sent == [(job_id, "cpu", None)]  # type: ignore[attr-defined]
    assert load(ctx, job_id).error_message == "disk on fire"


def test_an_unexpected_error_shows_the_owner_a_reference_and_keeps_the_traceback_in_the_server_log(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = submit(ctx, FAST)
    scratch = ctx.settings.home / "scratch" / f"{job_id}-1"

    def crash(spec: Any, out_dir: Path, **_: Any) -> None:
        raise RuntimeError(f"cannot write {out_dir / 'metrics.json'}: disk on fire in /var/lib/lbc/disk0")

    monkeypatch.setattr(execution, "run_spec", crash)
    with caplog.at_level("INFO"):
        assert execution.run_job(ctx, job_id) == JobState.QUEUED  # retryable: attempts are left

    job = load(ctx, job_id)
    reference = re.search(
        r"\(reference ([0-9a-f]{12}); details in the server log\)$", job.error_message or ""
    )
    assert reference, job.error_message
    assert job.error_message.startswith(  # type: ignore[union-attr]
        "RuntimeError: cannot write run/metrics.json: disk on fire in .../disk0 (reference"
    )
    lines = [line for e in events(ctx, job_id, "log") for line in e.data["lines"]]
    failed = [line for line in lines if f"job {job_id} failed" in line]
    assert len(failed) == 1 and f"(reference {reference.group(1)})" in failed[0], lines
    job_log = "\n".join(lines)
    assert "Traceback" not in job_log and str(ctx.settings.home) not in job_log and "/var/lib" not in job_log
    # The server log has it all, under the same reference.
    server = [r for r in caplog.records if r.getMessage().endswith(f"(reference {reference.group(1)})")]
    assert len(server) == 1 and server[0].exc_info is not None
    assert str(scratch) in server[0].getMessage() and "/var/lib/lbc/disk0" in server[0].getMessage()


def test_an_input_error_names_files_without_server_paths(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = submit(ctx, FAST)

    def refuse(spec: Any, out_dir: Path, **_: Any) -> None:  # as an engine check names its input file
        raise ValueError(f"{out_dir.parent / 'inputs' / 'dataset.npz'}: array x contains NaN")

    monkeypatch.setattr(execution, "run_spec", refuse)
    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.error_type, job.error_message) == (
        "invalid_input",
        "ValueError: inputs/dataset.npz: array x contains NaN",  # relative to the attempt, no reference
    )
    lines = [line for e in events(ctx, job_id, "log") for line in e.data["lines"]]
    assert any(
        line.endswith("failed: invalid_input: ValueError: inputs/dataset.npz: array x contains NaN")
        for line in lines
    )
    assert str(ctx.settings.home) not in "\n".join(lines)


def test_time_limit_ends_the_job_failed_with_a_checkpoint(ctx: WorkerContext) -> None:
    spec = long_running(SLOW)
    spec["limits"] = {"time_limit_s": 1}
    job_id = submit(ctx, spec)

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.error_type, job.attempt) == ("time_limit", 1)
    # Where the limit hits depends on the machine's speed; the message names the limit and the place.
    assert re.fullmatch(
        r"time limit of 1s reached at epoch \d+, step \d+; the checkpoint is kept", job.error_message or ""
    ), job.error_message
    assert job.checkpoint_key and ctx.store.exists(job.checkpoint_key)


def test_a_worker_that_lost_its_lease_does_not_finish_the_job(ctx: WorkerContext, settings: Settings) -> None:
    job_id = submit(ctx, FAST)
    job = execution.claim(ctx, job_id)
    assert job is not None
    with transaction(ctx.sessions) as session:  # the reaper gave the job to someone else meanwhile
        session.get(Job, job_id).worker_id = "other-worker/2"  # type: ignore[union-attr]

    assert execution.finish(ctx, job, execution.execute(ctx, job)) is None

    job = load(ctx, job_id)
    assert (job.state, job.worker_id) == ("running", "other-worker/2")
    assert artifact_count(ctx, job_id) == 0


def test_duplicate_delivery_is_a_no_op(ctx: WorkerContext) -> None:
    job_id = submit(ctx, FAST)
    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED
    assert execution.run_job(ctx, job_id) is None
    assert execution.run_job(ctx, "0" * 32) is None
    assert load(ctx, job_id).attempt == 1


# -- cancel and resume --------------------------------------------------------------------------------------
def test_cancel_mid_run_stops_within_seconds_with_a_checkpoint(ctx: WorkerContext) -> None:
    job_id = submit(ctx, long_running(SLOW))
    thread, result = run_in_thread(ctx, job_id)

    cancel_after(ctx, job_id, global_step=5)
    asked = time.monotonic()
    thread.join(timeout=30)

    assert not thread.is_alive() and result == [JobState.CANCELLED]
    assert time.monotonic() - asked < 5
    job = load(ctx, job_id)
    assert job.state == "cancelled" and job.checkpoint_key
    assert ctx.store.exists(job.checkpoint_key)
    assert ctx.store.list(f"jobs/{job_id}/checkpoints/") == [job.checkpoint_key]


def test_a_worker_shutdown_hands_the_job_back_with_a_checkpoint_and_without_an_attempt(
    ctx: WorkerContext,
) -> None:
    job_id = submit(ctx, long_running(FAST, epochs=6))
    thread, result = run_in_thread(ctx, job_id)
    wait_for(lambda: load(ctx, job_id).checkpoint_key, 60, "the first checkpoint")

    ctx.shutdown.request("the worker is shutting down (SIGTERM)")  # what the SIGTERM handler does
    asked = time.monotonic()
    thread.join(timeout=30)

    assert not thread.is_alive() and result == [JobState.QUEUED]
    assert time.monotonic() - asked < 5
    job = load(ctx, job_id)
    assert (job.state, job.attempt, job.worker_id, job.error_type) == ("queued", 0, None, None)
    assert job.checkpoint_key and ctx.store.exists(job.checkpoint_key)
    stopped_at = int(Path(job.checkpoint_key).stem)
    assert (job_id, "cpu", None) in ctx.sent  # type: ignore[attr-defined]
    lines = [line for e in events(ctx, job_id, "log") for line in e.data["lines"]]
    assert any("handing it back to the queue (this attempt is not counted)" in line for line in lines)

    ctx.shutdown = ShutdownRequest()  # the next worker
    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED
    job = load(ctx, job_id)
    assert job.attempt == 1 and job.result is not None
    assert job.result["resumed_from"]["global_step"] >= stopped_at > 0


def test_a_shutdown_while_preparing_hands_the_job_back_before_training(ctx: WorkerContext) -> None:
    job_id = submit(ctx, FAST)
    ctx.shutdown.request("the worker is shutting down (SIGTERM)")

    assert execution.run_job(ctx, job_id) == JobState.QUEUED
    job = load(ctx, job_id)
    assert (job.state, job.attempt, job.checkpoint_key) == ("queued", 0, None)


def test_a_job_notices_that_its_parent_process_is_gone(ctx: WorkerContext) -> None:
    ctx.parent_pid = os.getppid()
    ctx.check_parent()
    assert not ctx.shutdown.requested
    ctx.parent_pid = os.getppid() + 1  # re-parented: the worker's main process died
    ctx.check_parent()
    assert ctx.shutdown.requested and "is gone" in (ctx.shutdown.reason or "")
    assert not ctx.shutdown.overdue(60) and ctx.shutdown.overdue(-1)


def test_resumed_job_continues_from_its_checkpoint_and_ends_like_an_uninterrupted_run(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = submit(ctx, SLOW)
    assert execution.run_job(ctx, reference) == JobState.SUCCEEDED

    job_id = submit(ctx, SLOW)
    on_step = ServiceCallback.on_step

    def cancel_at_step_40(self: ServiceCallback, event: StepEvent) -> None:
        """The user's cancel arrives exactly at step 40 (mid-epoch: 90 steps per epoch)."""
        on_step(self, event)
        if event.global_step == 40:
            with transaction(ctx.sessions) as session:
                repository.request_cancel(session, session.get(Job, job_id))  # type: ignore[arg-type]
            self.reporter.beat()

    monkeypatch.setattr(ServiceCallback, "on_step", cancel_at_step_40)
    assert execution.run_job(ctx, job_id) == JobState.CANCELLED
    monkeypatch.undo()
    stopped_at = load(ctx, job_id)
    assert stopped_at.checkpoint_key == f"jobs/{job_id}/checkpoints/40.pt"
    with transaction(ctx.sessions) as session:
        repository.retry_job(session, stopped_at, max_attempts=3)

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    resumed = [e.data["resumed_from"] for e in events(ctx, job_id, "phase") if "resumed_from" in e.data]
    assert resumed == [{"epoch": 1, "step": 40, "global_step": 40}]  # epoch 1 of the progress events
    log_lines = [line for e in events(ctx, job_id, "log") for line in e.data["lines"]]
    said = [line for line in log_lines if "resuming from" in line]
    assert len(said) == 1 and said[0].endswith(": epoch 1 after 40 of its steps (global step 40)"), said
    job = load(ctx, job_id)
    assert job.result is not None and job.result["resumed_from"] == resumed[0]  # the engine says the same
    expected, actual = masks_of(ctx, reference, tmp_path), masks_of(ctx, job_id, tmp_path)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_a_worker_that_is_shutting_down_passes_a_reserved_job_on_without_claiming_it(
    ctx: WorkerContext,
) -> None:
    job_id = submit(ctx, FAST)
    ctx.shutdown.request("the worker is shutting down")

    tasks.run_job(ctx, job_id)

    job = load(ctx, job_id)
    assert (job.state, job.attempt) == ("queued", 0)
    assert ctx.sent == [(job_id, "cpu", None)]  # type: ignore[attr-defined]
