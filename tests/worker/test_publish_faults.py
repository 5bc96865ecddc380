"""Failures while a job publishes its artifacts: all or nothing, on the local store and on S3 (moto).

The store breaks on the second artifact of an attempt (a full disk, an S3 error): the attempt must
publish nothing (no artifact row, no object left under the job's artifact prefix, the job not
succeeded), end with a reason that names the artifact and the error, and a later attempt must publish
the complete set.
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from jobs import auth, repository
from jobs.db import transaction
from jobs.models import Artifact, Job
from jobs.settings import Settings
from jobs.spec import dump_spec, parse_spec
from jobs.states import JobState
from jobs.storage import ObjectStore, S3Store
from worker import execution
from worker.context import WorkerContext, build_context

SPEC: dict[str, Any] = {  # well under a second of training; no speedup report, to stay fast
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 400},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
    "benchmark": {"enabled": False},
}
ARTIFACTS = {
    "model.safetensors",
    "masks.safetensors",
    "model.nm.safetensors",
    "manifest.json",
    "metrics.json",
    "job.log",
}
FailureFactory = Callable[[], Exception]


def disk_full() -> Exception:
    return OSError(errno.ENOSPC, "No space left on device")


def s3_unavailable() -> Exception:
    error = {"Code": "ServiceUnavailable", "Message": "Please reduce your request rate."}
    return ClientError({"Error": error}, "PutObject")


@pytest.fixture(params=["local", "s3"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Iterator[WorkerContext]:
    values: dict[str, Any] = {"home": tmp_path / "home", "database_url": sqlite_url, "heartbeat_seconds": 0.2}
    if request.param == "s3":
        moto_s3 = request.getfixturevalue("moto_s3")
        values.update(
            storage_backend="s3",
            s3_bucket=moto_s3.bucket,
            s3_endpoint_url=moto_s3.endpoint_url,
            s3_prefix=f"t-{uuid.uuid4().hex}",  # this test's own namespace in the session bucket
        )
    context = build_context(Settings(**values), worker_id="test-worker/1")
    yield context
    context.close()


def failure_of(ctx: WorkerContext) -> FailureFactory:
    return s3_unavailable if isinstance(ctx.store, S3Store) else disk_full


def break_store(
    monkeypatch: pytest.MonkeyPatch,
    store: ObjectStore,
    failure: FailureFactory,
    *,
    nth: int,
    deletes: bool = True,
) -> list[str]:
    """From the ``nth`` artifact put of each attempt on, the store raises ``failure()``, after writing
    part of the object like a disk that fills up mid-file; checkpoints are still stored. Returns the
    keys it refused."""
    put_file, delete_prefix = store.put_file, store.delete_prefix
    refused: list[str] = []
    per_attempt: dict[str, int] = {}

    def failing_put(key: str, path: str | Path, content_type: str | None = None) -> Any:
        if "/artifacts/" in key:
            folder = key.rsplit("/", 1)[0]
            per_attempt[folder] = per_attempt.get(folder, 0) + 1
            if per_attempt[folder] >= nth:
                refused.append(key)
                raise failure()
        return put_file(key, path, content_type)

    def failing_delete_prefix(prefix: str) -> int:
        if not deletes:
            raise failure()
        return delete_prefix(prefix)

    monkeypatch.setattr(store, "put_file", failing_put)
    monkeypatch.setattr(store, "delete_prefix", failing_delete_prefix)
    return refused


def submit(ctx: WorkerContext, *, max_attempts: int) -> str:
    parsed = parse_spec(SPEC)
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        job, _ = repository.create_job(
            session,
            owner=owner,
            spec=dump_spec(parsed),
            summary={"method": "lbc", "pattern": "2:4", "architecture": "mlp", "queue": "cpu"},
            idempotency_key=None,
            max_attempts=max_attempts,
            max_active_jobs=100,
        )
        return job.id


def load(ctx: WorkerContext, job_id: str) -> tuple[Job, list[Artifact]]:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job, list(session.scalars(select(Artifact).where(Artifact.job_id == job_id)))


def test_a_store_failing_mid_publish_publishes_nothing_and_the_retry_publishes_everything(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = submit(ctx, max_attempts=3)
    with monkeypatch.context() as broken:
        refused = break_store(broken, ctx.store, failure_of(ctx), nth=2)
        assert execution.run_job(ctx, job_id) == JobState.QUEUED

    job, artifacts = load(ctx, job_id)
    assert (job.state, job.error_type, job.attempt) == ("queued", "publish_error", 1)
    assert artifacts == [] and job.result is None
    name = refused[0].rsplit("/", 1)[1]
    message = job.error_message or ""
    assert f"could not store artifact {name} (2 of {len(ARTIFACTS)})" in message
    assert ("ServiceUnavailable" if isinstance(ctx.store, S3Store) else "No space left on device") in message
    assert "nothing was published (1 stored before it deleted)" in message
    assert ctx.store.list(execution.artifact_prefix(job_id)) == []  # the first artifact is gone too
    assert ctx.store.list(f"jobs/{job_id}/checkpoints/")  # training state kept for the retry

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    job, artifacts = load(ctx, job_id)
    assert (job.state, job.attempt, job.error_type) == ("succeeded", 2, None)
    assert {a.name for a in artifacts} == ARTIFACTS
    assert sorted(ctx.store.list(execution.artifact_prefix(job_id))) == sorted(
        a.storage_key for a in artifacts
    )
    for artifact in artifacts:
        assert ctx.store.stat(artifact.storage_key).size == artifact.size


def test_a_store_that_stays_broken_fails_the_job_and_publishes_nothing(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even deleting fails (the store is down): the objects stored before the failure stay under the
    attempt's own prefix, which no artifact row names, and the reason says so."""
    job_id = submit(ctx, max_attempts=1)
    refused = break_store(monkeypatch, ctx.store, failure_of(ctx), nth=3, deletes=False)

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job, artifacts = load(ctx, job_id)
    assert (job.state, job.error_type, job.attempt) == ("failed", "publish_error", 1)
    assert artifacts == [] and job.result is None
    prefix = refused[0].rsplit("/", 1)[0] + "/"
    assert f"the artifacts stored before it are left unreferenced under {prefix}" in (job.error_message or "")
    assert len(ctx.store.list(prefix)) == 2


def test_every_attempt_publishes_under_a_prefix_of_its_own() -> None:
    """Also across a retry, which starts the attempt numbers again: an attempt that cleans up after a
    failed publish can never delete, nor overwrite, objects that another attempt published."""
    prefixes = {execution.publish_prefix("job1", attempt) for attempt in (1, 1, 2)}
    assert len(prefixes) == 3
    assert all(prefix.startswith(execution.artifact_prefix("job1")) for prefix in prefixes)
