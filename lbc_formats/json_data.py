"""JSON from untrusted bytes, bounded in size and nesting depth, NaN and Infinity refused.

``json.loads`` recurses once per nesting level: a deep document raises ``RecursionError`` inside the decoder,
which is caught and reported with the document's real depth (measured without recursion). A document the
decoder accepts is then measured on the decoded values (an explicit stack, no recursion), which costs far
less than scanning the text for strings first: a tokenizer.json holds hundreds of thousands of them.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
from typing import Any

from lbc_formats.errors import FormatError

# A JSON string: quotes around anything but quotes and backslashes, or escaped characters (the unrolled
# form: linear time, no backtracking). Brackets inside strings nest nothing.
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket becomes 2 and a closing one 0: after i brackets the running sum minus i is the depth.
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
# json.loads builds exactly these (never subclasses), so a type lookup is enough.
_CONTAINERS = frozenset({list, dict})


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in the text ``data`` (brackets inside strings do not count)."""
    steps = _STRING_RE.sub(b'""', data).translate(None, _NOT_BRACKETS).translate(_STEPS)
    return max(map(operator.sub, itertools.accumulate(steps), itertools.count(1)), default=0)


def value_depth(value: Any) -> int:
    """The deepest nesting of lists and dicts in a decoded JSON value (a scalar is 0).

    Level by level, with the containers of each level picked out by C-level iterators: a tokenizer's
    merge list is a million small lists, and a Python call per element would cost seconds.
    """
    depth = 0
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below.extend(itertools.compress(children, map(_CONTAINERS.__contains__, map(type, children))))
        level = below
    return depth


def load_json_data(data: bytes, *, what: str, max_bytes: int, max_depth: int) -> Any:
    """Decode ``data`` within the size and depth bounds; :class:`FormatError` naming ``what`` otherwise."""
    if len(data) > max_bytes:
        raise FormatError(f"{what} is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant(what))
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        depth = nesting_depth(data)
    else:
        depth = value_depth(value)
    if depth > max_depth:
        raise FormatError(f"{what} nests {depth} levels deep, over the limit of {max_depth}")
    return value


def _refuse_constant(what: str) -> Any:
    def refuse(name: str) -> float:
        raise FormatError(f"{what} holds {name}, which is not valid JSON")

    return refuse
