"""The worker's Celery application: the queue contract of ``jobs.queue`` plus our tasks and fork hooks.

``lbc worker`` builds it with :func:`create_worker_app` and runs it in-process. The module-level ``app``
exists only for Celery's own command line (``celery -A worker.celery_app inspect ...``), which looks
for an attribute named ``app``; it is built on first access (PEP 562 ``__getattr__``) so that importing
this module reads no environment and opens nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from jobs.queue import make_celery
from jobs.settings import Settings, get_settings
from worker import lifecycle, tasks
from worker.context import WorkerContext, build_context, default_worker_id

log = logging.getLogger(__name__)


class _Process:
    """Per-process state: the settings the app was built with, the Celery node name (set in the parent
    before the fork) and the context (built in each child after the fork)."""

    app: Celery | None = None
    settings: Settings | None = None
    node_name: str | None = None
    context: WorkerContext | None = None
    shutting_down = False


def create_worker_app(settings: Settings) -> Celery:
    """Celery app with the run/reap tasks registered by name and the per-child database engine."""
    app = make_celery(settings, name="lbc-worker")
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Without it a busy worker still reserves one more message and sits on it until its job ends;
        # only the Redis transport supports turning that off.
        app.conf.worker_disable_prefetch = True
    tasks.register(app, worker_context)
    _Process.app, _Process.settings = app, settings
    _connect_signals()
    return app


def worker_context() -> WorkerContext:
    """This process's context; built on first use where no fork hook ran (solo pool, tests)."""
    if _Process.context is None:
        _Process.context = _new_context()
    return _Process.context


def _new_context() -> WorkerContext:
    settings = _Process.settings or get_settings()
    app = _Process.app

    def send(job_id: str, queue: str, time_limit_s: int | None) -> None:
        if app is None:
            return
        from jobs.queue import send_job

        send_job(app, job_id, queue, time_limit_s=time_limit_s)

    return build_context(settings, worker_id=default_worker_id(_Process.node_name), send=send)


_connected = False


def _connect_signals() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.worker_process_init.connect(_on_process_init, weak=False)
    signals.worker_process_shutdown.connect(_on_process_shutdown, weak=False)
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # The parent: remember the node name for worker ids; open nothing (children are forked from here).
    _Process.node_name = getattr(sender, "hostname", None)


def _on_process_init(**_: Any) -> None:
    # A fresh child: anything inherited from the parent is not ours to use. Drop it without closing
    # (closing would close the parent's sockets) and build our own engine and store.
    inherited, _Process.context = _Process.context, None
    if inherited is not None:
        inherited.engine.dispose(close=False)
    _Process.context = _new_context()
    lifecycle.prepare_job_process(_Process.context)
    if _Process.shutting_down:  # forked during a warm shutdown, for a message reserved before it
        _Process.context.shutdown.request("the worker is shutting down")


def _on_shutting_down(**_: Any) -> None:
    # The main process, in its signal handler: Celery's warm shutdown would wait for the running job;
    # tell the job to checkpoint and hand itself back instead (once, whatever the number of Ctrl-Cs).
    if not _Process.shutting_down:
        _Process.shutting_down = True
        settings = _Process.settings or get_settings()
        lifecycle.forward_shutdown_to_pool(settings.shutdown_grace_seconds)


def _on_process_shutdown(**_: Any) -> None:
    if _Process.context is not None:
        _Process.context.close()
        _Process.context = None


def __getattr__(name: str) -> Any:
    if name == "app":
        if _Process.app is None:
            create_worker_app(get_settings())
        return _Process.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
