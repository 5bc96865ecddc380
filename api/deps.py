"""Request dependencies, declared once as named ``Annotated`` types and used in every route signature.

``SessionDep`` is the request's single transaction: it commits after the route returns (before the
response is sent) and rolls back on any error. Work that must only happen once the data is durable
(ringing the queue, deleting stored files) is registered with :func:`after_commit` and runs after the
commit; cleanup of side effects that must not outlive a failed request goes to :func:`on_rollback`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
from celery import Celery
from fastapi import Depends, Path, Request
from fastapi.security import HTTPBearer
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from api.db_threads import DatabaseThreads
from jobs import repository
from jobs.auth import KeyCheck, Principal, authenticate, get_or_create_owner, record_key_use
from jobs.errors import InvalidInput
from jobs.models import Checkpoint, Dataset, HFModel, Job, utcnow
from jobs.settings import Settings
from jobs.storage import ObjectStore
from jobs.text import text_problem

log = logging.getLogger("api")

LOCAL_OWNER = "local"
_AFTER_COMMIT = "lbc_after_commit"
_ON_ROLLBACK = "lbc_on_rollback"
T = TypeVar("T")


async def refuse_nul_in_url(request: Request) -> None:
    """Every route's first dependency: no path or query parameter holds a NUL character (``jobs.text``).

    PostgreSQL refuses NUL in text (a 500 from the driver) where SQLite stores it: one check at the
    edge, before any lookup, answers the same 422 on both.
    """
    params = [(name, value, "path") for name, value in request.path_params.items()]
    params += [(name, value, "query") for name, value in request.query_params.multi_items()]
    problems = []
    for name, value, location in params:
        problem = text_problem(name) or (text_problem(value) if isinstance(value, str) else None)
        if problem:
            problems.append({"field": name, "message": problem, "location": location})
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise InvalidInput(f"invalid request: {summary}", details=problems)


# The dependencies that only read app.state are ``async def``: a plain ``def`` dependency costs a hop
# to the thread pool and back on every request (one wake-up and GIL hand-off each way).
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once this request's transaction has committed (never if it rolls back)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def commit_now(session: Session) -> None:
    """Commit the request's transaction in this thread hop and run its after-commit hooks.

    For routes that take the owner's quota lock: committed at the dependency's teardown, the lock would be
    held across several thread-pool hops, and every concurrent submit of that owner would queue behind it
    (at 50 clients of one owner, submit p99 went from under 1 s to 7 s). A failed commit still raises
    into ``get_session``, which rolls back and reports it; its own commit then has nothing left to do.
    """
    session.commit()
    _run(session.info.pop(_AFTER_COMMIT, []), "after-commit")


def on_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` if this request's transaction is rolled back (undo a side effect)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(callback)


def _run(callbacks: list[Callable[[], None]], what: str) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the data is committed (or gone); a failed hook must not turn into a 500
            log.exception("%s hook failed", what)


def database_slots(engine: Engine) -> anyio.Semaphore | None:
    """One slot per connection the engine's pool can hand out (``None``: the pool never makes anyone wait).

    A request's session (:data:`SessionDep`) keeps its connection from its first query to its commit,
    across several hops to the worker threads (dependencies, route, commit), and a checkout that finds
    the pool empty blocks a worker thread; :meth:`Caller.run` holds a slot for its one hop. With more
    requests in flight than connections plus threads (30 + 40 on PostgreSQL), every thread could be
    blocked on a checkout while every connection belongs to a request that waits for a thread: the API
    answered nothing until the pool's 30 s timeout, then 500s. A request now takes a slot, in the event
    loop without a thread, before its session exists, so its checkout never waits on a request that is
    itself waiting for a thread (only, briefly, on /metrics, /readyz or an event stream's poll, which
    use a connection within one call).
    """
    capacity = pool_capacity(engine)
    return None if capacity is None else anyio.Semaphore(capacity)


def pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool hands out at most (``None``: no bound)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return None
    overflow = getattr(pool, "_max_overflow", 0)
    return None if overflow < 0 else pool.size() + overflow


def database_threads(engine: Engine) -> DatabaseThreads:
    """The request's database work runs in these threads: one per database slot (a request holds its
    slot while its work runs, so a thread is always free for it)."""
    return DatabaseThreads(pool_capacity(engine))


class Caller:
    """Who is calling (the bearer token as sent, the owner once it was checked) and, while the request
    works, its one transaction.

    Authentication needs the database, so it runs in a worker thread. :meth:`run` does it in the same hop
    as the route's own work and commit: one hop per request, and no dependency with a teardown. Routes
    that need the owner before their work (:data:`CurrentOwner`: a JSON body is read only once the key is
    good) get it, and the request's session (:data:`SessionDep`), from dependencies; :meth:`run` then
    reuses both.
    """

    __slots__ = ("_owner", "_state", "checks", "session", "token")

    def __init__(self, token: str | None, app_state: Any) -> None:
        self.token = token
        self.session: Session | None = None
        # Lookups a dependency (JobRef) stands for, run only for a 422 (check_key_before_422).
        self.checks: list[Callable[[Session, Principal], object]] = []
        self._state = app_state
        self._owner: Principal | None = None

    @property
    def authenticated(self) -> bool:
        return self._owner is not None

    def owner(self) -> Principal:
        """The authenticated owner (checked once per request, in the request's session); call it in a
        worker thread."""
        if self._owner is None:
            session = self._session()
            self._owner = principal = self._authenticate(session)
            now = utcnow()
            if principal.key_id is not None and principal.key_use_to_record(now):
                _record_key_use_after_commit(session, self._state.engine, principal.key_id, now)
        return self._owner

    def _authenticate(self, session: Session) -> Principal:
        if not self._state.settings.auth_enabled:
            # One implicit owner: still owner-scoped, so turning auth on later changes nothing else.
            return Principal.of(get_or_create_owner(session, LOCAL_OWNER))
        return authenticate(session, self.token)

    def check_before_422(self) -> None:
        """Raise what the request would have failed with before its parameters were validated: a bad
        key (401), then a missing object of a :data:`JobRef` (404). In a session of its own that writes
        nothing (no ``last_used_at`` stamp): the request fails either way. Call it in a worker thread."""
        session = self._state.session_factory()
        try:
            owner = self._authenticate(session)
            for check in self.checks:
                check(session, owner)
        finally:
            session.rollback()
            session.close()

    def _session(self) -> Session:
        if self.session is None:
            raise RuntimeError("the request's session is open only inside Caller.run or with SessionDep")
        return self.session

    async def run(self, work: Callable[[Session, Principal], T], *, read_only: bool = False) -> T:
        """Authenticate, run ``work(session, owner)`` and commit, in ONE hop to the thread pool; return
        what ``work`` returned.

        Each hop is a queue hand-off, a wake-up of the event loop and a GIL hand-off both ways; with a
        hop for the owner, one for the route, one for the session's teardown and FastAPI's own, they
        were the largest single cost of a request in the API's profile. The request takes its database
        slot (:func:`database_slots`) for the hop; its transaction is committed, or rolled back on any
        error (with the :func:`on_rollback` hooks), and closed within it. A thread is never abandoned,
        so a client that goes away cannot interrupt the rollback.

        ``read_only``: the work only reads, so its statements run without a transaction around them
        (no BEGIN and COMMIT round trips); each SELECT sees what was committed before it started.
        """
        if self.session is not None:  # the route also depends on SessionDep, which commits at its end
            session = self.session
            return await self._state.db_threads.run(self._work_then_commit, session, work)
        state = self._state
        slots: anyio.Semaphore | None = state.database_slots
        async with slots if slots is not None else nullcontext():
            return await state.db_threads.run(self._in_own_transaction, work, read_only)

    async def read(self, work: Callable[[Connection, Principal | KeyCheck], tuple[Principal, T]]) -> T:
        """Run ``work(connection, who)``, which only reads (Core rows, no ORM object) and checks the
        request's key in its own statement (:func:`jobs.auth.read_as`), in one hop on a bare autocommit
        connection; return what ``work`` returned after the principal it read.

        One statement for the key and the read: the key's own query cost a status read a quarter of its
        CPU (a round trip, and the thread's hand-offs around it). No session and no transaction: each
        SELECT sees what was committed before it started, as in :meth:`run` with ``read_only``, without
        the session's bookkeeping (its transaction object, its identity map, its commit and close).
        Without authentication (the one local owner, whom the first request creates) the work runs as
        that owner in :meth:`run`'s session instead.
        """
        state = self._state
        if not state.settings.auth_enabled:
            return await self.run(lambda session, owner: work(session.connection(), owner)[1], read_only=True)
        slots: anyio.Semaphore | None = state.database_slots
        async with slots if slots is not None else nullcontext():
            return await state.db_threads.run(self._read, work)

    def _read(self, work: Callable[[Connection, Principal | KeyCheck], tuple[Principal, T]]) -> T:
        engine: Engine = self._state.engine
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            principal, result = work(connection, KeyCheck(self.token))
        self._owner = principal
        now = utcnow()
        if principal.key_id is not None and principal.key_use_to_record(now):
            _run([_key_use_recorder(engine, principal.key_id, now)], "after-read")
        return result

    def _work_then_commit(self, session: Session, work: Callable[[Session, Principal], T]) -> T:
        result = work(session, self.owner())
        commit_now(session)
        return result

    def _in_own_transaction(self, work: Callable[[Session, Principal], T], read_only: bool) -> T:
        session = self.session = self._state.session_factory()
        try:
            if read_only:
                session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return self._work_then_commit(session, work)
        except BaseException:
            _roll_back(session)
            raise
        finally:
            session.close()
            self.session = None


class CallerScheme(HTTPBearer):
    """The API's security scheme (an API key as a bearer token, as OpenAPI documents it) whose
    dependency value is the request's :class:`Caller`: one dependency for both, where a scheme and a
    dependency on it cost FastAPI two resolutions on every request.

    No I/O: the key is checked in the route's own hop; a request whose parameters are invalid gets its
    key checked before its 422 (:func:`check_key_before_422`), so a bad key is still a 401 whatever
    else is wrong."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        credentials = await super().__call__(request)
        caller = Caller(credentials.credentials if credentials else None, request.app.state)
        request.state.caller = caller
        return caller


get_caller = CallerScheme(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key as a bearer token: `Authorization: Bearer lbc_...`.",
)
CallerDep = Annotated[Caller, Depends(get_caller)]


async def check_key_before_422(request: Request) -> None:
    """Raise the 401 (or 404, or the database's error) that a request with invalid parameters gets
    first: its key, and the job its path names, are checked before its parameters are reported, as when
    every route authenticated and looked its job up in dependencies of their own
    (:meth:`Caller.check_before_422`)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None or caller.authenticated:
        return
    state = request.app.state
    if not state.settings.auth_enabled and not caller.checks:
        return
    slots: anyio.Semaphore | None = state.database_slots
    async with slots if slots is not None else nullcontext():
        await state.db_threads.run(caller.check_before_422)


async def get_session(caller: CallerDep) -> AsyncIterator[Session]:
    """The request's session for routes that use it across several steps, opened once the request holds
    a database slot (:func:`database_slots`), which it keeps until the session is committed and closed.

    ``async``: opening a session does no I/O (its connection is checked out at the first query, in a
    worker thread), and a route that ran its work with :meth:`Caller.run` has already committed, so its
    teardown does no I/O either.
    """
    state = caller._state
    slots: anyio.Semaphore | None = state.database_slots
    async with slots if slots is not None else nullcontext():
        session = caller.session = state.session_factory()
        try:
            yield session
        except BaseException:
            with anyio.CancelScope(shield=True):  # a client that went away still gets its rollback
                await state.db_threads.run(_roll_back, session)
            raise
        finally:
            caller.session = None
        if _has_work_left(session):
            await state.db_threads.run(_commit, session)
        else:
            session.close()


def _has_work_left(session: Session) -> bool:
    """Whether committing ``session`` needs the database or runs hooks (then it goes to a thread)."""
    return bool(
        session.in_transaction()
        or session.new
        or session.dirty
        or session.deleted
        or session.info.get(_AFTER_COMMIT)
    )


def _commit(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        _roll_back(session)
        raise
    session.close()
    _run(session.info.pop(_AFTER_COMMIT, []), "after-commit")


def _roll_back(session: Session) -> None:
    try:
        session.rollback()
        _run(session.info.pop(_ON_ROLLBACK, []), "rollback")
    finally:
        session.close()


# scope="function": the commit happens before the response goes out, so a client never sees a 201 for
# a row that is not there, and a failed commit is still reported as an error.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_current_owner(caller: CallerDep, _session: SessionDep) -> Principal:
    """The authenticated owner, in a hop of its own, in the request's session (a route that does its
    work with :meth:`Caller.run` does not need it)."""
    return await caller._state.db_threads.run(caller.owner)


def _record_key_use_after_commit(session: Session, engine: Engine, key_id: str, when: datetime) -> None:
    """Record the key's throttled use (``last_used_at``) outside the request's transaction.

    Written in the request's session, that UPDATE would hold the key's row lock (SQLite: the database's
    write lock) until the request commits, several worker-thread hops later, so every concurrent request
    with the same key queued behind it; once all worker threads wait on that lock or on the connection
    pool, the holder never gets a thread back and the API hangs until the pool times out (30 s, then
    500s). The stamp is written after the commit instead, in its own one-statement transaction that
    skips a stamp another request already wrote.
    """
    after_commit(session, _key_use_recorder(engine, key_id, when))


def _key_use_recorder(engine: Engine, key_id: str, when: datetime) -> Callable[[], None]:
    def record() -> None:
        with engine.begin() as connection:
            record_key_use(connection, key_id, when)

    return record


CurrentOwner = Annotated[Principal, Depends(get_current_owner)]

JobId = Annotated[
    str, Path(description="Job id.", max_length=64, examples=["3f2b9c1d0e8a4f6b9c2d1e0f8a7b6c5d"])
]


async def job_ref(job_id: JobId, caller: CallerDep) -> str:
    """The job id of a route that looks its job up in :meth:`Caller.run`. No I/O; it stands for that
    lookup in a request whose other parameters are invalid, which is a 404 before it is a 422 (as with
    :data:`JobDep`, whose lookup ran before the route's parameters were validated)."""
    caller.checks.append(lambda session, owner: repository.get_job(session, job_id, owner))
    return job_id


JobRef = Annotated[str, Depends(job_ref)]


def get_job(job_id: JobId, session: SessionDep, owner: CurrentOwner) -> Job:
    """The job if this owner may see it; another owner's job is a 404, as is a missing one."""
    return repository.get_job(session, job_id, owner)


JobDep = Annotated[Job, Depends(get_job)]


def get_dataset(
    dataset_id: Annotated[str, Path(description="Dataset id.", max_length=64)],
    session: SessionDep,
    owner: CurrentOwner,
) -> Dataset:
    dataset: Dataset = repository.owned(session, Dataset, dataset_id, owner)
    return dataset


DatasetDep = Annotated[Dataset, Depends(get_dataset)]


def get_checkpoint(
    checkpoint_id: Annotated[str, Path(description="Checkpoint id.", max_length=64)],
    session: SessionDep,
    owner: CurrentOwner,
) -> Checkpoint:
    checkpoint: Checkpoint = repository.owned(session, Checkpoint, checkpoint_id, owner)
    return checkpoint


CheckpointDep = Annotated[Checkpoint, Depends(get_checkpoint)]


def get_hf_model(
    model_id: Annotated[str, Path(description="Uploaded model id.", max_length=64)],
    session: SessionDep,
    owner: CurrentOwner,
) -> HFModel:
    model: HFModel = repository.owned(session, HFModel, model_id, owner)
    return model


HFModelDep = Annotated[HFModel, Depends(get_hf_model)]


async def get_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.store
    return store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


async def get_queue(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


QueueDep = Annotated[Celery, Depends(get_queue)]
