"""Data access for jobs, events and artifacts. Functions here never commit: the caller owns the
transaction (one per request or task step), so a multi-row change is all-or-nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.auth import KeyCheck, OwnerRef, Principal, Reader, key_owner_id, read_as
from jobs.benchmarks import stored_spec
from jobs.db import connection_of
from jobs.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from jobs.models import Artifact, Checkpoint, Dataset, HFModel, Job, JobEvent, new_id, utcnow
from jobs.quota import lock_owner
from jobs.spec import SpecError, UploadRef
from jobs.states import RETRYABLE, TERMINAL, JobState, transition
from jobs.text import text_problem

# Error types that another attempt cannot fix: the same spec fails the same way on any worker. The one
# list the worker's classification and finish_failure both read.
NON_RETRYABLE_ERRORS = frozenset(
    {
        "invalid_input",
        "spec_error",
        "dataset_error",
        "checkpoint_error",
        "time_limit",
        "resources_exceeded",
        "diverged",
    }
)


def is_retryable(error_type: str) -> bool:
    """Whether a failure of ``error_type`` may go away on another attempt (a machine fault, say)."""
    return error_type not in NON_RETRYABLE_ERRORS


@dataclass(frozen=True)
class JobFilters:
    state: str | None = None
    method: str | None = None
    pattern: str | None = None
    kind: str | None = None


# -- ownership -----------------------------------------------------------------------------------
def owned(session: Session, model: type[Any], object_id: str, owner: OwnerRef) -> Any:
    """Fetch ``object_id`` if ``owner`` may see it; another owner's object is a 404, not a 403."""
    obj = session.get(model, object_id)
    if obj is None or not _may_see(owner, obj.owner_id):
        raise NotFound(f"{model.__name__.lower()} {object_id} not found")
    return obj


def _may_see(owner: OwnerRef, owner_id: str) -> bool:
    return owner_id == owner.id or owner.is_admin


UPLOAD_TABLES: dict[str, type[Dataset] | type[Checkpoint] | type[HFModel]] = {
    "dataset": Dataset,
    "checkpoint": Checkpoint,
    "model": HFModel,
}


def owned_upload(session: Session, ref: UploadRef, owner_id: str) -> Dataset | Checkpoint | HFModel | None:
    """The upload a spec names, if it exists and belongs to ``owner_id`` (the job's owner, whoever asks:
    an admin's key sees every job, but a job only ever reads its own owner's files)."""
    # populate_existing: read from the database, not the session's copy, which a delete may have outdated.
    row: Dataset | Checkpoint | HFModel | None = session.get(  # type: ignore[assignment]
        UPLOAD_TABLES[ref.kind], ref.id, populate_existing=True
    )
    return row if row is not None and row.owner_id == owner_id else None


def get_job(session: Session, job_id: str, owner: OwnerRef) -> Job:
    job: Job = owned(session, Job, job_id, owner)
    return job


def read_job(
    connection: Connection, job_id: str, who: Principal | KeyCheck, columns: tuple[Any, ...]
) -> tuple[Principal, dict[str, Any]]:
    """The job's ``columns`` (``owner_id`` among them) as a dict, for a response that only reads them,
    and who read it: the same rule and 404 as :func:`get_job`, without building an ORM object; a key
    to check is checked in the same statement (:func:`jobs.auth.read_as`)."""
    principal, rows = read_as(connection, who, _job_by_id(columns), {"job_id": job_id})
    if not rows or not _may_see(principal, rows[0]["owner_id"]):
        raise NotFound(f"job {job_id} not found")
    return principal, rows[0]


@cache
def _job_by_id(columns: tuple[Any, ...]) -> Select[Any]:
    # Built once per column set: building a statement and its cache key on every request costs about
    # as much CPU as running it.
    return select(*columns).where(Job.id == bindparam("job_id"))


