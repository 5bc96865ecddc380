"""API keys: random bearer tokens, stored only as a SHA-256 digest, shown once at creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, ScalarSelect, Select, bindparam, or_, select, true, update
from sqlalchemy.orm import Session

from jobs.db import connection_of
from jobs.errors import Conflict, InvalidInput, NotFound, Unauthorized
from jobs.models import ApiKey, Owner, utcnow
from jobs.text import name_problem

KEY_PREFIX = "lbc_"
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_NAME_CHARS = 200  # the name columns of owners and keys


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_name(what: str, name: str) -> None:
    """Owner and key names follow the rule of every name (``jobs.text``): shown in listings, so no
    control or bidirectional characters, and at most 200 characters."""
    problem = name_problem(name)
    if not name.strip():
        problem = "must not be empty"
    if len(name) > MAX_NAME_CHARS:
        problem = f"must be at most {MAX_NAME_CHARS} characters, got {len(name)}"
    if problem:
        raise InvalidInput(f"{what}: {problem}", details=[{"field": what, "message": problem}])


def get_or_create_owner(session: Session, name: str, *, is_admin: bool = False) -> Owner:
    check_name("owner name", name)  # before the lookup: PostgreSQL cannot even compare text holding a NUL
    owner = session.scalar(select(Owner).where(Owner.name == name))
    if owner is None:
        owner = Owner(name=name, is_admin=is_admin)
        session.add(owner)
        session.flush()
    elif is_admin and not owner.is_admin:
        owner.is_admin = True
    return owner


def create_api_key(session: Session, owner: Owner, name: str) -> tuple[ApiKey, str]:
    """Returns the row and the plaintext token; the token is never stored or shown again."""
    check_name("key name", name)
    token = generate_token()
    key = ApiKey(owner_id=owner.id, name=name, prefix=token[: len(KEY_PREFIX) + 6], digest=digest(token))
    session.add(key)
    session.flush()
    return key, token


class OwnerRef(Protocol):
    """What ownership checks read of an owner: an :class:`Owner` row or the :class:`Principal` a
    request authenticated as."""

    @property
    def id(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for, as authentication found it: the owner's columns (not an ORM object:
    loading two entities was a third of authentication's CPU) and the key it presented."""

    id: str
    name: str
    is_admin: bool
    key_id: str | None = None  # None: the implicit owner of a service without authentication
    key_last_used_at: datetime | None = None

    @classmethod
    def of(cls, owner: Owner) -> Principal:
        return cls(id=owner.id, name=owner.name, is_admin=owner.is_admin)

    def key_use_to_record(self, now: datetime) -> bool:
        """Whether this request's use of the key is worth recording: throttled to once a minute, as
        writing on every request would make every GET a write."""
        if self.key_id is None:
            return False
        return self.key_last_used_at is None or now - self.key_last_used_at > LAST_USED_RESOLUTION


@cache
def _live_key_and_owner() -> Select[str, str, bool, str, str, datetime | None]:
    """The unrevoked key with a given digest and its owner, in one query (a second round trip for the
    owner was the largest single cost of a request in the API's profile under load).

    Built once: every authenticated request runs it, and building the statement and computing its
    cache key each time cost more than a third of the query's CPU (0.12 of 0.33 ms on PostgreSQL).
    """
    return (
        select(Owner.id, Owner.name, Owner.is_admin, ApiKey.id, ApiKey.digest, ApiKey.last_used_at)
        .join(Owner, Owner.id == ApiKey.owner_id)
        .where(ApiKey.digest == bindparam("digest"), ApiKey.revoked_at.is_(None))
    )


def authenticate(db: Session | Connection, token: str | None) -> Principal:
    """The owner of the unrevoked key ``token``; reads only (the key's use is recorded with
    :func:`record_key_use`, after the request's own work)."""
    wanted = _wanted_digest(token)
    row = connection_of(db).execute(_live_key_and_owner(), {"digest": wanted}).first()
    return _principal(row, wanted)


def _wanted_digest(token: str | None) -> str:
    if not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return digest(token)


def _principal(row: Sequence[Any] | None, wanted: str) -> Principal:
    # compare_digest keeps the final check constant-time even though the lookup is by digest.
    if row is None or not hmac.compare_digest(row[4], wanted):
        raise Unauthorized("invalid or revoked API key")
    owner_id, name, is_admin, key_id, _, last_used_at = row[:PRINCIPAL_WIDTH]
    return Principal(owner_id, name, is_admin, key_id, last_used_at)


# -- a read that checks its key in its own statement ----------------------------------------------------
PRINCIPAL_WIDTH = 6  # the columns of _live_key_and_owner
AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """A request's key, not yet checked: a hot read (:func:`read_as`) checks it in its own statement."""

    token: str | None


Reader = TypeVar("Reader", bound=OwnerRef)


