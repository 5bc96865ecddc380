"""One attempt of one job, from the claimed row to the terminal transaction.

``claim`` (compare-and-set ``queued -> running``), ``execute`` (inputs, training, uploads; never raises
for a job problem, returns an :class:`Outcome`) and ``finish`` (one transaction, then the re-send of a
re-queued job after commit). Celery is not needed here: the task bodies in ``worker.tasks`` call these,
and so do the tests.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jobs import repository
from jobs.admission import stored_job_memory
from jobs.benchmarks import BENCHMARK_KIND, SPARSIFY_KIND, parse_benchmark_spec, requested_device
from jobs.db import is_database_unavailable, transaction
from jobs.errors import IllegalTransition
from jobs.models import Job, utcnow
from jobs.spec import SpecError, parse_spec
from jobs.states import JobState
from lbc_core.export import MANIFEST_FILE
from lbc_core.models.probe import is_allocation_failure
from lbc_core.pipeline import METRICS_NAME, RunResult
from lbc_core.training import resolve_device
from worker import benchmarking
from worker.benchmarking import BenchmarkStopped, StopCheck
from worker.callback import CheckpointPublisher, ServiceCallback, checkpoint_prefix
from worker.context import WorkerContext
from worker.inputs import InputError, fetch_resume_checkpoint, resolve_inputs
from worker.multiprocess import check_rank_count, run_spec_processes
from worker.reporting import DETAILS_IN_SERVER_LOG, JobLogHandler, JobReporter, jsonable, public_text
from worker.runner import JobInputError, run_spec

log = logging.getLogger(__name__)

LOG_NAME = "job.log"
LOG_CONTENT_TYPE = "text/plain; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"

Status = Literal["succeeded", "cancelled", "failed", "lost", "interrupted"]
PublishedFile = tuple[str, Path, str, "str | None"]  # (artifact name, local path, content type, sha256)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. ``lost``: another worker owns the job now; nothing more may be written.
    ``interrupted``: the worker is shutting down; the job goes back to the queue without counting the
    attempt (its checkpoint, if training started, is uploaded)."""

    status: Status
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error_type: str | None = None
    message: str = ""
    retryable: bool = False
    published: str | None = None  # the store prefix holding this attempt's artifacts


FINISH_RETRY_FIRST_S = 0.5
FINISH_RETRY_MAX_S = 5.0


class TimeLimitExceeded(Exception):
    pass


class PublishError(Exception):
    """Storing an artifact failed; the attempt's objects already stored were deleted (or, if even that
    failed, are left under a prefix no artifact row points at)."""


def artifact_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/artifacts/"


def publish_prefix(job_id: str, attempt: int) -> str:
    """Where one attempt stores its artifacts: a folder of its own under the job's artifact prefix.

    Never shared with another attempt (the attempt number restarts on retry, hence the random part),
    so an attempt that fails while publishing can delete what it stored without touching a set that
    another attempt, perhaps a worker that took over the job, has published and committed.
    """
    return f"{artifact_prefix(job_id)}a{attempt}-{uuid.uuid4().hex[:12]}/"


def classify(exc: BaseException, estimate: str | None = None) -> tuple[str, str, bool]:
    """``(error_type, message, retryable)`` of an attempt's exception.

    Input problems (spec, data, checkpoint, layer patterns, a model that cannot take the data's shape,
    exports of a bad model) fail at once; so do an allocation that failed (the same model needs the
    same memory on the next attempt; ``estimate`` is what submit estimated) and a diverged loss.
    Anything else may be the machine's fault and is retried while attempts remain. Whether an error
    type is retried is decided in one place, ``jobs.repository.is_retryable``.
    """
    error_type, message = _classify(exc, estimate)
    return error_type, message, repository.is_retryable(error_type)