# -- submit --------------------------------------------------------------------------------------
def create_job(
    session: Session,
    *,
    owner: OwnerRef,
    spec: dict[str, Any],
    summary: dict[str, Any],
    idempotency_key: str | None,
    max_attempts: int,
    max_active_jobs: int,
) -> tuple[Job, bool]:
    """Insert a queued job; returns ``(job, created)``. A repeated ``idempotency_key`` returns the
    existing job when the spec is the same and is a 409 when it differs."""
    if idempotency_key:
        existing = session.scalar(
            select(Job).where(Job.owner_id == owner.id, Job.idempotency_key == idempotency_key)
        )
        if existing is not None:
            if _canonical(existing.spec) != _canonical(spec):
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was already used for a different job spec",
                    details={"job_id": existing.id},
                )
            return existing, False
    check_active_quota(session, owner.id, max_active_jobs)
    # Under the owner's lock, which upload deletes take too: a delete that committed after the caller's
    # checks would otherwise fail the insert's foreign key (a 500) or leave a job reading nothing.
    gone = [
        {"field": ref.field, "message": f"{ref.kind} {ref.id} does not exist (it was deleted meanwhile)"}
        for ref in _spec_upload_refs(summary.get("kind", "sparsify"), spec)
        if owned_upload(session, ref, owner.id) is None
    ]
    if gone:
        raise InvalidInput("invalid job spec", details=gone)
    now = utcnow()
    job = Job(
        id=new_id(),  # known before the flush: the job's first event names it
        owner_id=owner.id,
        name=summary.get("name"),
        kind=summary.get("kind", "sparsify"),
        spec=spec,
        method=summary["method"],
        pattern=summary["pattern"],
        architecture=summary["architecture"],
        dataset_id=summary.get("dataset_id"),
        checkpoint_id=summary.get("checkpoint_id"),
        queue=summary["queue"],
        priority=summary.get("priority", 5),
        time_limit_s=summary.get("time_limit_s"),
        idempotency_key=idempotency_key,
        state=JobState.QUEUED.value,
        phase="queued",
        progress={},
        attempt=0,
        max_attempts=max_attempts,
        created_at=now,
        queued_at=now,
        updated_at=now,
    )
    # The job and its first event in one flush (the unit of work inserts the job first, by the foreign
    # key): a flush of its own for the event cost a submit 0.1-0.2 ms of its 4 ms of CPU.
    rows = [job, JobEvent(job_id=job.id, kind="state", attempt=0, data={"state": "queued"})]
    if not idempotency_key:
        # No savepoint without a key (nothing to race on): with SQLite's Python driver, a savepoint
        # opened before any write commits on release, so a request that failed later (its commit lost
        # the database) would leave a job the client was told does not exist.
        session.add_all(rows)
        session.flush()
    else:
        try:
            with session.begin_nested():  # a savepoint: losing the race must not undo the caller's work
                session.add_all(rows)
                session.flush()
        except IntegrityError as exc:  # a concurrent retry with the same key won the race
            existing = session.scalar(
                select(Job).where(Job.owner_id == owner.id, Job.idempotency_key == idempotency_key)
            )
            if existing is not None:
                return existing, False
            raise Conflict("job could not be created") from exc
    return job, True


def check_active_quota(session: Session, owner_id: str, max_active_jobs: int) -> None:
    lock_owner(session, owner_id)  # concurrent submits of one owner count each other's jobs
    active = session.connection().execute(_unfinished_count(), {"owner_id": owner_id}).scalar()
    if (active or 0) >= max_active_jobs:
        raise QuotaExceeded(f"owner already has {active} unfinished jobs (limit {max_active_jobs})")


@cache
def _unfinished_count() -> Select[int]:
    """Count an owner's unfinished jobs; built once (statement and cache key cost about as much CPU as
    the query). IN the unfinished states, not NOT IN the terminal ones: with ix_jobs_owner_state that
    reads only the owner's unfinished jobs; NOT IN cannot use the index and read the owner's whole
    history."""
    unfinished = [s.value for s in JobState if s not in TERMINAL]
    return (
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == bindparam("owner_id"), Job.state.in_(unfinished))
    )


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


# -- listing -------------------------------------------------------------------------------------
def _encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, job_id = json.loads(base64.urlsafe_b64decode(padded))
        if text_problem(str(job_id)):  # PostgreSQL cannot compare text holding a NUL
            raise ValueError("a NUL in the cursor")
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is malformed; pass the next_cursor of a previous page") from exc


