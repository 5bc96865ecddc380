"""Job rows as the source of truth: guarded transitions, claims, leases, idempotency, pagination.

Every test runs on SQLite (embedded mode) and on PostgreSQL (distributed mode), on schemas built
by the real migrations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from jobs import repository as repo
from jobs.auth import (
    KeyCheck,
    authenticate,
    create_api_key,
    get_or_create_owner,
    record_key_use,
    revoke_api_key,
)
from jobs.db import make_engine, make_session_factory, transaction
from jobs.errors import Conflict, IllegalTransition, InvalidInput, NotFound, QuotaExceeded, Unauthorized
from jobs.models import ApiKey, Dataset, Job, JobEvent, Owner, utcnow
from jobs.spec import UploadRef
from jobs.states import JobState

SPEC: dict[str, Any] = {
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits"},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
}


def _summary(method: str = "lbc", pattern: str = "2:4") -> dict[str, Any]:
    return {"method": method, "pattern": pattern, "architecture": "mlp", "queue": "cpu"}


@pytest.fixture(params=["sqlite", "postgres"])
def factory(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _owner(factory: sessionmaker[Session], name: str = "alice", admin: bool = False) -> Owner:
    with transaction(factory) as session:
        return get_or_create_owner(session, name, is_admin=admin)


def _submit(factory: sessionmaker[Session], owner: Owner, key: str | None = None, **summary: Any) -> Job:
    with transaction(factory) as session:
        job, _ = repo.create_job(
            session,
            owner=owner,
            spec=SPEC,
            summary=_summary(**summary),
            idempotency_key=key,
            max_attempts=2,
            max_active_jobs=100,
        )
        return job


def _claim(factory: sessionmaker[Session], job_id: str, worker: str = "w1", lease: float = 60) -> Job | None:
    with transaction(factory) as session:
        return repo.claim_job(session, job_id, worker, lease)


def _state(factory: sessionmaker[Session], job_id: str) -> Job:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_idempotency_key_returns_the_existing_job_and_rejects_a_different_spec(factory) -> None:
    owner = _owner(factory)
    first = _submit(factory, owner, key="k1")
    with transaction(factory) as session:
        again, created = repo.create_job(
            session, owner=owner, spec=dict(SPEC), summary=_summary(), idempotency_key="k1", max_attempts=2,
            max_active_jobs=100,
        )  # fmt: skip
    assert not created and again.id == first.id
    with pytest.raises(Conflict, match="different job spec"), transaction(factory) as session:
        repo.create_job(
            session, owner=owner, spec={**SPEC, "name": "other"}, summary=_summary(), idempotency_key="k1",
            max_attempts=2, max_active_jobs=100,
        )  # fmt: skip
    other_owner = _owner(factory, "bob")
    assert _submit(factory, other_owner, key="k1").id != first.id  # keys are per owner


def test_unfinished_job_quota_per_owner(factory) -> None:
    owner = _owner(factory)
    _submit(factory, owner)
    with pytest.raises(QuotaExceeded), transaction(factory) as session:
        repo.create_job(
            session, owner=owner, spec=SPEC, summary=_summary(), idempotency_key=None, max_attempts=2,
            max_active_jobs=1,
        )  # fmt: skip


def test_concurrent_submits_cannot_both_take_the_last_unfinished_job_slot(factory) -> None:
    owner = _owner(factory)
    first_inserted, release_first = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def submit(name: str, hold: bool) -> None:
        try:
            with transaction(factory) as session:
                repo.create_job(
                    session, owner=owner, spec=SPEC, summary=_summary(), idempotency_key=None,
                    max_attempts=2, max_active_jobs=1,
                )  # fmt: skip
                if hold:  # keep the first transaction open while the second one checks the quota
                    first_inserted.set()
                    assert release_first.wait(30)
            outcomes[name] = "created"
        except QuotaExceeded:
            outcomes[name] = "quota"

    first = threading.Thread(target=submit, args=("first", True))
    first.start()
    assert first_inserted.wait(30)
    second = threading.Thread(target=submit, args=("second", False))
    second.start()
    second.join(0.5)  # without the owner lock it counts 0 unfinished jobs here and inserts a second one
    release_first.set()
    first.join(30)
    second.join(30)
    assert outcomes == {"first": "created", "second": "quota"}
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.owner_id == owner.id)) == 1


def test_claim_is_a_compare_and_set_so_duplicate_deliveries_are_harmless(factory) -> None:
    job = _submit(factory, _owner(factory))
    claimed = _claim(factory, job.id, "w1")
    assert claimed is not None and claimed.attempt == 1 and claimed.state == "running"
    assert _claim(factory, job.id, "w2") is None
    row = _state(factory, job.id)
    assert row.worker_id == "w1"
    # Timestamps come back timezone-aware on SQLite too, so Python-side comparisons work everywhere.
    assert row.lease_expires_at is not None and row.lease_expires_at > utcnow()


def test_a_new_attempt_starts_without_the_previous_attempts_progress(factory) -> None:
    job = _submit(factory, _owner(factory))
    assert _claim(factory, job.id, "w1") is not None
    with transaction(factory) as session:
        repo.heartbeat(session, job.id, "w1", 30, progress={"epoch": 3, "fraction": 0.6}, phase="training")
    assert _state(factory, job.id).progress["epoch"] == 3
    with transaction(factory) as session:  # the worker dies; its lease runs out and the reaper re-queues it
        repo.reap(session, now=utcnow() + timedelta(seconds=60), queued_resend_seconds=120)
    assert _state(factory, job.id).state == "queued"
    claimed = _claim(factory, job.id, "w2")
    assert claimed is not None and claimed.attempt == 2
    row = _state(factory, job.id)
    assert (row.phase, row.progress) == ("preparing", {})


def test_concurrent_claims_have_exactly_one_winner(factory) -> None:
    job = _submit(factory, _owner(factory))
    results: list[Job | None] = []
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        barrier.wait()
        try:
            results.append(_claim(factory, job.id, worker))
        except Exception:  # SQLite may report "database is locked" to a loser; it must not win
            results.append(None)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1
    assert _state(factory, job.id).attempt == 1


def test_cancel_queued_is_immediate_running_is_cooperative_terminal_is_409(factory) -> None:
    owner = _owner(factory)
    queued = _submit(factory, owner)
    with transaction(factory) as session:
        repo.request_cancel(session, repo.get_job(session, queued.id, owner))
    assert _state(factory, queued.id).state == "cancelled"

    running = _submit(factory, owner)
    _claim(factory, running.id)
    with transaction(factory) as session:
        repo.request_cancel(session, repo.get_job(session, running.id, owner))
    row = _state(factory, running.id)
    assert row.state == "cancelling" and row.cancel_requested
    with transaction(factory) as session:
        assert repo.heartbeat(session, running.id, "w1", 60) == (True, True)
        repo.finish_cancelled(session, running.id)

    with pytest.raises(IllegalTransition, match="is cancelled") as err, transaction(factory) as session:
        repo.request_cancel(session, repo.get_job(session, running.id, owner))
    assert err.value.status_code == 409 and err.value.details["state"] == "cancelled"


def test_success_writes_artifacts_and_state_together(factory) -> None:
    job = _submit(factory, _owner(factory))
    _claim(factory, job.id)
    artifact = {
        "name": "model.safetensors",
        "size": 3,
        "sha256": "a" * 64,
        "content_type": "x",
        "storage_key": "k",
    }
    with pytest.raises(RuntimeError), transaction(factory) as session:
        repo.finish_success(session, job.id, "w1", [artifact], {"val_accuracy": 0.9})
        raise RuntimeError("crash before commit")
    assert _state(factory, job.id).state == "running"
    with factory() as session:
        assert repo.list_artifacts(session, job.id) == []
    with transaction(factory) as session:
        repo.finish_success(session, job.id, "w1", [artifact], {"val_accuracy": 0.9})
    assert _state(factory, job.id).state == "succeeded"
    with factory() as session:
        assert [a.name for a in repo.list_artifacts(session, job.id)] == ["model.safetensors"]


def test_failures_requeue_while_attempts_remain_unless_retrying_cannot_help(factory) -> None:
    owner = _owner(factory)
    job = _submit(factory, owner)
    _claim(factory, job.id)
    with transaction(factory) as session:
        assert (
            repo.finish_failure(session, job.id, "internal_error", "boom", retryable=True) == JobState.QUEUED
        )
    _claim(factory, job.id)
    with transaction(factory) as session:  # attempt 2 of 2: no attempts left
        assert (
            repo.finish_failure(session, job.id, "internal_error", "boom", retryable=True) == JobState.FAILED
        )
    row = _state(factory, job.id)
    assert (row.state, row.error_type, row.error_message) == ("failed", "internal_error", "boom")

    bad = _submit(factory, owner)
    _claim(factory, bad.id)
    with transaction(factory) as session:
        assert repo.finish_failure(session, bad.id, "invalid_input", "no", retryable=True) == JobState.FAILED

    with transaction(factory) as session:
        repo.retry_job(session, repo.get_job(session, job.id, owner), max_attempts=3)
    row = _state(factory, job.id)
    assert (row.state, row.attempt, row.error_type) == ("queued", 0, None)


def test_reaper_requeues_lost_workers_fails_after_the_cap_and_resends_lost_messages(factory) -> None:
    owner = _owner(factory)
    lost = _submit(factory, owner)
    _claim(factory, lost.id, lease=0.01)
    later = utcnow() + timedelta(seconds=5)
    with transaction(factory) as session:
        result = repo.reap(session, now=later, queued_resend_seconds=3600)
    assert result.requeued == [lost.id]
    assert (lost.id, "cpu") in result.resend
    row = _state(factory, lost.id)
    assert row.state == "queued" and row.error_type == "worker_lost"

    _claim(factory, lost.id, lease=0.01)  # attempt 2 of 2 is lost as well
    with transaction(factory) as session:
        result = repo.reap(session, now=utcnow() + timedelta(seconds=5), queued_resend_seconds=3600)
    assert result.failed == [lost.id]
    message = _state(factory, lost.id).error_message or ""
    assert message.startswith("worker w1 stopped heartbeating (lease expired) during attempt 2: ")
    assert "its process died (killed, out of memory, machine lost)" in message
    assert message.endswith("; gave up after 2 attempts (max_attempts=2)")

    waiting = _submit(factory, owner)
    with transaction(factory) as session:
        result = repo.reap(session, now=utcnow() + timedelta(seconds=10), queued_resend_seconds=5)
    assert (waiting.id, "cpu") in result.resend
    with transaction(factory) as session:  # the clock restarted: not re-sent on the next tick
        assert repo.reap(session, now=utcnow() + timedelta(seconds=11), queued_resend_seconds=5).resend == []


def test_resends_of_a_waiting_job_back_off_and_a_requeue_starts_over(factory) -> None:
    """A long backlog must not fill the broker with one duplicate message per job per interval."""
    owner = _owner(factory)
    waiting = _submit(factory, owner)
    start = _state(factory, waiting.id).queued_at
    assert start is not None

    def resent_at(seconds: float) -> bool:
        with transaction(factory) as session:
            result = repo.reap(session, now=start + timedelta(seconds=seconds), queued_resend_seconds=5)
        return (waiting.id, "cpu") in result.resend

    # Sent at 0; re-sent after more than 5 s, then after 10, 20, 40 s; the wait stops doubling at 8 intervals.
    sends = [t for t in range(0, 200) if resent_at(t)]
    assert sends == [6, 16, 36, 76, 116, 156, 196]
    assert _state(factory, waiting.id).resends == 7

    _claim(factory, waiting.id, lease=0.01)
    with transaction(factory) as session:  # the worker is lost: queued again, with a message sent now
        repo.reap(session, now=utcnow() + timedelta(seconds=1), queued_resend_seconds=5)
    assert _state(factory, waiting.id).resends == 0


def test_a_worker_that_lost_its_lease_cannot_heartbeat_or_checkpoint(factory) -> None:
    job = _submit(factory, _owner(factory))
    _claim(factory, job.id, "w1", lease=0.01)
    with transaction(factory) as session:
        repo.reap(session, now=utcnow() + timedelta(seconds=5), queued_resend_seconds=3600)
    _claim(factory, job.id, "w2")
    with transaction(factory) as session:
        assert repo.heartbeat(session, job.id, "w1", 60) == (False, False)
        assert not repo.set_checkpoint(session, job.id, "w1", "jobs/x/checkpoints/1.pt")
        assert repo.heartbeat(session, job.id, "w2", 60, progress={"epoch": 1}) == (True, False)


def test_listing_filters_before_paginating_and_hides_other_owners(factory) -> None:
    alice, bob = _owner(factory), _owner(factory, "bob")
    lbc_ids = {_submit(factory, alice, method="lbc").id for _ in range(5)}
    for _ in range(3):
        _submit(factory, alice, method="srste")
    _submit(factory, bob, method="lbc")
    seen: list[str] = []
    cursor = None
    with factory() as session:
        while True:
            _, page, cursor = repo.list_jobs(
                session, alice, repo.JobFilters(method="lbc"), limit=2, cursor=cursor
            )
            seen += [job["id"] for job in page]
            if cursor is None:
                break
    assert len(seen) == len(set(seen)) == 5 and set(seen) == lbc_ids
    admin = _owner(factory, "root", admin=True)
    with factory() as session:
        _, everything, _ = repo.list_jobs(session, admin, repo.JobFilters(), limit=100)
    assert len(everything) == 9


def test_another_owners_job_is_not_found(factory) -> None:
    job = _submit(factory, _owner(factory))
    with factory() as session, pytest.raises(NotFound):
        repo.get_job(session, job.id, _owner(factory, "mallory"))


def test_every_transition_is_recorded_as_an_event(factory) -> None:
    job = _submit(factory, _owner(factory))
    _claim(factory, job.id)
    with transaction(factory) as session:
        repo.finish_success(session, job.id, "w1", [], {})
    with factory() as session:
        states = [e.data["state"] for e in session.scalars(select(JobEvent).where(JobEvent.kind == "state"))]
    assert states == ["queued", "running", "succeeded"]


def test_api_keys_are_stored_hashed_and_authenticate(factory) -> None:
    owner = _owner(factory)
    with transaction(factory) as session:
        _, token = create_api_key(session, owner, "laptop")
    with factory() as session:
        stored = session.scalars(select(ApiKey)).one()
        assert token not in (stored.digest, stored.prefix) and len(stored.digest) == 64
    with transaction(factory) as session:
        assert authenticate(session, token).id == owner.id
    for bad in (None, "", token + "x", "lbc_guess"):
        with pytest.raises(Unauthorized), transaction(factory) as session:
            authenticate(session, bad)


def _key(factory: sessionmaker[Session], owner: Owner) -> str:
    with transaction(factory) as session:
        _, token = create_api_key(session, owner, "reader")
    return token


def _selects_while(factory: sessionmaker[Session], read: Any) -> tuple[Any, list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.connect() as connection:
            result = read(connection)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return result, [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def test_authentication_reads_the_key_and_its_owner_in_one_query(factory) -> None:
    token = _key(factory, _owner(factory))
    principal, selects = _selects_while(factory, lambda connection: authenticate(connection, token))
    assert principal.name == "alice"
    assert len(selects) == 1, selects  # not a second round trip for the owner (a pre-ping is not a cursor)


def test_a_hot_read_checks_its_key_in_its_own_statement(factory) -> None:
    alice, bob = _owner(factory), _owner(factory, "bob")
    token = _key(factory, alice)
    mine, theirs = _submit(factory, alice), _submit(factory, bob)
    columns = (Job.id, Job.owner_id, Job.state)
    (principal, row), selects = _selects_while(
        factory, lambda c: repo.read_job(c, mine.id, KeyCheck(token), columns)
    )
    assert len(selects) == 1, selects  # the key and the job in one round trip
    assert principal.id == alice.id and principal.key_id is not None
    assert row == {"id": mine.id, "owner_id": alice.id, "state": "queued"}
    for job_id in (theirs.id, "missing"):  # another owner's job is missing, as a missing one is
        with pytest.raises(NotFound), factory.kw["bind"].connect() as connection:
            repo.read_job(connection, job_id, KeyCheck(token), columns)
    with transaction(factory) as session:
        revoke_api_key(session, token)
    for bad in (None, "", token, "lbc_guess"):  # the key is refused before anything about the job
        with pytest.raises(Unauthorized), factory.kw["bind"].connect() as connection:
            repo.read_job(connection, theirs.id, KeyCheck(bad), columns)


def test_a_page_read_with_its_key_is_the_key_owners_and_an_admins_is_everyones(factory) -> None:
    alice, bob, root = _owner(factory), _owner(factory, "bob"), _owner(factory, "root", admin=True)
    alices = [_submit(factory, alice).id for _ in range(5)]
    _submit(factory, bob)
    columns = (Job.id, Job.owner_id, Job.created_at)
    token = _key(factory, alice)
    seen: list[str] = []
    cursor = None
    while True:
        (principal, rows, cursor), selects = _selects_while(
            factory,
            lambda c, after=cursor: repo.list_jobs(
                c, KeyCheck(token), repo.JobFilters(), columns=columns, limit=2, cursor=after
            ),
        )
        assert len(selects) == 1 and principal.id == alice.id
        seen += [row["id"] for row in rows]
        if cursor is None:
            break
    assert seen == alices[::-1]  # newest first, each once, only alice's
    newcomer = _key(factory, _owner(factory, "carol"))
    (principal, rows, cursor), _ = _selects_while(
        factory, lambda c: repo.list_jobs(c, KeyCheck(newcomer), repo.JobFilters(), columns=columns)
    )
    assert principal.name == "carol" and rows == [] and cursor is None
    (principal, rows, _), _ = _selects_while(
        factory,
        lambda c: repo.list_jobs(c, KeyCheck(_key(factory, root)), repo.JobFilters(), columns=columns),
    )
    assert principal.is_admin and len(rows) == 6
    with pytest.raises(Unauthorized), factory.kw["bind"].connect() as connection:
        repo.list_jobs(connection, KeyCheck("lbc_guess"), repo.JobFilters(), columns=columns)


def test_a_key_is_revoked_by_its_id_its_listed_prefix_or_itself(factory) -> None:
    owner = _owner(factory)
    tokens = []
    for name in ("a", "b", "c", "d"):
        with transaction(factory) as session:
            key, token = create_api_key(session, owner, name)
            tokens.append((key.id, key.prefix, token))
    (a_id, _, a), (_, b_prefix, b), (_, c_prefix, c), (_, _, d) = tokens
    for named, token in ((a_id, a), (f"{b_prefix}...", b), (f" {c_prefix}\u2026 ", c), (d, d)):
        with transaction(factory) as session:
            listing, revoked_now = revoke_api_key(session, named)
        assert revoked_now and token.startswith(listing.prefix)
        with pytest.raises(Unauthorized), transaction(factory) as session:
            authenticate(session, token)
    with pytest.raises(NotFound, match="lbc_nope"), transaction(factory) as session:
        revoke_api_key(session, "lbc_nope...")


def test_key_use_is_recorded_at_most_once_a_minute(factory) -> None:
    owner = _owner(factory)
    with transaction(factory) as session:
        _, token = create_api_key(session, owner, "ci")
    with transaction(factory) as session:
        principal = authenticate(session, token)
        assert not session.dirty and not session.new  # authentication only reads
    now = utcnow()
    assert principal.key_id is not None and principal.key_use_to_record(now)  # never used yet
    with transaction(factory) as session:
        record_key_use(session.connection(), principal.key_id, now)
    with transaction(factory) as session:
        again = authenticate(session, token)
    assert again.key_last_used_at == now
    assert not again.key_use_to_record(now + timedelta(seconds=59))
    assert again.key_use_to_record(now + timedelta(seconds=61))
    with transaction(factory) as session:  # an earlier stamp arriving late does not move it back
        record_key_use(session.connection(), principal.key_id, now - timedelta(seconds=120))
    with factory() as session:
        assert session.scalars(select(ApiKey)).one().last_used_at == now


def test_retry_respects_the_unfinished_job_quota(factory) -> None:
    owner = _owner(factory)
    failed = _submit(factory, owner)
    _claim(factory, failed.id)
    with transaction(factory) as session:
        repo.finish_failure(session, failed.id, "invalid_input", "bad", retryable=False)
    _submit(factory, owner)
    with pytest.raises(QuotaExceeded), transaction(factory) as session:
        repo.retry_job(session, repo.get_job(session, failed.id, owner), max_attempts=3, max_active_jobs=1)


def test_a_job_that_succeeds_after_a_lost_attempt_shows_no_error(factory) -> None:
    job = _submit(factory, _owner(factory))
    _claim(factory, job.id, lease=0.01)
    with transaction(factory) as session:
        repo.reap(session, now=utcnow() + timedelta(seconds=5), queued_resend_seconds=3600)
    assert _state(factory, job.id).error_type == "worker_lost"
    _claim(factory, job.id, "w2")
    with transaction(factory) as session:
        repo.finish_success(session, job.id, "w2", [], {"val_accuracy": 1.0})
    row = _state(factory, job.id)
    assert (row.state, row.error_type, row.error_message) == ("succeeded", None, None)


@pytest.mark.parametrize("name", ["evil\x1b[2J", "a\u202eb", "nul\x00", "n" * 201])
def test_owner_and_key_names_follow_the_name_rule(factory, name: str) -> None:
    with pytest.raises(InvalidInput, match="owner name"), transaction(factory) as session:
        get_or_create_owner(session, name)
    owner = _owner(factory, "name-rule-owner")
    with pytest.raises(InvalidInput, match="key name"), transaction(factory) as session:
        create_api_key(session, session.merge(owner), name)


def test_a_job_interrupted_by_a_worker_shutdown_goes_back_without_counting_the_attempt(factory) -> None:
    owner = _owner(factory)
    job = _submit(factory, owner)  # max_attempts=2
    for _ in range(3):  # more clean stops than attempts: none of them counts
        claimed = _claim(factory, job.id)
        assert claimed is not None and claimed.attempt == 1
        with transaction(factory) as session:
            assert repo.requeue_interrupted(session, job.id) == JobState.QUEUED
        row = _state(factory, job.id)
        assert (row.state, row.attempt, row.worker_id, row.error_type) == ("queued", 0, None, None)
    with factory() as session:
        requeued = [
            e.data for e in repo.list_events(session, job.id, kinds=["state"]) if e.data["state"] == "queued"
        ]
    assert requeued[-1]["interrupted"] is True
    assert requeued[-1]["reason"].startswith("interrupted by a worker shutdown")
    assert "attempt 1 not counted" in requeued[-1]["reason"]

    _claim(factory, job.id)
    with transaction(factory) as session:  # a cancel asked meanwhile wins over the hand-back
        repo.request_cancel(session, repo.get_job(session, job.id, owner))
    with transaction(factory) as session:
        assert repo.requeue_interrupted(session, job.id) == JobState.CANCELLED
    with transaction(factory) as session, pytest.raises(IllegalTransition):
        repo.requeue_interrupted(session, job.id)  # not running any more


def test_an_upload_deleted_between_the_submit_checks_and_the_insert_is_named_not_a_foreign_key_error(
    factory,
) -> None:
    # Found by racing POST /v1/jobs against DELETE /v1/datasets/{id}: the submit's checks saw the dataset,
    # the delete committed, and the insert failed its foreign key: a 500 (IntegrityError).
    owner = _owner(factory)
    with transaction(factory) as session:
        dataset = Dataset(
            owner_id=owner.id, name="d", format="npz", filename="d.npz", size=1, sha256="0" * 64,
            storage_key="datasets/x/d.npz", summary={},
        )  # fmt: skip
        session.add(dataset)
        session.flush()
        dataset_id = dataset.id
    spec = {
        "model": {"architecture": "lenet5"},
        "dataset": {"source": "npz", "path": dataset_id},
        "sparsity": {"method": "lbc", "n": 2, "m": 4},
    }
    with pytest.raises(InvalidInput) as refused, transaction(factory) as session:
        ref = UploadRef("dataset.path", "dataset", dataset_id)
        assert repo.owned_upload(session, ref, owner.id) is not None  # what the submit's checks saw
        with transaction(factory) as other:  # a delete that commits meanwhile
            other.delete(other.get(Dataset, dataset_id))
        repo.create_job(
            session, owner=owner, spec=spec, summary={**_summary(), "dataset_id": dataset_id},
            idempotency_key=None, max_attempts=2, max_active_jobs=100,
        )  # fmt: skip
    assert refused.value.details == [
        {
            "field": "dataset.path",
            "message": f"dataset {dataset_id} does not exist (it was deleted meanwhile)",
        }
    ]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_retry_racing_a_dataset_delete_is_a_conflict_under_the_owner_lock(factory) -> None:
    # The retry route checked the job's uploads before retry_job took the owner's lock: a delete that
    # committed in between put the job back in the queue, and the worker failed it (dataset gone).
    owner = _owner(factory)
    with transaction(factory) as session:
        dataset = Dataset(
            owner_id=owner.id, name="d", format="npz", filename="d.npz", size=1, sha256="0" * 64,
            storage_key="datasets/x/d.npz", summary={},
        )  # fmt: skip
        session.add(dataset)
        session.flush()
        dataset_id = dataset.id
    spec = {
        "model": {"architecture": "lenet5"},
        "dataset": {"source": "npz", "path": dataset_id},
        "sparsity": {"method": "lbc", "n": 2, "m": 4},
    }
    with transaction(factory) as session:
        job, _ = repo.create_job(
            session, owner=owner, spec=spec, summary={**_summary(), "dataset_id": dataset_id},
            idempotency_key=None, max_attempts=1, max_active_jobs=100,
        )  # fmt: skip
        job_id = job.id
    _claim(factory, job_id)
    with transaction(factory) as session:
        repo.finish_failure(session, job_id, "internal_error", "boom", retryable=False)
    with pytest.raises(Conflict) as refused, transaction(factory) as session:
        failed = repo.get_job(session, job_id, owner)
        repo.check_references_still_exist(session, failed)  # what a check before the lock saw: all there
        with transaction(factory) as other:  # a delete that commits meanwhile
            other.delete(other.get(Dataset, dataset_id))
        repo.retry_job(session, failed, max_attempts=2, max_active_jobs=100)
    assert refused.value.details == [
        {"field": "dataset.path", "message": f"dataset {dataset_id} does not exist"}
    ]
    assert _state(factory, job_id).state == "failed"
