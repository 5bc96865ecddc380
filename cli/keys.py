"""``lbc keys create``: make an API key from the server's side (the first admin key of a deployment)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys", description="Manage API keys in the database.")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
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


def create_key(args: argparse.Namespace) -> int:
    from jobs import auth
    from jobs.db import make_engine, make_session_factory, transaction
    from jobs.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            owner = auth.get_or_create_owner(session, args.owner or args.name, is_admin=args.admin)
            key, token = auth.create_api_key(session, owner, args.name)
            owner_name, is_admin, prefix = owner.name, owner.is_admin, key.prefix
    finally:
        engine.dispose()
    role = "admin" if is_admin else "user"
    print(
        f"created key {prefix}... for owner {owner_name!r} ({role}); it is not shown again:", file=sys.stderr
    )
    print(token)
    return 0