def _classify(exc: BaseException, estimate: str | None) -> tuple[str, str]:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, TimeLimitExceeded):
        return "time_limit", message
    if isinstance(exc, PublishError):  # a full disk or a store outage may be gone by the next attempt
        return "publish_error", message
    if is_allocation_failure(exc):
        where = "CUDA" if isinstance(exc, torch.OutOfMemoryError) or "CUDA" in message else "host"
        needed = f"; the job was estimated to need {estimate}" if estimate else ""
        return (
            "resources_exceeded",
            f"out of {where} memory ({type(exc).__name__}: {message[:500]}){needed}; "
            "use a smaller model (model.args) or batch size",
        )
    if isinstance(exc, JobInputError):
        return "invalid_input", f"{exc.error_type}: {message}"
    if isinstance(exc, SpecError | InputError | ValueError):
        # DatasetError, PatternError, LayerSelectionError, ExportError, RunError, CheckpointError,
        # InputShapeError: all ValueErrors.
        return "invalid_input", f"{type(exc).__name__}: {message}"
    if isinstance(exc, FloatingPointError):
        return "diverged", message
    return "internal_error", f"{type(exc).__name__}: {message}"


# -- claim ----------------------------------------------------------------------------------------------
def claim(ctx: WorkerContext, job_id: str) -> Job | None:
    """The job, now ``running`` and owned by this worker; ``None`` when another delivery has it."""
    with transaction(ctx.sessions) as session:
        job = repository.claim_job(session, job_id, ctx.worker_id, ctx.settings.lease_seconds)
    if job is None:
        log.info("job %s is not queued any more (duplicate or stale delivery); nothing to do", job_id)
    else:
        log.info(
            "claimed job %s (attempt %d of %d) as %s", job.id, job.attempt, job.max_attempts, ctx.worker_id
        )
    return job


def pass_on(ctx: WorkerContext, job_id: str) -> None:
    """Leave a queued job to another worker: this one is shutting down. Its message was consumed, so
    it is sent again (nothing is claimed, no attempt is used)."""
    with transaction(ctx.sessions) as session:
        row = session.execute(
            select(Job.queue, Job.time_limit_s).where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        ).first()
    if row is None:
        return
    log.info("job %s not started: %s; sent again for another worker", job_id, ctx.shutdown.reason)
    ctx.send(job_id, row.queue, row.time_limit_s)


# -- execute --------------------------------------------------------------------------------------------
def limit_threads(threads: int) -> None:
    """Cap torch's intra-op threads for this job's process (0 leaves torch's default of one per core).

    Each worker process otherwise sizes its pool to every core of the machine; with three workers on two
    cores a training step was about 100x slower than with one thread each. Applied in the process that
    runs the job (a fresh child per job), so it holds whatever the parent did.
    """
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def execute(ctx: WorkerContext, job: Job) -> Outcome:
    """Run one attempt of a claimed job. Job problems come back as an Outcome, never as an exception."""
    limit_threads(ctx.settings.worker_threads)
    with JobAttempt(ctx, job) as attempt:
        return attempt.outcome()


