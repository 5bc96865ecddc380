"""The one way the client commands print: text from a server is shown, never obeyed by the terminal.

Job names, error messages and log lines come from the service (or whoever answers at its URL). A name
holding an ANSI escape would re-title or clear the terminal of whoever runs ``lbc jobs``, a
bidirectional override would make it read differently from what it is: every such character is written
as a visible escape (``\\x1b``, ``\\u202e``; the set is ``jobs.text``'s, the one the API refuses in
names). Line breaks are kept, so multi-line output stays readable.
"""

from __future__ import annotations

import sys
from typing import TextIO

from jobs.text import escape_unsafe


def shown(text: object) -> str:
    """``text`` with control and bidirectional characters escaped, line breaks kept."""
    return "\n".join(escape_unsafe(line) for line in str(text).split("\n"))


def say(text: object = "", *, file: TextIO | None = None, flush: bool = False) -> None:
    """``print`` for everything a client command writes (stdout unless ``file``)."""
    print(shown(text), file=file or sys.stdout, flush=flush)


__all__ = ["say", "shown"]
