"""The training loop's link to the service: progress, metrics, checkpoints to the store, stop requests."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from jobs import repository
from jobs.db import is_database_unavailable, transaction
from jobs.models import Job
from jobs.storage import ObjectNotFound
from lbc_core.training import StepEvent, TrainingCallback, TrainingState
from worker.context import WorkerContext
from worker.reporting import JobReporter

log = logging.getLogger(__name__)

CHECKPOINT_CONTENT_TYPE = "application/octet-stream"


def checkpoint_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoints/"


class CheckpointPublisher:
    """Uploads each complete training checkpoint, then points ``job.checkpoint_key`` at it.

    Upload first, reference second: a checkpoint that is referenced is always complete in the store.
    Older ones are deleted once the new one is referenced.
    """

    def __init__(self, ctx: WorkerContext, job: Job, reporter: JobReporter) -> None:
        self.ctx = ctx
        self.job_id = job.id
        self.reporter = reporter
        self.current: str | None = job.checkpoint_key
        self.uploaded = 0

    def publish(self, path: Path, state: TrainingState) -> str | None:
        key = f"{checkpoint_prefix(self.job_id)}{state.global_step}.pt"
        started = time.monotonic()
        try:
            self.ctx.store.put_file(key, path, CHECKPOINT_CONTENT_TYPE)
        except Exception as exc:  # keep training; the next epoch's checkpoint tries again
            log.warning("could not upload checkpoint %s: %s", key, exc)
            return None
        try:
            with transaction(self.ctx.sessions) as session:
                owned = repository.set_checkpoint(session, self.job_id, self.ctx.worker_id, key)
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            # Training goes on; the next checkpoint tries again and deletes this one as stale. Not
            # deleted now: the lost connection may have come after the commit that references it.
            log.warning(
                "could not record checkpoint %s, the database is unreachable (%s)", key, type(exc).__name__
            )
            return None
        if not owned:
            self.reporter.lost = True
            if key != self.current:
                self._delete(key)
            return None
        previous, self.current = self.current, key
        self.uploaded += 1
        log.info(
            "checkpoint at epoch %d step %d (global step %d) uploaded in %.2fs",
            state.epoch,
            state.step,
            state.global_step,
            time.monotonic() - started,
        )
        for stale in self._stale(previous):
            self._delete(stale)
        return key

    def _stale(self, previous: str | None) -> list[str]:
        try:
            keys = set(self.ctx.store.list(checkpoint_prefix(self.job_id)))
        except Exception as exc:
            log.warning("could not list old checkpoints: %s", exc)
            keys = set()
        if previous:
            keys.add(previous)
        keys.discard(self.current or "")
        return sorted(keys)

    def _delete(self, key: str) -> None:
        try:
            self.ctx.store.delete(key)
        except (ObjectNotFound, Exception) as exc:
            log.warning("could not delete old checkpoint %s: %s", key, exc)


class ServiceCallback(TrainingCallback):
    """Throttled progress and heartbeats, per-epoch metrics, checkpoint upload, cancel, time limit and
    worker shutdown.

    ``should_stop`` only reads flags (the reporter refreshes them on every write), so the per-step cost
    is a clock read.
    """

    def __init__(
        self,
        reporter: JobReporter,
        checkpoints: CheckpointPublisher,
        *,
        epochs: int,
        deadline: float | None,
    ) -> None:
        self.reporter = reporter
        self.checkpoints = checkpoints
        self.epochs = epochs
        self.deadline = deadline
        self.timed_out = False
        self.training_done = False

    def on_step(self, event: StepEvent) -> None:
        self.reporter.progress(
            {
                "epoch": event.epoch + 1,
                "epochs": self.epochs,
                "step": event.step + 1,
                "steps_per_epoch": event.steps_per_epoch,
                "global_step": event.global_step,
                "total_steps": event.total_steps,
                "fraction": event.global_step / max(event.total_steps, 1),
                "loss": event.loss,
                "lr": event.lr,
            }
        )

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        # Whatever the task measures: loss and accuracy, or loss and perplexity.
        shown = ", ".join(
            f"{name}={value:.4f}"
            for name, value in record.items()
            if name.startswith(("train_", "val_")) and isinstance(value, float)
        )
        log.info("epoch %s/%d: %s", record.get("epoch"), self.epochs, shown)
        self.reporter.event("metrics", dict(record))

    def on_checkpoint(self, path: Path, state: TrainingState) -> None:
        if self.reporter.lost:
            return
        self.checkpoints.publish(path, state)
        if state.epoch >= self.epochs and state.step == 0 and not self.training_done:
            self.training_done = True
            self.reporter.phase("finalizing")

    def should_stop(self) -> bool:
        if self.reporter.lost or self.reporter.cancel_requested:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True  # checked before a shutdown: a job past its limit is not handed back
            return True
        return self.reporter.shutdown_requested