class JobAttempt:
    """The resources of one attempt: a scratch directory, the captured log, the heartbeat thread.

    All of them are released on exit (thread stopped, handler removed, scratch deleted), whatever happened.
    """

    def __init__(self, ctx: WorkerContext, job: Job) -> None:
        self.ctx = ctx
        self.job = job
        scratch_root = ctx.settings.home / "scratch"
        self.scratch = scratch_root / f"{job.id}-{job.attempt}"
        self.out_dir = self.scratch / "run"
        self.log_path = self.scratch / LOG_NAME
        self.published = publish_prefix(job.id, job.attempt)
        self.started = time.monotonic()
        self._logs: JobLogHandler | None = None
        self._old_level: int | None = None
        self.reporter: JobReporter | None = None

    def __enter__(self) -> JobAttempt:
        for stale in (self.ctx.settings.home / "scratch").glob(f"{self.job.id}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left behind by an attempt whose process died
        self.out_dir.mkdir(parents=True)
        self._logs = JobLogHandler(self.log_path, scratch=self.scratch)
        logging.getLogger().addHandler(self._logs)
        package = logging.getLogger("worker")
        if package.getEffectiveLevel() > logging.INFO:
            self._old_level = package.level
            package.setLevel(logging.INFO)
        self.reporter = JobReporter(self.ctx, self.job.id, self.job.attempt, self._logs)
        self.reporter.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.reporter is not None:
                self.reporter.stop()
                self.reporter.beat()  # the last log lines, before the terminal transaction
        finally:
            if self._logs is not None:
                logging.getLogger().removeHandler(self._logs)
                self._logs.close()
            if self._old_level is not None:
                logging.getLogger("worker").setLevel(self._old_level)
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- the attempt ------------------------------------------------------------------------------------
    def outcome(self) -> Outcome:
        assert self.reporter is not None
        try:
            return self._run(self.reporter)
        except Exception as exc:
            if self.reporter.lost:
                return Outcome("lost")
            estimate = self._estimate() if is_allocation_failure(exc) else None
            error_type, message, retryable = classify(exc, estimate)
            if not retryable:  # the owner's problem, explained by the message itself
                log.warning("job %s failed: %s: %s", self.job.id, error_type, message)
                shown = public_text(message, self.scratch)
            else:  # unexpected: the traceback goes to the server log only, under a reference
                reference = uuid.uuid4().hex[:12]
                log.error(
                    "job %s failed: %s: %s (reference %s)",
                    self.job.id,
                    error_type,
                    message,
                    reference,
                    exc_info=True,
                )
                shown = (
                    f"{public_text(message, self.scratch)} (reference {reference}; {DETAILS_IN_SERVER_LOG})"
                )
            return Outcome("failed", error_type=error_type, message=shown, retryable=retryable)

    def _estimate(self) -> str | None:
        """The job's memory estimate in words, for the message of an allocation failure."""
        try:
            with transaction(self.ctx.sessions) as session:
                estimate = stored_job_memory(session, self.job)
        except Exception as exc:  # the failure is reported either way; the estimate only helps
            log.warning("job %s: no memory estimate: %s", self.job.id, exc)
            return None
        return estimate.describe() if estimate is not None else None

    def _deadline(self) -> float | None:
        limit = self.job.time_limit_s or self._limit_from_spec()
        return self.started + limit if limit else None

    def _limit_from_spec(self) -> int | None:
        limits = self.job.spec.get("limits") if isinstance(self.job.spec, dict) else None
        value = limits.get("time_limit_s") if isinstance(limits, dict) else None
        return int(value) if isinstance(value, int) else None

    def _stop_check(self, reporter: JobReporter, deadline: float | None) -> StopCheck:
        """Raises BenchmarkStopped when the job must stop; called between two benchmark timings."""

        def check() -> None:
            if reporter.lost:
                raise BenchmarkStopped("lost", "another worker owns the job now")
            if reporter.cancel_requested:
                raise BenchmarkStopped("cancelled", "cancel requested while benchmarking")
            if deadline is not None and time.monotonic() >= deadline:
                raise BenchmarkStopped(
                    "time_limit", f"time limit of {deadline - self.started:.0f}s reached while benchmarking"
                )
            if reporter.shutdown_requested:
                raise BenchmarkStopped("interrupted", "the worker is shutting down")

        return check

    def _run(self, reporter: JobReporter) -> Outcome:
        if self.job.kind == BENCHMARK_KIND:
            return self._run_benchmark(reporter)
        if self.job.kind != SPARSIFY_KIND:
            raise JobInputError(f"unknown job kind {self.job.kind!r}", "SpecError")
        job, ctx = self.job, self.ctx
        deadline = self._deadline()
        reporter.phase("preparing data")
        spec = parse_spec(job.spec, source=f"job {job.id}")
        spec = resolve_inputs(ctx, job, spec, self.scratch)
        resume = fetch_resume_checkpoint(ctx, job, self.out_dir)
        device = resolve_device(spec.train.device)
        if spec.train.processes > 1:
            check_rank_count(spec.train.processes, device)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeLimitExceeded(
                f"time limit of {deadline - self.started:.0f}s reached while preparing data"
            )
        stopped = _stopped(reporter)  # a cancel asked while the data was downloading: no training at all
        if stopped is not None:
            return stopped

        training: dict[str, Any] = {"epochs": spec.train.epochs, "device": str(device)}
        if resume is not None:
            training.update(resume.as_event())
            position = resume.position()
            log.info(
                "resuming from %s: epoch %d after %d of its steps (global step %d)",
                resume.key,
                position["epoch"],
                position["step"],
                position["global_step"],
            )
        reporter.phase("training", **training)
        checkpoints = CheckpointPublisher(ctx, job, reporter)
        callback = ServiceCallback(reporter, checkpoints, epochs=spec.train.epochs, deadline=deadline)
        if spec.train.processes > 1:
            result = run_spec_processes(
                spec,
                self.out_dir,
                callback,
                scratch_dir=self.scratch / "tmp",
                threads=ctx.settings.worker_threads,
                run_id=f"{job.id}-{job.attempt}",
            )
        else:
            result = run_spec(
                spec, self.out_dir, callbacks=[callback], resume=True, scratch_dir=self.scratch / "tmp"
            )

        if reporter.lost:
            return Outcome("lost")
        if result.status == "stopped":
            if reporter.cancel_requested:
                log.info("job %s stopped on request at %s", job.id, result.summary)
                return Outcome("cancelled")
            if callback.timed_out:
                limit = (deadline or self.started) - self.started
                raise TimeLimitExceeded(
                    f"time limit of {limit:.0f}s reached at epoch {result.summary.get('epoch', 0) + 1}, "
                    f"step {result.summary.get('step')}; the checkpoint is kept"
                )
            if reporter.shutdown_requested:
                return _interrupted(
                    reporter,
                    f"at epoch {result.summary.get('epoch', 0) + 1}, step {result.summary.get('step')} "
                    "(checkpoint written)",
                )
            raise RuntimeError(f"training stopped without a reason at {result.summary}")
        if reporter.cancel_requested:
            return Outcome("cancelled")

        report_files: list[tuple[str, Path, str]] = []
        speedup: dict[str, Any] | None = None
        if spec.benchmark.enabled:
            assert result.exports is not None
            reporter.phase("benchmarking", device=spec.benchmark.device or spec.train.device)
            try:
                report_files, speedup = benchmarking.report_after_training(
                    spec,
                    result.exports.file(MANIFEST_FILE).path.parent,
                    self.scratch / "report",
                    stop=self._stop_check(reporter, deadline),
                )
            except (
                BenchmarkStopped
            ) as exc:  # cancel, shutdown or lost lease; a time limit is a benchmark_error
                return _benchmark_stopped(reporter, exc)
        stopped = _stopped(reporter)
        if stopped is not None:
            return stopped

        reporter.phase("uploading")
        artifacts = self._publish(self._files(result, report_files))
        summary = dict(result.summary)
        summary.update(
            device=str(device),
            attempt=job.attempt,
            duration_s=round(time.monotonic() - self.started, 3),
        )
        if speedup is not None:
            summary["speedup"] = speedup
        primary = (summary.get("primary_metric") or {}).get("name", "val_accuracy")
        log.info(
            "job %s done: %s=%.4f density=%.4f verified_nm=%s",
            job.id,
            primary,
            summary.get(primary, float("nan")),
            summary.get("density", float("nan")),
            summary.get("verified_nm"),
        )
        for warning in summary.get("warnings") or ():
            log.warning("job %s: %s: %s", job.id, warning["code"], warning["message"])
        return Outcome("succeeded", artifacts=artifacts, result=jsonable(summary), published=self.published)

    def _run_benchmark(self, reporter: JobReporter) -> Outcome:
        """A benchmark job: fetch the model, measure it, publish the report (no training)."""
        job, ctx = self.job, self.ctx
        deadline = self._deadline()
        stop = self._stop_check(reporter, deadline)
        reporter.phase("preparing model")
        spec = parse_benchmark_spec(job.spec, source=f"job {job.id}")
        target = benchmarking.fetch_target(ctx, job, spec, self.scratch)
        device = benchmarking.benchmark_device(requested_device(spec))
        try:
            stop()
            reporter.phase("benchmarking", device=str(device))
            measured = benchmarking.measure(
                target, spec.benchmark, device, self.scratch / "report", stop=stop
            )
        except BenchmarkStopped as exc:
            if exc.reason == "time_limit":
                raise TimeLimitExceeded(str(exc)) from None
            return _benchmark_stopped(reporter, exc)
        stopped = _stopped(reporter)
        if stopped is not None:
            return stopped

        reporter.phase("uploading")
        artifacts = self._publish(
            [(name, path, content_type, None) for name, path, content_type in measured.files]
        )
        source = spec.source.model_dump(exclude_none=True, mode="json")
        result = {
            "kind": BENCHMARK_KIND,
            "source": source,
            "architecture": target.name,
            "pattern": str(target.pattern),
            "layers": len(measured.report.layers),
            "val_accuracy": target.accuracy,
            "speedup": measured.summary,
            "device": str(device),
            "attempt": job.attempt,
            "duration_s": round(time.monotonic() - self.started, 3),
        }
        log.info("job %s done: %s", job.id, measured.summary["verdict"])
        return Outcome("succeeded", artifacts=artifacts, result=jsonable(result), published=self.published)

    @staticmethod
    def _files(result: RunResult, extra: list[tuple[str, Path, str]]) -> list[PublishedFile]:
        """Every export (with its sha256), the metrics history and the speedup report files (``extra``)."""
        if result.exports is None:
            raise RuntimeError("the run finished without exports")
        files: list[PublishedFile] = [
            (f.name, f.path, f.content_type, f.sha256) for f in result.exports.files
        ]
        files.append((METRICS_NAME, result.out_dir / METRICS_NAME, JSON_CONTENT_TYPE, None))
        files.extend((name, path, content_type, None) for name, path, content_type in extra)
        return files

    def _publish(self, files: list[PublishedFile]) -> list[dict[str, Any]]:
        """Store ``files`` and then the job log under this attempt's prefix, all or nothing.

        The artifact rows are only written by ``finish``, in the transaction that marks the job
        succeeded, so a failure here publishes nothing; the objects already stored are deleted too,
        so that a full disk or a broken store leaves no half set behind.
        """
        artifacts: list[dict[str, Any]] = []
        total = len(files) + 1
        name = LOG_NAME
        try:
            for name, path, content_type, sha256 in files:
                artifacts.append(self._put(name, path, content_type, sha256))
            name = LOG_NAME
            artifacts.append(self._put_log(len(artifacts)))
        except Exception as exc:
            cleanup = self._discard_published()
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise PublishError(
                f"could not store artifact {name} ({len(artifacts) + 1} of {total}): "
                f"{type(exc).__name__}: {detail}; {cleanup}"
            ) from exc
        return artifacts

    def _discard_published(self) -> str:
        try:
            removed = self.ctx.store.delete_prefix(self.published)
        except Exception as exc:
            log.warning("could not delete the partly published %s: %s", self.published, exc)
            return f"the artifacts stored before it are left unreferenced under {self.published}"
        return f"nothing was published ({removed} stored before it deleted)"

    def _put_log(self, uploaded: int) -> dict[str, Any]:
        """The job log, last, so that it records every other upload."""
        log.info("uploaded %d artifacts; uploading %s", uploaded, LOG_NAME)
        assert self._logs is not None
        self._logs.flush()
        return self._put(LOG_NAME, self.log_path, LOG_CONTENT_TYPE, None)

    def _put(self, name: str, path: Path, content_type: str, sha256: str | None) -> dict[str, Any]:
        key = self.published + name
        stored = self.ctx.store.put_file(key, path, content_type)
        if sha256 is not None and stored.sha256 != sha256:
            raise OSError(f"{name}: stored sha256 {stored.sha256} differs from the exported file's {sha256}")
        return {
            "name": name,
            "size": stored.size,
            "sha256": stored.sha256,
            "content_type": stored.content_type or content_type,
            "storage_key": stored.key,
        }


# -- finish ---------------------------------------------------------------------------------------------
def _stopped(reporter: JobReporter) -> Outcome | None:
    """The attempt's outcome if it must not go on: the lease was lost, a cancel was asked, or the worker
    is shutting down."""
    if reporter.lost:
        return Outcome("lost")
    if reporter.cancel_requested:
        return Outcome("cancelled")
    if reporter.shutdown_requested:
        return _interrupted(reporter, f"in phase {reporter.current_phase or 'preparing'}")
    return None


def _interrupted(reporter: JobReporter, where: str) -> Outcome:
    """Logged in the job's own log, so its owner sees why the job went back to the queue."""
    log.warning(
        "job %s interrupted %s: %s; handing it back to the queue (this attempt is not counted)",
        reporter.job_id,
        where,
        reporter.ctx.shutdown.reason,
    )
    return Outcome("interrupted")


def _benchmark_stopped(reporter: JobReporter, exc: BenchmarkStopped) -> Outcome:
    if exc.reason == "lost":
        return Outcome("lost")
    if exc.reason == "interrupted":
        return _interrupted(reporter, "while benchmarking")
    return Outcome("cancelled")


def _lock_if_owned(session: Session, job_id: str, worker_id: str) -> str | None:
    """The job's state if this worker still owns it, with the row locked until commit; else None.

    The repository's finish functions check the state but not the owner; this guard, in the same
    transaction, keeps a worker that lost its lease from finishing a job another worker now runs.
    """
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.worker_id == worker_id,
            Job.state.in_([JobState.RUNNING.value, JobState.CANCELLING.value]),
        )
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.scalar(select(Job.state).where(Job.id == job_id))


