"""A worker whose database is briefly unreachable, with the failures injected where they happen.

The whole story against a real PostgreSQL behind a proxy that goes away is in
``tests/integration/test_database_outage.py``; these pin each decision: the end of an attempt is
retried for at most a lease, a checkpoint that cannot be recorded does not stop training, and what an
attempt published is deleted only when no row can reference it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from jobs import auth, repository
from jobs.db import transaction
from jobs.models import Job
from jobs.settings import Settings
from jobs.spec import dump_spec, parse_spec
from jobs.states import JobState
from lbc_core.training.checkpoint import TrainingState
from worker import callback, execution
from worker.context import WorkerContext, build_context
from worker.reporting import JobReporter

SPEC: dict[str, Any] = {
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits"},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
}


def lost_connection() -> Exception:
    return sa_exc.OperationalError("UPDATE jobs", {}, ConnectionError("server closed the connection"))


def fails(times: int, then: Callable[..., Any]) -> Callable[..., Any]:
    """``then``, except that the first ``times`` calls raise a lost connection."""
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise lost_connection()
        return then(*args, **kwargs)

    return call


@pytest.fixture
def ctx(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerContext]:
    monkeypatch.setattr(execution, "FINISH_RETRY_FIRST_S", 0.01)
    context = build_context(
        Settings(home=tmp_path / "home", database_url=sqlite_url, lease_seconds=30), worker_id="w/1"
    )
    yield context
    context.close()


def claimed(ctx: WorkerContext) -> Job:
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        job, _ = repository.create_job(
            session,
            owner=owner,
            spec=dump_spec(parse_spec(SPEC)),
            summary={"method": "lbc", "pattern": "2:4", "architecture": "mlp", "queue": "cpu"},
            idempotency_key=None,
            max_attempts=3,
            max_active_jobs=100,
        )
        job_id = job.id
    job = execution.claim(ctx, job_id)
    assert job is not None
    return job


def state_of(ctx: WorkerContext, job_id: str) -> Job:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def published(ctx: WorkerContext, job: Job) -> execution.Outcome:
    """A succeeded outcome whose one artifact is really in the store."""
    prefix = execution.publish_prefix(job.id, job.attempt)
    stored = ctx.store.put_bytes(prefix + "model.safetensors", b"weights")
    artifact = {
        "name": "model.safetensors",
        "size": stored.size,
        "sha256": stored.sha256,
        "content_type": stored.content_type,
        "storage_key": stored.key,
    }
    return execution.Outcome("succeeded", artifacts=[artifact], result={"ok": True}, published=prefix)


def test_the_end_of_an_attempt_waits_for_a_database_that_is_briefly_away(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = claimed(ctx)
    outcome = published(ctx, job)
    monkeypatch.setattr(execution, "_lock_if_owned", fails(2, execution._lock_if_owned))

    assert execution.finish(ctx, job, outcome) == JobState.SUCCEEDED

    assert state_of(ctx, job.id).state == "succeeded"
    assert ctx.store.list(outcome.published or "") == [outcome.artifacts[0]["storage_key"]]
    retries = [r.getMessage() for r in caplog.records if "database is unreachable" in r.getMessage()]
    assert len(retries) == 2 and "OperationalError" in retries[0], retries


def test_the_end_of_an_attempt_is_given_up_after_a_lease_and_the_reaper_takes_over(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "FINISH_RETRY_FIRST_S", 0.01)
    ctx = build_context(
        Settings(home=tmp_path / "home", database_url=sqlite_url, lease_seconds=0.1), worker_id="w/1"
    )
    try:
        job = claimed(ctx)
        outcome = published(ctx, job)
        monkeypatch.setattr(execution, "_lock_if_owned", fails(1000, execution._lock_if_owned))

        with pytest.raises(sa_exc.OperationalError):
            execution.finish(ctx, job, outcome)

        assert state_of(ctx, job.id).state == "running"  # the lease expires; the reaper re-queues it
        # A commit may have been lost in flight: nothing that a row might reference is deleted.
        assert ctx.store.list(outcome.published or "") != []
    finally:
        ctx.close()


def test_an_attempt_that_lost_its_job_deletes_what_it_published(ctx: WorkerContext) -> None:
    job = claimed(ctx)
    outcome = published(ctx, job)
    with transaction(ctx.sessions) as session:  # the reaper gave the job to another worker meanwhile
        row = session.get(Job, job.id)
        assert row is not None
        row.worker_id = "other/2"

    assert execution.finish(ctx, job, outcome) is None

    assert ctx.store.list(outcome.published or "") == []
    assert state_of(ctx, job.id).worker_id == "other/2"


def test_a_lost_answer_to_the_commit_keeps_the_published_artifacts(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The success was committed but the connection broke before the answer came: the retry finds the
    job no longer running, and must not delete the artifacts its rows reference."""
    job = claimed(ctx)
    outcome = published(ctx, job)
    commit_then_lose_answer = {"done": False}
    lock_if_owned = execution._lock_if_owned

    def lock(session: Any, job_id: str, worker_id: str) -> Any:
        if not commit_then_lose_answer["done"]:
            commit_then_lose_answer["done"] = True
            with transaction(ctx.sessions) as other:
                repository.finish_success(other, job_id, worker_id, outcome.artifacts, outcome.result or {})
            raise lost_connection()
        return lock_if_owned(session, job_id, worker_id)

    monkeypatch.setattr(execution, "_lock_if_owned", lock)

    assert execution.finish(ctx, job, outcome) is None

    assert state_of(ctx, job.id).state == "succeeded"
    assert ctx.store.list(outcome.published or "") == [outcome.artifacts[0]["storage_key"]]


def test_a_checkpoint_that_cannot_be_recorded_does_not_stop_training(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = claimed(ctx)
    reporter = JobReporter(ctx, job.id, job.attempt)
    publisher = callback.CheckpointPublisher(ctx, job, reporter)
    path = tmp_path / "state.pt"
    path.write_bytes(b"training state")

    def state(global_step: int) -> TrainingState:
        return TrainingState(1, 0, global_step, {}, {}, {}, {}, [], {}, {})

    monkeypatch.setattr(repository, "set_checkpoint", fails(1, repository.set_checkpoint))
    assert publisher.publish(path, state(10)) is None  # logged, training goes on
    assert not reporter.lost

    assert publisher.publish(path, state(20)) == f"jobs/{job.id}/checkpoints/20.pt"
    assert state_of(ctx, job.id).checkpoint_key == f"jobs/{job.id}/checkpoints/20.pt"
    assert ctx.store.list(f"jobs/{job.id}/checkpoints/") == [f"jobs/{job.id}/checkpoints/20.pt"]


def test_other_database_errors_while_recording_a_checkpoint_still_fail_the_attempt(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = claimed(ctx)
    publisher = callback.CheckpointPublisher(ctx, job, JobReporter(ctx, job.id, job.attempt))
    path = tmp_path / "state.pt"
    path.write_bytes(b"training state")

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise sa_exc.ProgrammingError("UPDATE jobs", {}, ValueError("no such column"))

    monkeypatch.setattr(repository, "set_checkpoint", bug)
    with pytest.raises(sa_exc.ProgrammingError):
        publisher.publish(path, TrainingState(1, 0, 5, {}, {}, {}, {}, [], {}, {}))


@pytest.fixture(autouse=True)
def _worker_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="worker")