def list_jobs(
    db: Session | Connection,
    who: Reader | KeyCheck,
    filters: JobFilters,
    *,
    columns: tuple[ColumnElement[Any], ...] = (),
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Reader | Principal, list[dict[str, Any]], str | None]:
    """A page of jobs newest first, for ``who`` (an owner, or a key to check in the page's own statement:
    :func:`jobs.auth.read_as`), and who that is; filters apply before the limit; keyset pagination on
    (created_at, id).

    Rows of ``columns`` as dicts (which include ``created_at`` and ``id``, the cursor's keys; default:
    every column) rather than ORM objects: a page needs neither those nor, often, every job's whole
    spec. A key reads its owner's jobs; an admin's page (every owner's jobs) is read again once the key
    says it is an admin's.
    """
    connection = connection_of(db)
    columns = columns or tuple(Job.__table__.c)
    params = _page_params(filters, limit, cursor)
    given = frozenset(params)
    owner: Reader | Principal
    if isinstance(who, KeyCheck):
        owner, rows = read_as(
            connection, who, _page_query(columns, "key", given), params, newest_first=("created_at", "id")
        )
        if not owner.is_admin:
            return owner, rows[:limit], _next_cursor(rows, limit)
    else:
        owner = who
    owners = "all" if owner.is_admin else "param"
    _, rows = read_as(
        connection, owner, _page_query(columns, owners, given), {**params, "owner_id": owner.id}
    )
    return owner, rows[:limit], _next_cursor(rows, limit)


def _page_params(filters: JobFilters, limit: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit + 1}  # one more than asked: whether a next page exists
    params.update((name, value) for name, value in vars(filters).items() if value)
    if cursor:
        params["created"], params["after_id"] = _decode_cursor(cursor)
    return params


