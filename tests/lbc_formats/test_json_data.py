"""The bounded JSON reader of uploads, model directories and request bodies: size and depth are checked
whatever the document, hostile ones included, and every refusal names the document and the problem."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lbc_formats import json_data
from lbc_formats.errors import FormatError
from lbc_formats.json_data import load_json_data, nesting_depth, value_depth

CASES = [
    (b"{}", 1),
    (b'{"a": [1, {"b": "[[[["}]}', 3),  # brackets inside strings do not nest anything
    (b'{"a": "\\"[["}', 1),  # nor do they after an escaped quote
    (b"[[]][[[]]]", 3),
    (b"]]][[", 0),  # malformed: closing brackets with nothing open count as nothing
    (b"", 0),
    (b"[" * 5000 + b"]" * 5000, 5000),
    (b"[" * 100_000, 100_000),
]


@pytest.mark.parametrize(("data", "depth"), CASES)
def test_the_depth_of_known_texts(data: bytes, depth: int) -> None:
    assert nesting_depth(data) == depth


def _deepest_by_hand(data: bytes) -> int:
    depth = deepest = 0
    for bracket in data:
        depth += {ord("["): 1, ord("]"): -1}.get(bracket, 0)
        deepest = max(deepest, depth)
    return deepest


def test_every_way_through_the_chunks_gives_the_depth_bracket_by_bracket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks of openers only, chunks that cannot go deeper, and chunks summed, across chunk borders."""
    monkeypatch.setattr(json_data, "_CHUNK", 4)
    rng = random.Random(7)
    for _ in range(3000):
        run = rng.choice([b"[", b"]", b"[]", b"[[]", b"][", b"a"])
        data = b"".join(rng.choice([run, b"[", b"]", b"x"]) for _ in range(rng.randint(0, 60)))
        assert nesting_depth(data) == _deepest_by_hand(data), data


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        return rng.choice([1, "[{", '"]', None, True, 2.5, "", "\\"])
    children = [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.65:
        return children
    return {f"k{i}{rng.choice('[]{}')}": child for i, child in enumerate(children)}


def test_the_text_and_the_decoded_value_give_the_same_depth() -> None:
    """The two measures: on the text (a document too deep to decode) and on the decoded value (the rest)."""
    rng = random.Random(16)
    for _ in range(3000):
        value = _random_value(rng, rng.randint(0, 8))
        text = json.dumps(value).encode()
        assert value_depth(value) == nesting_depth(text), text


def test_a_document_within_the_bounds_is_decoded() -> None:
    spec = {"task": "image-classification", "train": {"epochs": 2, "betas": [0.9, 0.99]}, "tags": ["a"]}
    data = json.dumps(spec).encode()
    assert load_json_data(data, what="the body", max_bytes=len(data), max_depth=3) == spec


@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (b"[1, 2]", (5, 8), "the body is 6 bytes, over the limit of 5"),
        (b'{"a": [[1]]}', (64, 2), "the body nests 3 levels deep, over the limit of 2"),
        (
            b"[" * 100_000 + b"]" * 100_000,
            (1 << 20, 64),
            "the body nests 100000 levels deep, over the limit of 64",
        ),
        (b"[" * 50_000_000, (1 << 30, 64), "the body nests 50000000 levels deep, over the limit of 64"),
        (
            b"{not json",
            (64, 8),
            "the body is not valid JSON text (Expecting property name enclosed in double",
        ),
        (b"\xff\xfe{}", (64, 8), "the body is not valid JSON text (not UTF-8: invalid start byte at byte 0)"),
        (b'{"lr": NaN}', (64, 8), "the body holds NaN, which is not valid JSON"),
        (b"[-Infinity]", (64, 8), "the body holds -Infinity, which is not valid JSON"),
    ],
    ids=["size", "depth", "hostile-depth", "50-MB-of-brackets", "syntax", "not-utf8", "nan", "infinity"],
)
def test_a_document_out_of_bounds_is_refused_naming_why(
    data: bytes, limits: tuple[int, int], message: str
) -> None:
    max_bytes, max_depth = limits
    with pytest.raises(FormatError) as caught:
        load_json_data(data, what="the body", max_bytes=max_bytes, max_depth=max_depth)
    assert str(caught.value).startswith(message)


def test_a_document_within_the_depth_bound_but_past_the_decoder_is_refused_naming_its_depth() -> None:
    """A bound near the recursion limit: the decoder gives up first, and the message says so."""
    data = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(FormatError, match="nests 100000 levels deep, more than the decoder can follow"):
        load_json_data(data, what="x.json", max_bytes=len(data), max_depth=200_000)