def finish(ctx: WorkerContext, job: Job, outcome: Outcome) -> JobState | None:
    """Write the attempt's end in one transaction; re-send a re-queued job after the commit.

    Returns the job's new state, or None when the job is no longer this worker's to finish. A database
    that is briefly unreachable is waited for (see :func:`_finish_with_retries`).
    """
    if outcome.status == "lost":
        log.warning("job %s was taken over by another worker; leaving it alone", job.id)
        _discard(ctx, outcome)
        return None
    final, certain = _finish_with_retries(ctx, job, outcome)
    if final is None:
        if certain:  # nothing was committed: the artifacts of this attempt are nobody's
            _discard(ctx, outcome)
        return None
    log.info("job %s is now %s", job.id, final.value)
    if final == JobState.QUEUED:
        ctx.send(job.id, job.queue, job.time_limit_s)
    elif final == JobState.SUCCEEDED:
        _delete_prefix(ctx, checkpoint_prefix(job.id))  # the job is done; its training state is not needed
    if final != JobState.SUCCEEDED:
        _discard(ctx, outcome)  # e.g. cancelled while uploading: no row references them
    return final


def _finish_with_retries(ctx: WorkerContext, job: Job, outcome: Outcome) -> tuple[JobState | None, bool]:
    """``(new state or None, certain)``: the terminal transaction, retried while the database is
    unreachable, for at most one lease.

    Past the lease the reaper hands the job to another worker, and this attempt's result is no longer
    wanted. ``certain`` is False when an earlier try failed in a way that may have come after its
    commit was applied (a connection lost while committing): then a None does not prove that nothing
    references this attempt's artifacts.
    """
    deadline = time.monotonic() + ctx.settings.lease_seconds
    delay = FINISH_RETRY_FIRST_S
    certain = True
    while True:
        try:
            return _finish_once(ctx, job, outcome), certain
        except Exception as exc:
            if not is_database_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            certain = False
            log.warning(
                "job %s: could not record the end of attempt %d, the database is unreachable (%s); "
                "retrying in %.1fs",
                job.id,
                job.attempt,
                type(exc).__name__,
                delay,
            )
            time.sleep(delay)
            delay = min(2 * delay, FINISH_RETRY_MAX_S)


