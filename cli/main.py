"""Entry point of ``lbc``: builds the argument parser and dispatches to a sub-command module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog is rendered only when help is shown (it may need to import the spec)."""

    def __init__(self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self._epilog_factory is not None and self.epilog is None:
            self.epilog = self._epilog_factory()
        return super().format_help()


DISTRIBUTION = "lbc-sparsity"


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), the one source of the number."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from cli import client_cmds, keys, service, spec_cmd, train

    parser = Parser(
        prog="lbc",
        description="Learn N:M structured sparsity (LBC, SR-STE, ASP) for PyTorch models.",
        epilog=client_cmds.EXIT_CODES_HELP,
        formatter_class=client_cmds.HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lbc {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train.register(commands)
    spec_cmd.register(commands)
    service.register(commands)
    keys.register(commands)
    client_cmds.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
        # Flush here, not at interpreter exit: output still buffered when the reader has gone would
        # raise there, outside this handler ("Exception ignored ... BrokenPipeError", exit 120).
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:  # Ctrl-C outside a run's own handling (e.g. while importing torch)
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`lbc spec schema | head`): stop quietly like other Unix tools. Python
        # flushes stdout again at exit, so point it at /dev/null first or that flush raises once more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
