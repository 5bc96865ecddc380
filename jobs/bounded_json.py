"""JSON from untrusted bytes, with its size and nesting depth checked before it is decoded.

``json.loads`` recurses once per nesting level: 100,000 ``[`` raise ``RecursionError`` deep inside the
decoder (a 500 in the API), and a few MB of ``[`` would exhaust the stack of a thread with a higher
recursion limit. The depth is therefore measured first, without recursion, in C-speed passes (strings
are blanked by one regular expression, then brackets are counted with numpy a chunk at a time), and
only a document within both bounds is handed to ``json.loads``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

# A JSON string: quotes around anything but quotes and backslashes, or escaped characters (the unrolled
# form, linear time without backtracking). Brackets inside strings do not nest anything.
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SCAN_CHUNK = 1 << 20
_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS = np.frombuffer(b"]}", dtype=np.uint8)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Up to this many brackets a plain loop is cheaper than numpy's fixed cost per call (a job spec has a
# few dozen: numpy took 0.25 ms of a submit's CPU); above it, numpy keeps a hostile document linear.
_LOOP_BRACKETS = 4096


class JsonRejected(ValueError):
    """The document is larger or nests deeper than allowed, or is not JSON; the message names which."""


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets inside strings do not count).

    Malformed text still gets a number (an unterminated string's brackets are counted), which is
    enough for a bound: the decoder then reports what is wrong with it.
    """
    plain = _STRING_RE.sub(b'""', data).translate(None, _NOT_BRACKETS)  # only the brackets are left
    depth = deepest = 0
    if len(plain) <= _LOOP_BRACKETS:
        for bracket in plain:
            depth += 1 if bracket in (0x5B, 0x7B) else -1  # [ and { open, ] and } close
            deepest = max(deepest, depth)
        return deepest
    for start in range(0, len(plain), _SCAN_CHUNK):
        chunk = np.frombuffer(plain, dtype=np.uint8, count=min(_SCAN_CHUNK, len(plain) - start), offset=start)
        steps = np.isin(chunk, _OPENERS).astype(np.int32) - np.isin(chunk, _CLOSERS).astype(np.int32)
        steps = steps[steps != 0]
        if steps.size == 0:
            continue
        running = np.cumsum(steps, dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


def load_json(data: bytes | str, *, max_bytes: int, max_depth: int, what: str = "JSON document") -> Any:
    """Decode ``data`` after checking its size and nesting depth; raises :class:`JsonRejected`."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JsonRejected(f"{what} is {len(raw)} bytes, over the limit of {max_bytes}")
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JsonRejected(f"{what} nests {depth} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonRejected(f"{what} is not valid JSON text ({exc})") from exc