def _finish_once(ctx: WorkerContext, job: Job, outcome: Outcome) -> JobState | None:
    try:
        with transaction(ctx.sessions) as session:
            state = _lock_if_owned(session, job.id, ctx.worker_id)
            if state is None:
                log.warning("job %s is no longer owned by %s; not finishing it", job.id, ctx.worker_id)
                return None
            if outcome.status == "succeeded" and state == JobState.RUNNING:
                assert outcome.result is not None
                repository.finish_success(session, job.id, ctx.worker_id, outcome.artifacts, outcome.result)
                return JobState.SUCCEEDED
            if outcome.status in ("succeeded", "cancelled"):
                repository.finish_cancelled(session, job.id)
                return JobState.CANCELLED
            if outcome.status == "interrupted":
                return repository.requeue_interrupted(session, job.id)
            return repository.finish_failure(
                session,
                job.id,
                outcome.error_type or "internal_error",
                outcome.message,
                retryable=outcome.retryable,
            )
    except IllegalTransition as exc:
        log.warning("job %s could not be finished: %s", job.id, exc)
        return None


def _discard(ctx: WorkerContext, outcome: Outcome) -> None:
    if outcome.published is not None:
        _delete_prefix(ctx, outcome.published)


def _delete_prefix(ctx: WorkerContext, prefix: str) -> None:
    try:
        ctx.store.delete_prefix(prefix)
    except Exception as exc:
        log.warning("could not delete %s: %s", prefix, exc)


def run_job(ctx: WorkerContext, job_id: str) -> JobState | None:
    """Claim, execute and finish ``job_id`` in this process (what the Celery task does)."""
    job = claim(ctx, job_id)
    if job is None:
        return None
    return finish(ctx, job, execute(ctx, job))
