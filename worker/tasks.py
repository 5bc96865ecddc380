"""The Celery tasks, registered by the names in ``jobs.queue``. Bodies stay a few lines: the work is in
``worker.execution``; :func:`service_task` sets name, queue, result handling and the log context."""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from sqlalchemy import select

from jobs import repository
from jobs.db import transaction
from jobs.errors import Conflict
from jobs.models import Job
from jobs.queue import GPU_QUEUE, MAINTENANCE_QUEUE, REAP_TASK, RUN_JOB_TASK
from worker.context import WorkerContext

log = logging.getLogger(__name__)

_log_context: contextvars.ContextVar[str] = contextvars.ContextVar("lbc_log_context", default="-")


class LogContextFilter(logging.Filter):
    """Adds ``%(context)s`` (task and job id) to every record, for the worker's log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _log_context.get()
        return True


ContextGetter = Callable[[], WorkerContext]


def service_task(
    app: Celery, name: str, queue: str, get_context: ContextGetter
) -> Callable[[Callable[..., None]], Any]:
    """Register ``fn(ctx, *args)`` as the task ``name`` routed to ``queue`` by default: the worker context
    is passed in, results are ignored (the database holds them), and every log line inside names the task
    and its arguments."""

    def decorate(fn: Callable[..., None]) -> Any:
        @functools.wraps(fn)
        def body(*args: Any) -> None:
            # Celery itself logs receipt, success with its duration, and failures with the traceback.
            token = _log_context.set(" ".join([name, *map(str, args)]))
            try:
                fn(get_context(), *args)
            finally:
                _log_context.reset(token)

        routes = dict(app.conf.task_routes or {})
        routes[name] = {"queue": queue}
        app.conf.task_routes = routes
        # typing=False: the wrapped signature has the context first, which callers never send.
        # shared=False: registered on this app only, not on every Celery app created later.
        return app.task(name=name, ignore_result=True, typing=False, shared=False)(body)

    return decorate


def register(app: Celery, get_context: ContextGetter) -> None:
    service_task(app, RUN_JOB_TASK, GPU_QUEUE, get_context)(run_job)
    service_task(app, REAP_TASK, MAINTENANCE_QUEUE, get_context)(reap)


def run_job(ctx: WorkerContext, job_id: str) -> None:
    # Imported here so a maintenance-only worker never loads torch; `lbc worker` preloads it in the
    # parent of job workers, so forked children start with it already imported.
    from worker import execution, lifecycle

    if ctx.parent_pid is not None:  # a pool child: from here on, a SIGTERM hands the job back
        lifecycle.stop_cleanly_on_sigterm(ctx)
    if ctx.shutdown.requested:
        # A message the worker had reserved before its shutdown (transports without disable_prefetch):
        # do not start the job, ring the bell again for another worker or the next start.
        execution.pass_on(ctx, job_id)
        return
    job = execution.claim(ctx, job_id)
    if job is None:  # duplicate or stale delivery: the compare-and-set makes it harmless
        return
    execution.finish(ctx, job, execution.execute(ctx, job))


def reap(ctx: WorkerContext) -> None:
    """Re-queue jobs whose worker is gone and re-send jobs whose message was lost, in one transaction;
    the messages go out only after it committed."""
    try:
        with transaction(ctx.sessions) as session:
            result = repository.reap(session, queued_resend_seconds=ctx.settings.queued_resend_seconds)
            ids = [job_id for job_id, _ in result.resend]
            limits = dict(session.execute(select(Job.id, Job.time_limit_s).where(Job.id.in_(ids))).all())
    except Conflict as exc:  # another reaper changed a row first; the next tick sees the new state
        log.info("reap skipped: %s", exc)
        return
    for job_id, queue in result.resend:
        ctx.send(job_id, queue, limits.get(job_id))
    if result.requeued or result.failed or result.cancelled or result.resend:
        log.info(
            "reaped: requeued=%s failed=%s cancelled=%s resent=%s",
            result.requeued,
            result.failed,
            result.cancelled,
            [job_id for job_id, _ in result.resend],
        )
