"""Text datasets: a corpus (plain text, or JSON lines ``{"text": ...}``) and labeled texts (JSON lines or
CSV with ``text`` and ``label`` columns).

The upload validation and the engine's loader read files through these functions, so what is accepted
at upload is exactly what trains. Every problem is a :class:`TextDataError` naming the line or column.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "JSONL_SUFFIXES",
    "LabeledTexts",
    "TextDataError",
    "TextLimits",
    "corpus_layout",
    "labeled_layout",
    "read_corpus",
    "read_labeled",
]

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_INT_LABEL = re.compile(r"^-?[0-9]{1,9}$")


class TextDataError(ValueError):
    """A text dataset that cannot be used; the message names the line, row or column at fault."""


@dataclass(frozen=True)
class TextLimits:
    """Caps on one text dataset (the upload size limit caps its bytes first)."""

    max_bytes: int = 1 << 30
    max_rows: int = 5_000_000
    max_line_bytes: int = 1 << 20
    max_classes: int = 100_000


@dataclass(frozen=True)
class LabeledTexts:
    """Rows of text with class ids; ``classes[i]`` is the label that id ``i`` stands for."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]


def _decode(path: Path, limits: TextLimits) -> str:
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TextDataError(f"{path.name}: {size} bytes, over the limit of {limits.max_bytes}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is dropped, not read as text
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TextDataError(
            f"{path.name}: not UTF-8 text (invalid byte at line {line}, offset {exc.start})"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise TextDataError(f"{path.name}: line {line} holds a NUL character; text datasets are plain text")
    return text


def _lines(text: str, name: str, limits: TextLimits) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, each under the line limit."""
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > limits.max_line_bytes:
            raise TextDataError(f"{name}: line {number} is longer than {limits.max_line_bytes} characters")
        if line.strip():
            count += 1
            if count > limits.max_rows:
                raise TextDataError(f"{name}: more than {limits.max_rows} rows")
            yield number, line


def _json_row(line: str, number: int, name: str) -> dict[str, object]:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise TextDataError(f"{name}: line {number} is not a JSON object ({message})") from None
    if not isinstance(row, dict):
        raise TextDataError(f"{name}: line {number} is a JSON {type(row).__name__}, not an object")
    return row


def _text_field(row: dict[str, object], where: str) -> str:
    if "text" not in row:
        raise TextDataError(f'{where} has no "text" field')
    value = row["text"]
    if not isinstance(value, str):
        raise TextDataError(f'{where}: "text" must be a string, got {type(value).__name__}')
    return value


def corpus_layout(path: str | Path) -> str:
    """``jsonl`` or ``plain``: from the suffix, else ``jsonl`` when the first non-blank line is a JSON object
    with a "text" field (a plain-text corpus whose first line happens to be such an object is rare)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".txt":
        return "plain"
    with path.open("rb") as f:
        head = f.read(1 << 16).decode("utf-8-sig", errors="replace")
    first = next((line for line in head.splitlines() if line.strip()), "")
    try:
        row = json.loads(first)
    except (json.JSONDecodeError, RecursionError):
        return "plain"
    return "jsonl" if isinstance(row, dict) and "text" in row else "plain"


def read_corpus(path: str | Path, limits: TextLimits | None = None, layout: str | None = None) -> str:
    """The corpus of ``path``: the file's text, or for JSON lines (see corpus_layout) the ``text`` of every
    row joined by blank lines. Refuses non-UTF-8 bytes and a corpus with no text."""
    path, limits = Path(path), limits or TextLimits()
    text = _decode(path, limits)
    if (layout or corpus_layout(path)) == "jsonl":
        documents = [
            _text_field(_json_row(line, number, path.name), f"{path.name}: line {number}")
            for number, line in _lines(text, path.name, limits)
        ]
        text = "\n\n".join(documents)
    else:
        for _ in _lines(text, path.name, limits):  # the line limits apply to plain text too
            pass
    if not text.strip():
        raise TextDataError(f"{path.name}: the corpus is empty (no text to train on)")
    return text


def labeled_layout(path: str | Path) -> str:
    """``jsonl`` or ``csv``: from the suffix, else from the first non-blank character (``{`` is JSON)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head.startswith(b"{") else "csv"


def read_labeled(
    path: str | Path, limits: TextLimits | None = None, layout: str | None = None
) -> LabeledTexts:
    """Texts and labels of ``path`` (JSON lines or CSV with a header naming ``text`` and ``label``).

    Labels are integers (class ids used as they are; in CSV, cells that all spell integers) or strings
    (mapped to ids in sorted order). At least two classes.
    """
    path, limits = Path(path), limits or TextLimits()
    text = _decode(path, limits)
    layout = layout or labeled_layout(path)
    rows = _jsonl_rows(text, path.name, limits) if layout == "jsonl" else _csv_rows(text, path.name, limits)
    if not rows:
        raise TextDataError(f'{path.name}: no rows (expected rows with "text" and "label")')
    texts = tuple(t for t, _, _ in rows)
    raw = [label for _, label, _ in rows]
    if all(isinstance(label, int) for label in raw):
        labels = tuple(int(label) for label in raw)
        for _, label, where in rows:
            if not 0 <= int(label) < limits.max_classes:
                raise TextDataError(f"{where}: label {label} is out of range [0, {limits.max_classes})")
        classes = tuple(str(i) for i in range(max(labels) + 1))
    elif all(isinstance(label, str) for label in raw):
        classes = tuple(sorted(set(str(label) for label in raw)))
        if len(classes) > limits.max_classes:
            raise TextDataError(f"{path.name}: {len(classes)} distinct labels, over {limits.max_classes}")
        index = {name: i for i, name in enumerate(classes)}
        labels = tuple(index[str(label)] for label in raw)
    else:
        first_str = next(where for _, label, where in rows if isinstance(label, str))
        raise TextDataError(
            f"{first_str}: labels mix integers and strings; use one kind (strings are mapped to ids)"
        )
    if len(set(labels)) < 2:
        raise TextDataError(
            f"{path.name}: every row has the label {classes[labels[0]]!r}; classification needs at least 2 classes"
        )
    return LabeledTexts(texts, labels, classes)


def _label(value: object, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TextDataError(f'{where}: "label" must be an integer or a string, got {type(value).__name__}')
    if isinstance(value, str) and not value.strip():
        raise TextDataError(f'{where}: "label" is empty')
    return value


def _jsonl_rows(text: str, name: str, limits: TextLimits) -> list[tuple[str, int | str, str]]:
    rows = []
    for number, line in _lines(text, name, limits):
        where = f"{name}: line {number}"
        row = _json_row(line, number, name)
        if "label" not in row:
            raise TextDataError(f'{where} has no "label" field')
        rows.append((_text_field(row, where), _label(row["label"], where), where))
    return rows


def _csv_rows(text: str, name: str, limits: TextLimits) -> list[tuple[str, int | str, str]]:
    # The csv module's cell limit is process-wide: raised for this read only, then put back.
    previous = csv.field_size_limit(limits.max_line_bytes)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise TextDataError(f"{name}: empty CSV file (expected a header with text and label)")
        columns = [column.strip() for column in header]
        missing = [c for c in ("text", "label") if c not in columns]
        if missing:
            raise TextDataError(
                f"{name}: the CSV header has no {' or '.join(repr(m) for m in missing)} column "
                f"(columns: {', '.join(columns[:20])})"
            )
        text_at, label_at = columns.index("text"), columns.index("label")
        rows: list[tuple[str, int | str, str]] = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            where = f"{name}: row {reader.line_num}"
            if len(cells) != len(columns):
                raise TextDataError(f"{where} has {len(cells)} cells, the header {len(columns)}")
            if len(rows) >= limits.max_rows:
                raise TextDataError(f"{name}: more than {limits.max_rows} rows")
            rows.append((cells[text_at], _label(cells[label_at].strip(), where), where))
    except csv.Error as exc:
        raise TextDataError(f"{name}: malformed CSV at row {reader.line_num} ({exc})") from None
    finally:
        csv.field_size_limit(previous)
    # CSV cells are all strings: labels that all spell integers are class ids, as in JSON lines.
    if rows and all(_INT_LABEL.match(str(label)) for _, label, _ in rows):
        rows = [(t, int(label), where) for t, label, where in rows]
    return rows
