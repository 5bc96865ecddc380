"""How a worker stops: a clean stop hands the running job back to the queue; no process outlives its parent.

The design, for both ``lbc worker`` (Celery prefork, one pool child per job) and ``lbc serve`` (which runs
that worker as a child):

- **A stop is cooperative, like cancel.** The process running a job treats SIGTERM as a request: the
  training loop sees ``WorkerContext.shutdown`` at its next step, writes and uploads a checkpoint, and the
  attempt ends as ``interrupted``: ``running -> queued`` without counting an attempt, and the job is sent
  again, so the next worker (or the next start) resumes it at once. SIGTERM reaches the job's process
  either directly (``lbc serve`` signals the worker's whole process group; systemd does the same) or from
  the worker's main process, which forwards it on Celery's warm shutdown (what ``docker stop`` or a
  Ctrl-C on ``lbc worker`` starts), because Celery itself would only wait for the task to end.
- **Nobody outlives its parent.** Each process asks the kernel for a signal when its parent dies
  (``PR_SET_PDEATHSIG``, Linux): the children of ``lbc serve`` and the job process get SIGTERM, i.e.
  the same clean stop. That covers SIGKILL, which no handler sees. Where the kernel cannot help
  (another OS, or the parent died before the request took effect) the job's heartbeat thread notices it
  was re-parented and asks for the same stop.
- **Every wait is bounded.** A job that does not stop within ``LBC_SHUTDOWN_GRACE_SECONDS`` (a step
  that takes minutes, a long download) exits at once; its lease then expires and the reaper re-queues
  it as a lost attempt. The worker's main process gives up its warm shutdown a little later, so a stop
  never leaves a process waiting forever; ``lbc serve`` escalates to SIGQUIT and SIGKILL after the same
  grace.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from types import FrameType

from worker.context import WorkerContext

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
# How much longer than the job's own grace the main process waits before it gives up a warm shutdown.
MAIN_PROCESS_EXTRA_GRACE_S = 15.0
OVERDUE_EXIT_CODE = 75  # EX_TEMPFAIL: the job was not handed back; its lease decides what happens next


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; a no-op elsewhere).

    Safe in a ``preexec_fn`` (between fork and exec). The request is tied to the parent *thread* that
    forked us, which is the main thread in every place this is used.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig))


def prepare_job_process(ctx: WorkerContext) -> None:
    """In a fresh Celery pool child (``worker_process_init``): remember the parent, and ask for SIGTERM,
    not the SIGKILL Celery asks for, when it dies, so that the job still checkpoints and hands itself back.
    """
    ctx.parent_pid = os.getppid()
    set_parent_death_signal(signal.SIGTERM)
    ctx.check_parent()  # the parent may have died before the request above took effect


def stop_cleanly_on_sigterm(ctx: WorkerContext) -> None:
    """In the pool child, as a job starts: SIGTERM becomes a shutdown request on ``ctx`` instead of
    killing the process mid-step (billiard installs a handler that exits; it does so after Celery's
    ``worker_process_init``, so this is set when the task starts, in the child's main thread).
    """

    def on_term(signum: int, _frame: FrameType | None) -> None:
        ctx.shutdown.request(f"the worker is shutting down ({signal.Signals(signum).name})")

    signal.signal(signal.SIGTERM, on_term)


def exit_if_overdue(ctx: WorkerContext) -> None:
    """Called by the job's heartbeat thread: a stop asked longer ago than the grace ends the process."""
    grace = ctx.settings.shutdown_grace_seconds
    if ctx.shutdown.overdue(grace):
        log.error(
            "the job did not stop within %.0fs of the shutdown request (%s); exiting now, the job's lease "
            "will hand it to another worker",
            grace,
            ctx.shutdown.reason,
        )
        logging.shutdown()
        os._exit(OVERDUE_EXIT_CODE)


def forward_shutdown_to_pool(grace_seconds: float) -> None:
    """In the worker's main process, on Celery's shutdown: SIGTERM to each pool child (the running job
    checkpoints and hands itself back), and a backstop that ends this process if the shutdown still
    waits long after the job's own grace ran out."""
    from billiard.process import active_children

    for child in active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def give_up() -> None:
        for child in active_children():
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        os._exit(OVERDUE_EXIT_CODE)

    backstop = threading.Timer(grace_seconds + MAIN_PROCESS_EXTRA_GRACE_S, give_up)
    backstop.daemon = True
    backstop.start()
