"""The one spec reader: the client (``read_spec``, what ``lbc submit`` uses) and the service
(``jobs.spec.load_spec``, what ``lbc spec check`` and ``lbc train`` use) read every file alike, and refuse
hostile documents at once, before anything is built from them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from client import SpecFileError, read_spec
from client.spec_text import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_SPEC_NODES, load_spec_text
from jobs.spec import SpecError, load_spec

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, from a 600-byte file.
BILLION_LAUGHS = '\nlol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"lol{i}: &lol{i} [{','.join([f'*lol{i - 1}'] * 9)}]\n" for i in range(1, 9)
)
# The same, hidden inside a field the spec does have (the check must not depend on unknown keys).
LAUGHS_IN_A_FIELD = (
    "model:\n  architecture: mlp\n  args:\n    hidden_sizes: &big [&a [1,1,1,1,1,1,1,1,1]]\n"
    + "".join(f"    x{i}: &l{i} [{','.join([f'*l{i - 1}' if i > 1 else '*a'] * 9)}]\n" for i in range(1, 8))
    + "dataset: {source: digits}\n"
)

HOSTILE_SPECS = [
    pytest.param("laughs.yaml", BILLION_LAUGHS, "expands to more than", id="billion-laughs"),
    pytest.param("field.yaml", LAUGHS_IN_A_FIELD, "expands to more than", id="laughs-in-a-field"),
    pytest.param("deep.yaml", "a: " + "[" * 100_000, f"deeper than {MAX_SPEC_DEPTH}", id="deep-yaml-flow"),
    pytest.param(
        "deep-block.yaml",
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_SPEC_DEPTH + 2)) + "  " * (MAX_SPEC_DEPTH + 2) + "v",
        f"deeper than {MAX_SPEC_DEPTH}",
        id="deep-yaml-block",
    ),
    pytest.param("deep.json", "[" * 100_000 + "]" * 100_000, f"deeper than {MAX_SPEC_DEPTH}", id="deep-json"),
    pytest.param("wide.yaml", "x: [" + "1," * (MAX_SPEC_NODES + 1) + "1]", "expands to more than", id="wide"),
    pytest.param("big.yaml", "x: " + "a" * (MAX_SPEC_BYTES + 1), "larger than", id="too-large"),
    pytest.param("loop.yaml", "a: &a [1, *a]\n", "contains it", id="recursive-alias"),
    pytest.param("twice.yaml", "model: {}\nmodel: {}\n", "duplicate key 'model'", id="duplicate-key"),
]


@pytest.mark.parametrize(("name", "text", "fragment"), HOSTILE_SPECS)
def test_client_and_service_refuse_the_same_hostile_spec_at_once(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(SpecFileError, match=fragment) as client_error:
        read_spec(path)
    with pytest.raises(SpecError, match=fragment) as service_error:
        load_spec(path)
    assert time.monotonic() - started < 5
    # One reader, one message: the service's problem is the client's, without the file name.
    assert str(client_error.value) == f"{path}: {service_error.value.problems[0].message}"


def test_a_real_spec_with_anchors_and_exponents_reads_alike_on_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "defaults: &defaults {epochs: 2, lr: 1e-3}\n"
        "model: {architecture: mlp}\n"
        "dataset: {source: digits}\n"
        "train: {<<: *defaults, batch_size: 32}\n"
    )
    data = read_spec(path)
    assert data["train"] == {"epochs": 2, "lr": 0.001, "batch_size": 32}  # 1e-3 is a number, not a string
    data.pop("defaults")
    path.write_text(json.dumps(data))
    assert load_spec(path).train.lr == 0.001 and read_spec(path) == data


def test_the_limits_leave_room_for_any_real_spec() -> None:
    text = "model:\n  architecture: mlp\n  args: {hidden_sizes: [" + ", ".join(["64"] * 1000) + "]}\n"
    assert len(load_spec_text(text)["model"]["args"]["hidden_sizes"]) == 1000
    levels = MAX_SPEC_DEPTH - 1  # the top-level mapping is one level
    value = load_spec_text("a: " + "[" * levels + "]" * levels)["a"]
    for _ in range(levels - 1):
        (value,) = value
    assert value == []
