"""``python -m lbc_core.kernels build``: build the native N:M kernel now (``make install`` runs it) and say
which path calls will take; ``status`` only reports. Exits 1 when the native kernel is unavailable."""

from __future__ import annotations

import argparse
import sys

from lbc_core.kernels.build import KernelBuildError, build
from lbc_core.kernels.native import native_status
from lbc_core.kernels.settings import KernelSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lbc_core.kernels", description=__doc__)
    parser.add_argument("command", choices=("build", "status"))
    parser.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    args = parser.parse_args(argv)
    settings = KernelSettings.from_env()
    if args.command == "build":
        try:
            print(f"built {build(settings, force=args.force)}")
        except KernelBuildError as exc:
            print(f"N:M CPU kernel not built: {exc}", file=sys.stderr)
            print("the product still works: N:M layers run through the pure-PyTorch path", file=sys.stderr)
            return 1
    status = native_status(settings)
    print(status.describe())
    return 0 if status.available else 1


if __name__ == "__main__":
    sys.exit(main())