def _next_cursor(rows: Sequence[dict[str, Any]], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    return _encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"])


@cache
def _page_query(columns: tuple[Any, ...], owners: str, given: frozenset[str]) -> Select[Any]:
    """A page's SELECT for one combination of filters, built once with bound parameters: building a
    statement of a few dozen columns and its cache key on every request cost about as much CPU as
    running it. ``owners``: ``all`` (an admin's page), ``param`` (the jobs of ``:owner_id``) or
    ``key`` (the jobs of the live key ``:digest``'s owner, :func:`jobs.auth.key_owner_id`)."""
    query = select(*columns)
    if owners == "param":
        query = query.where(Job.owner_id == bindparam("owner_id"))
    elif owners == "key":
        query = query.where(Job.owner_id == key_owner_id())
    for name in ("state", "method", "pattern", "kind"):
        if name in given:
            query = query.where(Job.__table__.c[name] == bindparam(name))
    if "created" in given:
        created = bindparam("created", type_=Job.created_at.type)
        after_id = bindparam("after_id", type_=Job.id.type)
        query = query.where(or_(Job.created_at < created, (Job.created_at == created) & (Job.id < after_id)))
    return query.order_by(Job.created_at.desc(), Job.id.desc()).limit(bindparam("limit"))


# -- user actions --------------------------------------------------------------------------------
def request_cancel(session: Session, job: Job) -> None:
    """Queued jobs are cancelled at once; running ones are asked to stop (cooperative)."""
    if job.state == JobState.QUEUED:
        transition(
            session, job.id, JobState.CANCELLED, expected={JobState.QUEUED}, finished_at=utcnow(), phase=None
        )
    elif job.state == JobState.RUNNING:
        transition(session, job.id, JobState.CANCELLING, expected={JobState.RUNNING}, cancel_requested=True)
    elif job.state == JobState.CANCELLING:
        return
    else:
        transition(session, job.id, JobState.CANCELLED, expected=set())  # raises the 409 with the state


def retry_job(session: Session, job: Job, max_attempts: int, max_active_jobs: int | None = None) -> None:
    """A failed or cancelled job goes back to the queue with a fresh attempt budget, keeping its
    latest checkpoint so training continues where it stopped. A 409 names the uploads it reads that are
    gone, checked under the owner's lock, which upload deletes take too: a delete cannot slip in between
    this check and the job's return to the queue."""
    if job.state in RETRYABLE:  # other states: transition's 409 names them
        lock_owner(session, job.owner_id)
        check_references_still_exist(session, job)
        if max_active_jobs is not None:
            check_active_quota(session, job.owner_id, max_active_jobs)
    now = utcnow()
    transition(
        session,
        job.id,
        JobState.QUEUED,
        expected=RETRYABLE,
        event={"reason": "retry requested"},
        attempt=0,
        max_attempts=max_attempts,
        cancel_requested=False,
        error_type=None,
        error_message=None,
        finished_at=None,
        queued_at=now,
        resends=0,
        phase="queued",
        worker_id=None,
        lease_expires_at=None,
    )


def job_upload_refs(job: Job) -> list[UploadRef]:
    """The uploads a stored job reads (the spec's one walk, ``upload_refs``); none when its spec no longer
    parses (such a job cannot run again: ``check_references_still_exist`` refuses its retry)."""
    return _spec_upload_refs(job.kind, job.spec, source=f"job {job.id}")


def _spec_upload_refs(kind: str, spec: dict[str, Any], source: str | None = None) -> list[UploadRef]:
    try:
        return stored_spec(kind, spec, source=source).upload_refs()
    except SpecError:
        return []


def check_references_still_exist(session: Session, job: Job) -> None:
    """409 naming every upload ``job`` reads that is gone (or never was its owner's): a retried job
    whose dataset or checkpoint was deleted could only fail once queued again."""
    try:
        spec = stored_spec(job.kind, job.spec, source=f"job {job.id}")
    except SpecError as exc:  # stored before a rule it breaks: queued again, the worker would refuse it
        problems = [{"field": p.path, "message": p.message} for p in exc.problems]
        raise Conflict(
            f"job {job.id} cannot run again: its spec is no longer valid", details=problems
        ) from None
    missing = [
        {"field": ref.field, "message": f"{ref.kind} {ref.id} does not exist"}
        for ref in spec.upload_refs()
        if owned_upload(session, ref, job.owner_id) is None
    ]
    if missing:
        names = ", ".join(f"{p['field']} ({p['message']})" for p in missing)
        raise Conflict(f"job {job.id} cannot run again: it uses deleted uploads: {names}", details=missing)


# -- worker side ---------------------------------------------------------------------------------
def claim_job(session: Session, job_id: str, worker_id: str, lease_seconds: float) -> Job | None:
    """Compare-and-set ``queued -> running``; ``None`` when someone else has it (duplicate delivery)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(
            state=JobState.RUNNING.value,
            attempt=Job.attempt + 1,
            worker_id=worker_id,
            started_at=now,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            phase="preparing",
            progress={},  # the previous attempt's figures would be stale; this one reports its own
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    session.add(
        JobEvent(
            job_id=job_id, kind="state", attempt=job.attempt, data={"state": "running", "worker": worker_id}
        )
    )
    return job


def heartbeat(
    session: Session,
    job_id: str,
    worker_id: str,
    lease_seconds: float,
    *,
    progress: dict[str, Any] | None = None,
    phase: str | None = None,
) -> tuple[bool, bool]:
    """Extend the lease of the job this worker owns. Returns ``(still_owned, cancel_requested)``;
    a worker that no longer owns the job (re-queued after a lost lease) must stop."""
    now = utcnow()
    values: dict[str, Any] = {
        "heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }
    if progress is not None:
        values["progress"] = progress
    if phase is not None:
        values["phase"] = phase
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.worker_id == worker_id,
            Job.state.in_([JobState.RUNNING.value, JobState.CANCELLING.value]),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False, False
    cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return True, bool(cancel)


def add_event(session: Session, job_id: str, kind: str, data: dict[str, Any], attempt: int = 0) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, data=data, attempt=attempt))


def list_events(
    session: Session, job_id: str, *, after_id: int = 0, kinds: list[str] | None = None, limit: int = 1000
) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id)
    if kinds:
        query = query.where(JobEvent.kind.in_(kinds))
    return list(session.scalars(query.order_by(JobEvent.id).limit(limit)))


def set_checkpoint(session: Session, job_id: str, worker_id: str, key: str) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id)
        .values(checkpoint_key=key, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def finish_success(
    session: Session, job_id: str, worker_id: str, artifacts: list[dict[str, Any]], result: dict[str, Any]
) -> None:
    """Artifacts rows and ``succeeded`` in one transaction (the caller commits once)."""
    transition(
        session,
        job_id,
        JobState.SUCCEEDED,
        expected={JobState.RUNNING},
        finished_at=utcnow(),
        phase="done",
        result=result,
        lease_expires_at=None,
        # Errors of earlier attempts stay in the event history; the job itself did not fail.
        error_type=None,
        error_message=None,
    )
    for artifact in artifacts:
        session.add(Artifact(job_id=job_id, **artifact))


def finish_cancelled(session: Session, job_id: str) -> None:
    transition(
        session,
        job_id,
        JobState.CANCELLED,
        expected={JobState.CANCELLING, JobState.RUNNING},
        finished_at=utcnow(),
        phase=None,
        lease_expires_at=None,
    )


def finish_failure(
    session: Session, job_id: str, error_type: str, message: str, *, retryable: bool
) -> JobState:
    """Record the error; re-queue when retrying can help and attempts remain, else ``failed``."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    message = message[:4000]
    if job.state == JobState.CANCELLING:
        finish_cancelled(session, job_id)
        return JobState.CANCELLED
    if retryable and is_retryable(error_type) and job.attempt < job.max_attempts:
        transition(
            session,
            job_id,
            JobState.QUEUED,
            expected={JobState.RUNNING},
            event={"reason": f"{error_type}: {message}"[:500]},
            error_type=error_type,
            error_message=message,
            queued_at=utcnow(),
            resends=0,
            worker_id=None,
            lease_expires_at=None,
            phase="queued",
        )
        return JobState.QUEUED
    transition(
        session,
        job_id,
        JobState.FAILED,
        expected={JobState.RUNNING, JobState.QUEUED},
        event={"error_type": error_type},
        error_type=error_type,
        error_message=message,
        finished_at=utcnow(),
        lease_expires_at=None,
    )
    return JobState.FAILED


INTERRUPTED_REASON = (
    "interrupted by a worker shutdown; handed back to the queue (attempt {attempt} not counted)"
)


def requeue_interrupted(session: Session, job_id: str) -> JobState:
    """``running -> queued`` for an attempt its worker stopped on purpose (SIGTERM, Ctrl-C): the job
    wrote its checkpoint and hands itself back, and the attempt is not counted (the next claim gets the
    same attempt number again), so clean stops never exhaust ``max_attempts``.

    A job whose cancel was asked meanwhile is cancelled instead. Returns the new state.
    """
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.state == JobState.CANCELLING:
        finish_cancelled(session, job_id)
        return JobState.CANCELLED
    transition(
        session,
        job_id,
        JobState.QUEUED,
        expected={JobState.RUNNING},
        event={"reason": INTERRUPTED_REASON.format(attempt=job.attempt), "interrupted": True},
        attempt=Job.attempt - 1,
        queued_at=utcnow(),
        resends=0,
        worker_id=None,
        lease_expires_at=None,
        phase="queued",
    )
    return JobState.QUEUED


RESEND_BACKOFF_CAP = 8


def resend_backoff(resends: int) -> int:
    """How many resend intervals a queued job waits after its ``resends``-th re-sent message."""
    return int(min(2 ** max(resends, 0), RESEND_BACKOFF_CAP))


@dataclass(frozen=True)
class ReapResult:
    requeued: list[str]
    failed: list[str]
    cancelled: list[str]
    resend: list[tuple[str, str]]  # (job id, queue) whose task must be sent again


def reap(session: Session, *, now: datetime | None = None, queued_resend_seconds: float) -> ReapResult:
    """Find running jobs whose lease expired (worker lost) and queued jobs waiting too long
    (message lost). Lost jobs go back to the queue while attempts remain, else fail with the reason."""
    now = now or utcnow()
    requeued: list[str] = []
    failed: list[str] = []
    cancelled: list[str] = []
    expired = session.scalars(
        select(Job).where(
            Job.state.in_([JobState.RUNNING.value, JobState.CANCELLING.value]),
            Job.lease_expires_at < now,
        )
    ).all()
    for job in expired:
        lost = (
            f"worker {job.worker_id} stopped heartbeating (lease expired) during attempt {job.attempt}: "
            "its process died (killed, out of memory, machine lost) or could not reach the database"
        )
        if job.state == JobState.CANCELLING:
            finish_cancelled(session, job.id)
            cancelled.append(job.id)
        elif job.attempt < job.max_attempts:
            transition(
                session,
                job.id,
                JobState.QUEUED,
                expected={JobState.RUNNING},
                event={"reason": lost},
                error_type="worker_lost",
                error_message=lost,
                queued_at=now,
                resends=0,
                worker_id=None,
                lease_expires_at=None,
                phase="queued",
            )
            requeued.append(job.id)
        else:
            transition(
                session,
                job.id,
                JobState.FAILED,
                expected={JobState.RUNNING},
                event={"error_type": "worker_lost"},
                error_type="worker_lost",
                error_message=f"{lost}; gave up after {job.attempt} attempts (max_attempts={job.max_attempts})",
                finished_at=now,
                lease_expires_at=None,
            )
            failed.append(job.id)
    # A queued job is re-sent when its message may be lost, but a long backlog looks the same from here:
    # re-sending every interval filled the broker with duplicates that workers then had to drain
    # before reaching new jobs. Each re-send doubles the wait for the next one, up to a cap, so a lost
    # message is still replaced within RESEND_BACKOFF_CAP intervals.
    stale = session.execute(
        select(Job.id, Job.queue, Job.queued_at, Job.resends).where(
            Job.state == JobState.QUEUED.value,
            Job.queued_at < now - timedelta(seconds=queued_resend_seconds),
        )
    ).all()
    resend = [
        (job_id, queue)
        for job_id, queue, queued_at, resends in stale
        if queued_at is not None  # always set here (the query's filter); narrows the type
        and now - queued_at >= timedelta(seconds=queued_resend_seconds * resend_backoff(resends))
    ]
    if resend:  # restart the clock: re-sent once per (backed-off) interval, not every tick
        session.execute(
            update(Job)
            .where(Job.id.in_([job_id for job_id, _ in resend]))
            .values(queued_at=now, resends=Job.resends + 1)
            .execution_options(synchronize_session=False)
        )
    return ReapResult(requeued, failed, cancelled, resend + [(j, _queue_of(session, j)) for j in requeued])


def _queue_of(session: Session, job_id: str) -> str:
    return str(session.scalar(select(Job.queue).where(Job.id == job_id)))


def list_artifacts(session: Session, job_id: str) -> list[Artifact]:
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))


