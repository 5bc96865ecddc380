"""The one reader of job spec text (YAML or JSON) into plain data, bounded in size, nesting and aliases.

Every spec read goes through :func:`load_spec_text`: ``lbc submit`` and ``Client.submit`` here, and on
the service's side ``lbc spec check``, ``lbc train`` and everything else that calls ``jobs.spec.load_spec``.
So a file reads the same everywhere: YAML numbers like ``1e-4`` are floats (as in YAML 1.2 and JSON),
a duplicate key is an error, and a document whose aliases would expand past :data:`MAX_SPEC_NODES`
("billion laughs": a few lines that expand into gigabytes) is refused while it is being parsed, before
anything is built from it. A spec is a few KiB; the limits are far above any real one.

It lives in the client package because the client may import nothing of the service, while the
service may import this module; it needs nothing but PyYAML and the standard library.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

MAX_SPEC_BYTES = 256 * 1024
MAX_SPEC_NODES = 10_000  # scalars and collections, every alias counted as the nodes it stands for
MAX_SPEC_DEPTH = 32  # nested mappings and lists, aliases expanded


class SpecTextError(ValueError):
    """The text is not a readable spec document; the message says where and why (no source name)."""


def load_spec_text(text: str, *, is_json: bool = False) -> Any:
    """Parse spec text (JSON when ``is_json``, else YAML, which also reads JSON) into plain data.

    Raises :class:`SpecTextError` for text that is too large, nested too deeply, expands too far
    through aliases, or is not valid YAML/JSON.
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecTextError(f"the document is {size} bytes; a job spec may have at most {MAX_SPEC_BYTES}")
    if is_json:
        return _load_json(text)
    return _load_yaml(text)


def load_spec_file(path: str | os.PathLike[str]) -> Any:
    """A spec file as plain data: JSON for ``.json``, YAML otherwise. Reads at most the size limit."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecTextError("file not found") from None
    except IsADirectoryError:
        raise SpecTextError("is a directory, not a spec file") from None
    except OSError as exc:
        raise SpecTextError(f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecTextError(f"the file is larger than {MAX_SPEC_BYTES} bytes, the limit for a job spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecTextError(f"cannot read the file: not UTF-8 text (byte {exc.start})") from None
    return load_spec_text(text, is_json=file.suffix.lower() == ".json")


def _load_json(text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecTextError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise SpecTextError(f"the document nests deeper than {MAX_SPEC_DEPTH} levels") from None
    if _depth(data) > MAX_SPEC_DEPTH:
        raise SpecTextError(f"the document nests deeper than {MAX_SPEC_DEPTH} levels")
    return data


def _depth(data: Any) -> int:
    """Nesting depth of plain JSON data, without recursion."""
    deepest, pending = 0, [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if depth <= MAX_SPEC_DEPTH:
                children = value.values() if isinstance(value, dict) else value
                pending.extend((child, depth) for child in children)
    return deepest


def _load_yaml(text: str) -> Any:
    try:
        _check_yaml_shape(text)  # first, from the parser's events: nothing is built yet
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecTextError(f"invalid YAML{where}: {exc.problem or exc.context or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecTextError(f"invalid YAML: {' '.join(str(exc).split())}") from None


def _at(event: yaml.Event) -> str:
    mark = event.start_mark
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""


def _check_yaml_shape(text: str) -> None:
    """Count the nodes the document would expand to, and its depth, aliases included.

    PyYAML's parser is iterative, so even a hostile document is only read once, linearly. Each anchor
    remembers the size and height of its node; an alias adds them where it stands, so the count is
    what the loaded data would hold once copied (e.g. serialised to JSON for the API).
    """
    nodes = 0
    frames: list[list[Any]] = []  # per open collection: [anchor, nodes before it, its height]
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
    open_anchors: set[str] = set()

    def close(size: int, height: int, anchor: str | None, event: yaml.Event) -> None:
        if anchor is not None:
            anchored[anchor] = (size, height)
        if len(frames) + height > MAX_SPEC_DEPTH:
            raise SpecTextError(f"the document nests deeper than {MAX_SPEC_DEPTH} levels{_at(event)}")
        if frames:
            frames[-1][2] = max(frames[-1][2], height + 1)

    for event in yaml.parse(text, Loader=_SpecLoader):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise SpecTextError(f"alias *{event.anchor} refers to a node that contains it{_at(event)}")
            size, height = anchored.get(event.anchor or "", (1, 0))  # undefined: the loader says so
            nodes += size
            close(size, height, None, event)
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            close(1, 0, event.anchor, event)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            nodes += 1
            frames.append([event.anchor, nodes - 1, 1])
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            if len(frames) > MAX_SPEC_DEPTH:
                raise SpecTextError(f"the document nests deeper than {MAX_SPEC_DEPTH} levels{_at(event)}")
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            anchor, before, height = frames.pop()
            if anchor is not None:
                open_anchors.discard(anchor)
            close(nodes - before, height, anchor, event)
        else:
            continue
        if nodes > MAX_SPEC_NODES:
            raise SpecTextError(
                f"the document expands to more than {MAX_SPEC_NODES} values (through aliases?){_at(event)}; "
                "a job spec needs far fewer"
            )


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys (a merged ``<<: *anchor`` key may be overridden) and reads
    ``1e-4`` as a number, as YAML 1.2 and JSON do."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`; its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own check below names it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