def read_as(
    connection: Connection,
    who: Reader | KeyCheck,
    query: AnySelect,
    params: dict[str, Any],
    *,
    newest_first: tuple[str, ...] = (),
) -> tuple[Reader | Principal, list[dict[str, Any]]]:
    """The rows of ``query`` (whose first column is never NULL) read by ``who`` (an owner already known,
    or a key to check), as dicts by column name, and who that is.

    For a :class:`KeyCheck`, the key is checked in the same statement as the query: its principal is
    joined in front of every row, so an authenticated read is one round trip to the database, not two
    (the key's own query cost a status read a quarter of its CPU). ``query`` may name the key's owner
    with :func:`key_owner_id`. A key that is missing, unknown or revoked raises the same 401 as
    :func:`authenticate`, before anything about the rows. ``newest_first`` names columns of ``query``
    whose descending order the rows keep (the join does not keep the query's own order). ``query`` is
    built once (cached, with bound parameters): its joined form is cached by the query's identity.
    """
    names = _column_names(query)
    if not isinstance(who, KeyCheck):
        return who, [dict(zip(names, row, strict=True)) for row in connection.execute(query, params)]
    wanted = _wanted_digest(who.token)
    rows = connection.execute(_keyed(query, newest_first), {**params, "digest": wanted}).all()
    principal = _principal(rows[0] if rows else None, wanted)
    # A key whose query found nothing comes back as one row of NULL query columns.
    found = [dict(zip(names, row[PRINCIPAL_WIDTH:], strict=True)) for row in rows]
    return principal, [row for row in found if row[names[0]] is not None]


@cache
def _column_names(query: AnySelect) -> tuple[str, ...]:
    return tuple(query.selected_columns.keys())


@cache
def _keyed(query: AnySelect, newest_first: tuple[str, ...]) -> Select[Any]:
    """``query`` with the live key's principal in front of each row (one row of NULL query columns when
    it has none; no row for a key that is not live). Built once per query: the hot reads' queries are
    built once too."""
    principal = _live_key_and_owner().subquery("principal")
    rows = query.subquery("keyed")
    keyed = select(*principal.c, *rows.c).select_from(principal.outerjoin(rows, true()))
    return keyed.order_by(*(rows.c[name].desc() for name in newest_first))


@cache
def key_owner_id() -> ScalarSelect[str]:
    """The owner of the live key ``:digest``, for a :func:`read_as` query scoped to the caller's own rows
    (NULL for a key that is not live: such a query finds nothing, and the read is a 401 anyway)."""
    return (
        select(ApiKey.owner_id)
        .where(ApiKey.digest == bindparam("digest"), ApiKey.revoked_at.is_(None))
        .scalar_subquery()
    )


def record_key_use(connection: Connection, key_id: str, when: datetime) -> None:
    """Stamp the key's ``last_used_at`` with ``when``, unless another request already stamped it
    later (requests finish out of order)."""
    connection.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when))
        .values(last_used_at=when)
    )


@dataclass(frozen=True)
class KeyListing:
    """What may be shown about a key: never the key itself or its digest."""

    id: str
    prefix: str
    name: str
    owner: str
    admin: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _listing(key: ApiKey, owner: Owner) -> KeyListing:
    return KeyListing(
        id=key.id,
        prefix=key.prefix,
        name=key.name,
        owner=owner.name,
        admin=owner.is_admin,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def list_api_keys(session: Session) -> list[KeyListing]:
    """Every key, oldest first, revoked ones included."""
    rows = session.execute(
        select(ApiKey, Owner).join(Owner, Owner.id == ApiKey.owner_id).order_by(ApiKey.created_at, ApiKey.id)
    ).all()
    return [_listing(key, owner) for key, owner in rows]


def revoke_api_key(session: Session, key_id: str) -> tuple[KeyListing, bool]:
    """Revoke the key that ``key_id`` names; it stops authenticating at once. ``key_id`` is the key's
    id, its unique prefix as listings show it (with or without the trailing ``...``), or the key itself
    (someone who holds a leaked key can revoke it without looking it up). Returns the key and whether
    this call revoked it (False: it already was)."""
    given = key_id.strip()
    wanted = given.removesuffix("...").removesuffix("\u2026")
    matches = session.execute(
        select(ApiKey, Owner)
        .join(Owner, Owner.id == ApiKey.owner_id)
        .where((ApiKey.id == wanted) | (ApiKey.prefix == wanted) | (ApiKey.digest == digest(given)))
    ).all()
    if not matches:
        raise NotFound(f"no API key with id or prefix {key_id!r}")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} keys have the prefix {key_id!r}; give the key's id")
    key, owner = matches[0]
    revoked_now = key.revoked_at is None
    if revoked_now:
        key.revoked_at = utcnow()
        session.flush()
    return _listing(key, owner), revoked_now
