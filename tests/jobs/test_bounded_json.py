"""The nesting depth that bounds a JSON document before it is decoded: the same on both of its paths
(a loop for the few brackets of a usual document, numpy for many)."""

from __future__ import annotations

import random

import pytest

from jobs import bounded_json
from jobs.bounded_json import nesting_depth

CASES = [
    (b"{}", 1),
    (b'{"a": [1, {"b": "[[[["}]}', 3),  # brackets inside strings do not nest anything
    (b'{"a": "\\"[["}', 1),  # nor do they after an escaped quote
    (b"[[]][[[]]]", 3),
    (b"]]][[", 0),
    (b"[" * 5000 + b"]" * 5000, 5000),  # above the loop's limit: the numpy path
    (b"[" * 100_000, 100_000),
]


@pytest.mark.parametrize(("data", "depth"), CASES)
def test_the_depth_of_known_documents(data: bytes, depth: int) -> None:
    assert nesting_depth(data) == depth


def test_the_loop_and_numpy_agree_on_random_text(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(16)
    documents = [bytes(rng.choice(b'[]{}"\\ab,:1') for _ in range(rng.randint(0, 80))) for _ in range(3000)]
    looped = [nesting_depth(doc) for doc in documents]
    monkeypatch.setattr(bounded_json, "_LOOP_BRACKETS", -1)  # every document through numpy
    assert [nesting_depth(doc) for doc in documents] == looped
