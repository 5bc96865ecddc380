"""``lbc spec``: print the job spec's JSON schema, or validate spec files without running them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    spec = commands.add_parser("spec", help="job spec tools (schema, check)", description="Job spec tools.")
    actions = spec.add_subparsers(dest="spec_command", metavar="ACTION", required=True)
    schema = actions.add_parser("schema", help="print the JSON schema of a job spec")
    schema.set_defaults(handler=schema_command)
    check = actions.add_parser(
        "check",
        help="validate job spec files (exit 2 when one is invalid)",
        description="Validate job spec files.",
    )
    check.add_argument("specs", nargs="+", metavar="SPEC", help="YAML or JSON job spec file")
    check.add_argument(
        "--print", action="store_true", help="print each valid spec with every default filled in"
    )
    check.set_defaults(handler=check_command)


def schema_command(args: argparse.Namespace) -> int:
    from jobs.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def check_command(args: argparse.Namespace) -> int:
    from jobs.spec import SpecError, dump_spec, load_spec

    status = 0
    for path in args.specs:
        try:
            spec = load_spec(Path(path))
        except SpecError as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        print(f"{path}: ok")
        if args.print:
            print(json.dumps(dump_spec(spec), indent=2))
    return status
