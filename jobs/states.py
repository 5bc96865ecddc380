"""Job states and the only legal transitions between them.

Every transition is one guarded UPDATE (``... WHERE id = :id AND state IN (:allowed)``), so two
processes racing for the same job cannot both win: the loser sees zero rows and gets a 409.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from jobs.errors import IllegalTransition, NotFound
from jobs.models import Job, JobEvent, utcnow


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# What a user may ask of a job in each state: the routes enforce it (a 409 otherwise) and the API lists
# it per job (``actions``), so clients such as the dashboard offer only what can succeed. A cancelling
# job takes a repeated cancel as a no-op, so there is nothing to offer it.
CANCELLABLE = frozenset({JobState.QUEUED, JobState.RUNNING})
RETRYABLE = frozenset({JobState.FAILED, JobState.CANCELLED})


@cache
def user_actions(state: str) -> tuple[str, ...]:
    """The actions (``cancel``, ``retry``) a job in ``state`` accepts, in the order a UI shows them
    (cached: a listing asks it for every job)."""
    current = JobState(state)
    return tuple(
        action for action, states in (("cancel", CANCELLABLE), ("retry", RETRYABLE)) if current in states
    )


# target state -> states it may be entered from
ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}
    ),  # lost worker / retry
    JobState.RUNNING: frozenset({JobState.QUEUED}),
    JobState.CANCELLING: frozenset({JobState.RUNNING}),
    JobState.SUCCEEDED: frozenset({JobState.RUNNING}),
    JobState.FAILED: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING}),
    JobState.CANCELLED: frozenset({JobState.QUEUED, JobState.CANCELLING, JobState.RUNNING}),
}


def can_transition(current: str, target: JobState) -> bool:
    return JobState(current) in ALLOWED[target]


def transition(
    session: Session,
    job_id: str,
    target: JobState,
    *,
    expected: frozenset[JobState] | set[JobState] | None = None,
    event: dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Move ``job_id`` to ``target`` if it is in ``expected`` (default: every legal source state).

    Raises :class:`IllegalTransition` (409) naming the current state when the guard fails, and
    records a ``state`` event in the same transaction. Does not commit.
    """
    allowed = frozenset(expected) & ALLOWED[target] if expected is not None else ALLOWED[target]
    values = {"state": target.value, "updated_at": utcnow(), **fields}
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_([s.value for s in allowed]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = session.get(Job, job_id, populate_existing=True)
        if current is None:
            raise NotFound(f"job {job_id} not found")
        raise IllegalTransition(
            f"job {job_id} is {current.state}; cannot move to {target.value}",
            details={"state": current.state, "target": target.value},
        )
    job = session.get(Job, job_id, populate_existing=True)
    attempt = job.attempt if job else 0
    session.add(
        JobEvent(job_id=job_id, kind="state", attempt=attempt, data={"state": target.value, **(event or {})})
    )
