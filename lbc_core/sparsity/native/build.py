"""Build the fused LBC step library: ``python -m lbc_core.sparsity.native.build [--optional]``.

``make install`` runs it. With ``--optional`` a missing compiler or a failed build is reported and the
command still succeeds: LBC then trains with its plain PyTorch path.
"""

from __future__ import annotations

import argparse
import sys

from lbc_core.sparsity.native.library import NativeBuildError, build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--optional", action="store_true", help="exit 0 when the build is impossible")
    parser.add_argument("--force", action="store_true", help="rebuild even when an up-to-date build exists")
    options = parser.parse_args(argv)
    try:
        path = build(force=options.force)
    except NativeBuildError as error:
        print(f"fused LBC step not built: {error}", file=sys.stderr)
        print("LBC will use its plain PyTorch path.", file=sys.stderr)
        return 0 if options.optional else 1
    print(f"fused LBC step built: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
