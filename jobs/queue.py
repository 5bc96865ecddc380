"""The queue contract between the API and the workers: task names, queues, routing, and Celery settings.

The queue is only a doorbell: a task carries a job id and nothing else; the job row says what to
do. Tasks are sent by name, so the API never imports worker code.

Which queues exist is decided here and in the settings (``LBC_GPU_QUEUES``, ``LBC_CPU_QUEUES``): a job may
name only one of those (a queue nobody consumes would leave it queued forever), never the reaper's
``maintenance`` queue, and by default goes where its device runs (``route_job``).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from jobs.settings import Settings

RUN_JOB_TASK = "lbc.run_job"
REAP_TASK = "lbc.reap"
GPU_QUEUE = "gpu"
MAINTENANCE_QUEUE = "maintenance"
RESERVED_QUEUES = frozenset({MAINTENANCE_QUEUE})
# The spec's ``limits.queue`` that lets the service choose by device.
ROUTE_BY_DEVICE = "default"


def job_queues(settings: Settings) -> tuple[str, ...]:
    """Every queue a job may be sent to: the GPU pools first, then the CPU pools."""
    return (*settings.gpu_queues, *settings.cpu_queues)


def consumed_queues(settings: Settings) -> tuple[str, ...]:
    """What a worker that runs everything consumes (``lbc serve``'s worker, ``lbc worker`` by default)."""
    return (*job_queues(settings), MAINTENANCE_QUEUE)


def route_job(requested: str, device: str, settings: Settings) -> tuple[str | None, str | None]:
    """``(queue, None)`` for a job asking for ``requested`` (a spec's ``limits.queue``) on ``device``
    (``auto``, ``cpu``, ``cuda``, ``cuda:N``), or ``(None, problem)``.

    ``default`` routes by device: ``cpu`` to the first CPU queue, anything else to the default (GPU)
    queue. A named queue must exist and agree with the device: a CUDA job on a CPU pool, or a CPU job
    holding a GPU, is refused rather than failed or wasted later.
    """
    gpu, cpu = settings.gpu_queues, settings.cpu_queues
    if requested == ROUTE_BY_DEVICE:
        return (cpu[0] if device == "cpu" else settings.default_queue), None
    allowed = ", ".join((ROUTE_BY_DEVICE, *job_queues(settings)))
    if requested in RESERVED_QUEUES:
        return None, f"queue {requested!r} is reserved for the service's own tasks; allowed: {allowed}"
    if requested not in gpu and requested not in cpu:
        return None, f"unknown queue {requested!r}; allowed: {allowed}"
    if device == "cpu" and requested in gpu:
        return None, f"queue {requested!r} is a GPU queue and the device is cpu; use one of: {', '.join(cpu)}"
    if device.startswith("cuda") and requested in cpu:
        return (
            None,
            f"queue {requested!r} has no GPU and the device is {device}; use one of: {', '.join(gpu)}",
        )
    return requested, None


def make_celery(settings: Settings, name: str = "lbc") -> Celery:
    app = Celery(name, broker=settings.broker_url)
    app.conf.update(
        task_ignore_result=True,  # results live in the database, not in a result backend
        task_default_queue=settings.default_queue,
        # One job per worker process at a time, no hoarding of queued jobs by a busy worker,
        # and a fresh process per job so no CUDA or memory state leaks from one job to the next.
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=1,
        # Ack on receipt: redelivery of long tasks is the reaper's job (the DB knows the truth),
        # which sidesteps Redis' visibility-timeout redelivery of hour-long training tasks.
        task_acks_late=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "reap-lost-jobs": {
                "task": REAP_TASK,
                "schedule": settings.reaper_interval_seconds,
                # Behind a busy worker (embedded mode) reap messages would pile up; a stale one is
                # superseded by newer ones, so it expires, but only after several intervals: a
                # shorter expiry silently drops reaps and delays recovery.
                "options": {
                    "queue": MAINTENANCE_QUEUE,
                    "expires": max(4 * settings.reaper_interval_seconds, 30.0),
                },
            }
        },
    )
    return app


def send_job(app: Celery, job_id: str, queue: str, *, time_limit_s: int | None = None) -> None:
    """Ring the bell for ``job_id``; call only after the job row is committed."""
    options: dict[str, Any] = {"queue": queue}
    if time_limit_s:
        # The training loop enforces the limit itself and fails cleanly; the hard limit is a backstop.
        options["time_limit"] = time_limit_s + 120
    app.send_task(RUN_JOB_TASK, args=[job_id], **options)
