"""The worker's Celery app: tasks registered by the contract's names, one job per fresh process, nothing
opened before the fork, and the task bodies (run in this process with ``apply``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from celery import Celery, signals

from jobs import auth, repository
from jobs.db import transaction
from jobs.models import Job, utcnow
from jobs.queue import MAINTENANCE_QUEUE, REAP_TASK, RUN_JOB_TASK
from jobs.settings import Settings
from jobs.spec import dump_spec, parse_spec
from worker import celery_app
from worker.context import WorkerContext, build_context

SPEC = parse_spec(
    {
        "model": {"architecture": "mlp"},
        "dataset": {"source": "digits", "limit": 300},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
    }
)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=sqlite_url, queued_resend_seconds=5, lease_seconds=5)


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    yield celery_app.create_worker_app(settings)
    if celery_app._Process.context is not None:
        celery_app._Process.context.close()
    celery_app._Process.app = celery_app._Process.settings = celery_app._Process.context = None


@pytest.fixture
def sent(app: Celery, settings: Settings) -> Iterator[list[tuple[str, str, int | None]]]:
    """The process context, with the broker replaced by a list of what would have been sent."""
    messages: list[tuple[str, str, int | None]] = []
    celery_app._Process.context = build_context(settings, send=lambda *m: messages.append(m))
    yield messages


def add_job(ctx: WorkerContext, **fields: object) -> str:
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        job, _ = repository.create_job(
            session,
            owner=owner,
            spec=dump_spec(SPEC),
            summary={
                "method": "lbc",
                "pattern": "2:4",
                "architecture": "mlp",
                "queue": "cpu",
                "time_limit_s": 60,
            },
            idempotency_key=None,
            max_attempts=2,
            max_active_jobs=100,
        )
        for name, value in fields.items():
            setattr(job, name, value)
        return job.id


def test_tasks_are_registered_by_the_contract_names_with_one_job_per_fresh_process(app: Celery) -> None:
    assert {RUN_JOB_TASK, REAP_TASK} <= set(app.tasks)
    assert app.conf.task_routes[REAP_TASK] == {"queue": MAINTENANCE_QUEUE}
    assert app.tasks[RUN_JOB_TASK].ignore_result
    conf = app.conf
    assert (conf.worker_concurrency, conf.worker_prefetch_multiplier, conf.worker_max_tasks_per_child) == (
        1,
        1,
        1,
    )
    assert conf.task_acks_late is False
    assert not conf.worker_disable_prefetch  # only the Redis transport supports it


def test_redis_workers_do_not_reserve_a_second_job(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    try:
        assert celery_app.create_worker_app(settings).conf.worker_disable_prefetch is True
    finally:
        celery_app._Process.app = celery_app._Process.settings = None


def test_nothing_is_opened_before_the_fork_and_each_child_builds_its_own(app: Celery) -> None:
    assert celery_app._Process.context is None
    assert not torch.cuda.is_initialized()

    signals.worker_process_init.send(sender=None)
    first = celery_app._Process.context
    signals.worker_process_init.send(sender=None)  # a child forked from a parent that had one

    assert first is not None and celery_app._Process.context is not first
    signals.worker_process_shutdown.send(sender=None, pid=0, exitcode=0)
    assert celery_app._Process.context is None


def test_run_job_task_claims_runs_and_finishes(app: Celery, sent: list[tuple[str, str, int | None]]) -> None:
    ctx = celery_app.worker_context()
    job_id = add_job(ctx)

    app.tasks[RUN_JOB_TASK].apply(args=[job_id])
    app.tasks[RUN_JOB_TASK].apply(args=[job_id])  # a duplicate delivery changes nothing

    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.state, job.attempt) == ("succeeded", 1)
        assert job.worker_id == ctx.worker_id
    assert sent == []


def test_reap_task_requeues_lost_jobs_and_resends_after_commit(
    app: Celery, sent: list[tuple[str, str, int | None]]
) -> None:
    ctx = celery_app.worker_context()
    long_ago = utcnow() - timedelta(minutes=10)
    lost = add_job(ctx, state="running", attempt=1, worker_id="gone/1", lease_expires_at=long_ago)
    dead = add_job(ctx, state="running", attempt=2, worker_id="gone/2", lease_expires_at=long_ago)
    forgotten = add_job(ctx, queued_at=long_ago)
    fresh = add_job(ctx)

    app.tasks[REAP_TASK].apply()

    with transaction(ctx.sessions) as session:
        states = {job_id: session.get(Job, job_id).state for job_id in (lost, dead, forgotten, fresh)}  # type: ignore[union-attr]
        assert session.get(Job, dead).error_type == "worker_lost"  # type: ignore[union-attr]
    assert states == {lost: "queued", dead: "failed", forgotten: "queued", fresh: "queued"}
    assert sorted(sent) == sorted([(lost, "cpu", 60), (forgotten, "cpu", 60)])
