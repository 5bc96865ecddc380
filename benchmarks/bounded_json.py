"""CPU time of the bounded JSON reader (lbc_formats.json_data) on a job spec and on hostile documents.

A submit decodes a job spec of a few dozen brackets; a hostile body or upload is as deep as its size allows.
Prints ms of CPU (``time.process_time``) per document, mean of three rounds. With ``--baseline FILE``, a
module defining ``load_json(data, *, max_bytes, max_depth, what)`` is timed too, the two alternating each
round (an in-process A/B, less noisy on a loaded machine).
Usage: python benchmarks/bounded_json.py [--baseline path/to/module.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from typing import Any

from jobs.spec import dump_spec, parse_spec
from lbc_formats.errors import FormatError
from lbc_formats.json_data import load_json_data

Reader = Callable[[bytes, int, int], object]


def documents() -> list[tuple[str, bytes, int, int]]:
    """(name, document, max_bytes, repeats): the depth bound is the API body's, 64."""
    spec = dump_spec(parse_spec({"model": {"architecture": "lenet5"}, "dataset": {"source": "digits"}}))
    small = json.dumps(spec).encode()
    brackets = sum(small.count(c) for c in b"[{")
    return [
        (f"job spec ({len(small)} bytes, {brackets} brackets)", small, 1 << 20, 2000),
        ("1 MiB of [ (the API body cap)", b"[" * (1 << 20), 1 << 20, 5),
        ("1 MiB: 2000 [ then [], repeated", b"[" * 2000 + b"[]," * 348_858, 1 << 20, 5),
        ("50 MB of [", b"[" * 50_000_000, 1 << 30, 1),
        ("50 MB: 2000 [ then [], repeated", b"[" * 2000 + b"[]," * 16_666_000, 1 << 30, 1),
    ]


def current(data: bytes, max_bytes: int, max_depth: int) -> object:
    try:
        return load_json_data(data, what="the body", max_bytes=max_bytes, max_depth=max_depth)
    except FormatError:
        return None


def baseline_reader(path: str) -> Reader:
    spec = importlib.util.spec_from_file_location("baseline_json", path)
    assert spec is not None and spec.loader is not None, path
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def read(data: bytes, max_bytes: int, max_depth: int) -> object:
        try:
            return module.load_json(data, max_bytes=max_bytes, max_depth=max_depth, what="the body")
        except ValueError:
            return None

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a module with load_json(data, *, max_bytes, max_depth, what)")
    args = parser.parse_args()
    readers: dict[str, Reader] = {"lbc_formats.json_data": current}
    if args.baseline:
        readers["baseline"] = baseline_reader(args.baseline)
    for name, data, max_bytes, repeats in documents():
        spent = dict.fromkeys(readers, 0.0)
        for round_ in range(3):
            order = list(readers) if round_ % 2 == 0 else list(reversed(readers))
            for label in order:
                start = time.process_time()
                for _ in range(repeats):
                    readers[label](data, max_bytes, 64)
                spent[label] += time.process_time() - start
        line = ", ".join(f"{label} {seconds / 3 / repeats * 1e3:.3f} ms" for label, seconds in spent.items())
        print(f"{name}: {line}")


if __name__ == "__main__":
    main()
