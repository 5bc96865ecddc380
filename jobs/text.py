"""What text users send may hold: the rules for every stored string and for names, in one place.

PostgreSQL text cannot hold a NUL character while SQLite stores it, so a NUL is refused in every string at
the edge (spec, path and query parameters, form fields), the same for both databases, instead of a 500 on
one of them. Names are shown in terminals (``lbc jobs``) and in the dashboard: control characters (an ANSI
escape re-titles or clears the terminal of whoever lists the jobs) and bidirectional formatting characters
(which make a name read differently from what it is) are refused in them. The CLI escapes the same
characters in whatever a server sends (``escape_unsafe``), for data stored before these rules or a hostile
server. Standard library only: the CLI imports it without the service's dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

NUL = "\x00"
# C0 and C1 control characters (Unicode category Cc), the bidirectional embeddings, overrides, isolates and
# marks (U+061C, U+200E/F, U+202A-E, U+2066-9), and the line and paragraph separators a terminal may honour.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored (it holds a NUL), or ``None``."""
    index = value.find(NUL)
    if index < 0:
        return None
    return f"must not contain a NUL character (\\x00 at position {index})"


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name (a control or bidirectional character), or ``None``."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    return (
        "must not contain control or bidirectional formatting characters "
        f"({_escape(found)} at position {found.start()})"
    )


def escape_unsafe(text: str) -> str:
    """``text`` with every character ``name_problem`` refuses written as a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def nul_problems(data: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(location, problem)`` of every string holding a NUL in parsed JSON data, mapping keys included.

    Walked with a stack, not recursion: the depth of user data is not ours to choose.
    """
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                yield loc, problem
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    yield (*loc, key), f"the key {problem}"
                else:
                    stack.append(((*loc, key), item))
        elif isinstance(value, list | tuple):
            stack.extend(((*loc, index), item) for index, item in reversed(list(enumerate(value))))


__all__ = ["NUL", "escape_unsafe", "name_problem", "nul_problems", "text_problem"]
