"""JSON from untrusted bytes (request bodies, uploads, files of a model directory), bounded in size and
nesting depth, UTF-8 only, NaN and Infinity refused: the one bounded JSON reader of the engine and the service.

``json.loads`` recurses once per nesting level, so a deep document raises ``RecursionError`` inside the
decoder, long before it has read much of the text; that is caught and reported with the document's real depth,
measured on the text without recursion and in linear time (docs/performance.md). A document the
decoder accepts is measured on the decoded values instead (an explicit stack, no recursion), which costs far
less than scanning the text for strings first: a tokenizer.json holds hundreds of thousands of them, and a
job spec with a few dozen brackets is decoded on every submit.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from lbc_formats.errors import FormatError

__all__ = ["load_json_data", "nesting_depth", "value_depth"]

# A JSON string: quotes around anything but quotes and backslashes, or escaped characters (the unrolled
# form: linear time, no backtracking). Brackets inside strings nest nothing.
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket becomes 1 and a closing one -1 (0xff read as a signed byte): the running sum is the depth.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_OPEN = 1
# The brackets are summed a chunk at a time, so a chunk that cannot change the answer is skipped by counting.
_CHUNK = 1 << 16
# json.loads builds exactly these (never subclasses), so a type lookup is enough.
_CONTAINERS = frozenset({list, dict})


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in the text ``data`` (brackets inside strings do not count).

    Malformed text still gets a number (an unterminated string's brackets are counted, a closing bracket
    with nothing open counts as 0), which is enough for a bound. Linear time; a chunk of opening brackets
    only (a hostile document's usual shape), or one whose openers cannot pass the deepest level already
    seen, is counted without summing it bracket by bracket.
    """
    steps = _STRING_RE.sub(b'""', data).translate(None, _NOT_BRACKETS).translate(_STEPS)
    depth = deepest = 0
    for start in range(0, len(steps), _CHUNK):
        chunk = steps[start : start + _CHUNK]
        opened = chunk.count(_OPEN)
        if opened == len(chunk):
            deepest = max(deepest, depth + opened)
        elif depth + opened > deepest:
            summed = max(itertools.accumulate(memoryview(chunk).cast("b"), initial=depth))
            deepest = max(deepest, summed)
        depth += 2 * opened - len(chunk)
    return deepest


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
    """Decode ``data`` within the size and depth bounds; :class:`FormatError` naming ``what`` otherwise.

    ``what`` starts each message: ``"tokenizer.json"``, ``"the body"``.
    """
    if len(data) > max_bytes:
        raise FormatError(f"{what} is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant(what))
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"{what} is not valid JSON text (not UTF-8: {exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what} is not valid JSON text ({exc})") from None
    except RecursionError:
        depth = nesting_depth(data)
        if depth > max_depth:
            raise FormatError(f"{what} nests {depth} levels deep, over the limit of {max_depth}") from None
        # Only when the caller's own stack is already deep, or the bound is near the recursion limit.
        raise FormatError(f"{what} nests {depth} levels deep, more than the decoder can follow") from None
    depth = value_depth(value)
    if depth > max_depth:
        raise FormatError(f"{what} nests {depth} levels deep, over the limit of {max_depth}")
    return value


def _refuse_constant(what: str) -> Any:
    def refuse(name: str) -> float:
        raise FormatError(f"{what} holds {name}, which is not valid JSON")

    return refuse
