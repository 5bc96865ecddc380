"""Per-owner storage quota: the sum of an owner's stored datasets and checkpoints.

An upload is checked twice. Before it streams in, the space left caps the stream, so an upload that
cannot fit is cut off as soon as it passes the quota. After it is stored, the owner's row is locked and
the sum is read again before the new row is inserted: two concurrent uploads of one owner are
serialized there, so together they can never exceed the quota (the loser's file is removed with its
rolled-back request).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from jobs.errors import StorageQuotaExceeded
from jobs.models import Checkpoint, Dataset, HFModel, Owner


def lock_owner(session: Session, owner_id: str) -> None:
    """Serialize one owner's quota checks until this transaction ends.

    A no-op update takes the owner's row lock on PostgreSQL (the database write lock on SQLite), so a
    second request of the same owner waits here and then counts what the first one inserted: two
    requests that each fit alone cannot both get past a limit. Held only until the request commits.
    """
    # On the session's connection (Core): through the ORM, a bulk UPDATE also runs the ORM's
    # bulk-persistence set-up, a quarter of the lock's CPU, for a statement that touches no loaded object.
    session.connection().execute(_owner_lock(), {"owner_id": owner_id})


@cache
def _owner_lock() -> Update:
    # Built once: building an UPDATE and its cache key on every submit cost about as much CPU as running it.
    return update(Owner).where(Owner.id == bindparam("owner_id")).values(name=Owner.name)


@dataclass(frozen=True)
class StorageUsage:
    """Bytes an owner's uploads take; ``limit`` 0 means unlimited."""

    used: int
    limit: int

    @property
    def remaining(self) -> int | None:
        return None if self.limit == 0 else max(self.limit - self.used, 0)

    def details(self, upload_bytes: int | None = None) -> dict[str, int | None]:
        details = {"used_bytes": self.used, "limit_bytes": self.limit, "remaining_bytes": self.remaining}
        if upload_bytes is not None:
            details["upload_bytes"] = upload_bytes
        return details


def storage_usage(session: Session, owner_id: str, limit: int) -> StorageUsage:
    used = 0
    for model in (Dataset, Checkpoint, HFModel):
        total = session.scalar(
            select(func.coalesce(func.sum(model.size), 0)).where(model.owner_id == owner_id)
        )
        used += int(total or 0)
    return StorageUsage(used, limit)


def stream_too_large(usage: StorageUsage) -> StorageQuotaExceeded:
    """The error for an upload cut off while streaming because it passed the space left."""
    return StorageQuotaExceeded(
        f"upload exceeds the storage quota: {usage.used} of {usage.limit} bytes are in use, "
        f"{usage.remaining} remain; delete datasets, checkpoints or models to make room",
        details=usage.details(),
    )


def reserve_storage(session: Session, owner_id: str, limit: int, upload_bytes: int) -> StorageUsage:
    """Lock the owner's row, then check that ``upload_bytes`` more still fit (call before the insert).

    The lock (a row lock on PostgreSQL, the write lock on SQLite) is held until the request commits.
    """
    if limit == 0:
        return StorageUsage(0, 0)
    lock_owner(session, owner_id)
    usage = storage_usage(session, owner_id, limit)
    if usage.used + upload_bytes > limit:
        raise StorageQuotaExceeded(
            f"storage quota exceeded: {usage.used} of {limit} bytes are in use and this upload needs "
            f"{upload_bytes} more; delete datasets or checkpoints to make room",
            details=usage.details(upload_bytes),
        )
    return usage
