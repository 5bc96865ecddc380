"""``lbc keys create|list|revoke``: manage API keys from the server's side, directly in the database.

They need the service's database: the embedded one under ``--home`` (default ``LBC_HOME``, then
``./.lbc``, where ``lbc serve`` keeps it), or ``LBC_DATABASE_URL``. Where there is none, they say so in
one line and exit 2 instead of creating an empty database or printing a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from jobs.auth import KeyListing
    from jobs.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 4

HOME_HELP = (
    "the service's home directory (default: LBC_HOME, then ./.lbc, as for `lbc serve`); "
    "ignored when LBC_DATABASE_URL names the database"
)


class NoDatabase(Exception):
    """There is no service database where the settings point (no home, or never migrated)."""


def register(commands: Any) -> None:
    keys = commands.add_parser(
        "keys",
        help="manage API keys (create, list, revoke)",
        description="Manage API keys in the service's database: the embedded one under --home "
        "(default LBC_HOME, then ./.lbc), or the one LBC_DATABASE_URL names.",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", metavar="DIR", help=HOME_HELP)

    create = actions.add_parser(
        "create",
        parents=[common],
        help="create an API key and print it (once)",
        description=(
            "Create an API key for OWNER (created if new) and print it on stdout. Only its digest is stored: "
            "the key cannot be shown again."
        ),
    )
    create.add_argument("--name", required=True, help="a label for the key (shown in listings)")
    create.add_argument("--owner", help="owner (account) name; default: the key's name")
    create.add_argument("--admin", action="store_true", help="the owner may see every owner's jobs")
    create.set_defaults(handler=create_key)

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list API keys (never the keys themselves)",
        description="List every API key: id, prefix, name, owner, admin, created, last used and revoked "
        "times. Neither a key nor its digest is shown.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=list_keys)

    revoke = actions.add_parser(
        "revoke",
        parents=[common],
        help="revoke an API key",
        description="Revoke an API key by its id, its prefix (as `lbc keys list` shows them, with or "
        "without the trailing dots) or the key itself: every "
        "request with it gets 401 from then on. Revoking a revoked key changes nothing.",
    )
    revoke.add_argument(
        "key_id",
        metavar="ID",
        help="the key's id, its prefix as listed (lbc_..., the dots optional) or the key itself",
    )
    revoke.set_defaults(handler=revoke_key)


def _settings(args: argparse.Namespace) -> Settings:
    from jobs.settings import Settings, get_settings

    return Settings(home=Path(args.home)) if args.home else get_settings()


def _check_database(settings: Settings) -> None:
    """Raise NoDatabase unless the settings point at a migrated database (creating nothing)."""
    from jobs.migrate import current_revision

    if settings.embedded and not settings.home.is_dir():
        raise NoDatabase(
            f"no service home at {settings.home}: pass --home DIR (or set LBC_HOME) to the directory "
            "`lbc serve` uses"
        )
    if current_revision(settings.database_url) is None:
        where = f"in {settings.home}" if settings.embedded else "at LBC_DATABASE_URL"
        raise NoDatabase(f"no service database {where}: start `lbc serve` there once, or run `lbc migrate`")


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    from jobs.db import make_engine, make_session_factory, transaction

    engine = make_engine(settings.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _run(args: argparse.Namespace, body: Callable[[Session], int]) -> int:
    """Open the database ``args`` point at and run ``body``; every failure becomes one line and a code."""
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.db import is_database_unavailable
    from jobs.errors import InvalidInput, NotFound, ServiceError

    prog = f"lbc keys {args.keys_command}"
    try:
        settings = _settings(args)
        _check_database(settings)
        with _session(settings) as session:
            return body(session)
    except NoDatabase as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except InvalidInput as exc:  # a bad name: a usage error, like every other validation error
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        what = "cannot reach the database" if is_database_unavailable(exc) else "database error"
        cause = getattr(exc, "orig", None) or exc  # the driver's error, for a DBAPIError
        print(f"{prog}: error: {what}: {type(cause).__name__}", file=sys.stderr)
        return EXIT_FAILED


def create_key(args: argparse.Namespace) -> int:
    from jobs import auth

    def body(session: Session) -> int:
        auth.check_name("key name", args.name)  # first: the owner's name defaults to it
        owner_name = args.name if args.owner is None else args.owner
        owner = auth.get_or_create_owner(session, owner_name, is_admin=args.admin)
        key, token = auth.create_api_key(session, owner, args.name)
        role = "admin" if owner.is_admin else "user"
        # Printed after the commit (below), so a key is never shown that was not stored.
        printed.append((f"created key {key.prefix}... for owner {owner.name!r} ({role}); ", token))
        return EXIT_OK

    printed: list[tuple[str, str]] = []
    code = _run(args, body)
    if code == EXIT_OK:  # committed
        for message, token in printed:
            print(message + "it is not shown again:", file=sys.stderr)
            print(token)
    return code


def list_keys(args: argparse.Namespace) -> int:
    from jobs import auth

    found: list[KeyListing] = []

    def body(session: Session) -> int:
        found.extend(auth.list_api_keys(session))
        return EXIT_OK

    code = _run(args, body)
    if code != EXIT_OK:
        return code
    if args.json:
        print(json.dumps([asdict(key) for key in found], indent=2, default=_iso))
    elif not found:
        print("no API keys", file=sys.stderr)
    else:
        print(format_keys_table(found))
    return EXIT_OK


def revoke_key(args: argparse.Namespace) -> int:
    from jobs import auth

    done: list[tuple[KeyListing, bool]] = []

    def body(session: Session) -> int:
        done.append(auth.revoke_api_key(session, args.key_id))
        return EXIT_OK

    code = _run(args, body)
    if code == EXIT_OK:
        key, revoked_now = done[0]
        state = "revoked" if revoked_now else "was already revoked"
        print(f"key {key.id} ({key.prefix}..., {key.name!r} of {key.owner!r}) {state}")
    return code


def format_keys_table(keys: list[KeyListing]) -> str:
    header = ("ID", "PREFIX", "NAME", "OWNER", "ADMIN", "CREATED", "LAST USED", "REVOKED")
    rows = [header] + [
        (
            key.id,
            key.prefix + "...",
            key.name,
            key.owner,
            "yes" if key.admin else "no",
            _shown(key.created_at),
            _shown(key.last_used_at),
            _shown(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _shown(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