def get_artifact(session: Session, job_id: str, name: str) -> Artifact:
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    if artifact is None:
        raise _no_artifact(job_id, name)
    return artifact


def read_artifact(
    connection: Connection, job_id: str, name: str, who: Principal | KeyCheck
) -> tuple[Principal, dict[str, Any]]:
    """The artifact ``name`` of a job ``who`` may see (``name``, ``sha256``, ``content_type``,
    ``storage_key``) for a download, and who read it: the job and its artifact in one query (with the
    key's check, :func:`jobs.auth.read_as`), the 404s of :func:`get_job` then :func:`get_artifact`, and
    no ORM object."""
    principal, rows = read_as(connection, who, _artifact_of_job(), {"job_id": job_id, "name": name})
    if not rows or not _may_see(principal, rows[0]["owner_id"]):
        raise NotFound(f"job {job_id} not found")
    if rows[0]["storage_key"] is None:
        raise _no_artifact(job_id, name)
    return principal, rows[0]


@cache
def _artifact_of_job() -> Select[str, str, str, str, str]:
    # Built once, like every hot read's statement: the job, and its artifact of that name if it has one.
    return (
        select(Job.owner_id, Artifact.name, Artifact.sha256, Artifact.content_type, Artifact.storage_key)
        .outerjoin(Artifact, (Artifact.job_id == Job.id) & (Artifact.name == bindparam("name")))
        .where(Job.id == bindparam("job_id"))
    )


def _no_artifact(job_id: str, name: str) -> NotFound:
    return NotFound(f"artifact {name!r} not found for job {job_id}")
