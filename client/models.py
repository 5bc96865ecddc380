"""Typed, immutable views of the API's JSON: jobs, events, artifacts, uploads and architectures."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

JOB_STATES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
METHODS = ("lbc", "srste", "asp", "wanda", "dense")


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromisoformat(str(value))


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError("missing timestamp")
    return parsed


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def to_jsonable(value: Any) -> Any:
    """A dataclass of this module (or a list of them) as plain JSON data, timestamps in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class RunWarning:
    """Something about a finished job's result that its user must know (e.g. ``did_not_learn``)."""

    code: str
    message: str

    @classmethod
    def list_from_json(cls, value: Any) -> tuple[RunWarning, ...]:
        if not isinstance(value, list):
            return ()
        return tuple(
            cls(code=str(item.get("code", "")), message=str(item.get("message", "")))
            for item in value
            if isinstance(item, Mapping)
        )


@dataclass(frozen=True)
class Job:
    """A job as the API reports it. ``spec``, ``result`` and ``links`` are filled by ``get_job`` (not by
    listings)."""

    id: str
    owner_id: str
    name: str | None
    state: str
    phase: str | None
    method: str
    pattern: str
    architecture: str
    dataset_id: str | None
    checkpoint_id: str | None
    queue: str
    priority: int
    time_limit_s: int | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    progress: dict[str, Any]
    error_type: str | None
    error_message: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    spec: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    links: dict[str, str] = field(default_factory=dict)
    # A succeeded job whose model is useless (did_not_learn) says so here; see RunWarning.
    warnings: tuple[RunWarning, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=str(data["id"]),
            owner_id=str(data.get("owner_id", "")),
            name=data.get("name"),
            state=str(data["state"]),
            phase=data.get("phase"),
            method=str(data.get("method", "")),
            pattern=str(data.get("pattern", "")),
            architecture=str(data.get("architecture", "")),
            dataset_id=data.get("dataset_id"),
            checkpoint_id=data.get("checkpoint_id"),
            queue=str(data.get("queue", "")),
            priority=int(data.get("priority", 0)),
            time_limit_s=data.get("time_limit_s"),
            attempt=int(data.get("attempt", 0)),
            max_attempts=int(data.get("max_attempts", 0)),
            cancel_requested=bool(data.get("cancel_requested", False)),
            progress=_dict(data.get("progress")),
            error_type=data.get("error_type"),
            error_message=data.get("error_message"),
            created_at=_required_time(data["created_at"]),
            queued_at=_time(data.get("queued_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            updated_at=_required_time(data.get("updated_at", data["created_at"])),
            spec=_dict(data["spec"]) if isinstance(data.get("spec"), Mapping) else None,
            result=_dict(data["result"]) if isinstance(data.get("result"), Mapping) else None,
            links={str(k): str(v) for k, v in _dict(data.get("links")).items()},
            warnings=RunWarning.list_from_json(data.get("warnings")),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``list_jobs``: newest first; ``next_cursor`` is None on the last page."""

    items: tuple[Job, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobPage:
        return cls(
            items=tuple(Job.from_json(item) for item in data.get("items", [])),
            next_cursor=data.get("next_cursor"),
        )


@dataclass(frozen=True)
class Event:
    """One job event (also the SSE ``id``): kind is state, phase, progress, metrics or log."""

    id: int
    kind: str
    attempt: int
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            id=int(data["id"]),
            kind=str(data["kind"]),
            attempt=int(data.get("attempt", 0)),
            created_at=_required_time(data["created_at"]),
            data=_dict(data.get("data")),
        )

    @property
    def terminal(self) -> bool:
        """A state event that finishes the job (succeeded, failed or cancelled)."""
        return self.kind == "state" and self.data.get("state") in TERMINAL_STATES

    @property
    def log_lines(self) -> list[str]:
        """The lines of a ``log`` event (empty for other kinds)."""
        if self.kind != "log":
            return []
        lines = self.data.get("lines")
        if isinstance(lines, list):
            return [str(line) for line in lines]
        for key in ("message", "line"):
            if key in self.data:
                return [str(self.data[key])]
        return []


@dataclass(frozen=True)
class LogLine:
    event_id: int
    attempt: int
    created_at: datetime
    line: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogLine:
        return cls(
            event_id=int(data["event_id"]),
            attempt=int(data.get("attempt", 0)),
            created_at=_required_time(data["created_at"]),
            line=str(data["line"]),
        )


@dataclass(frozen=True)
class LogPage:
    """Log lines, oldest first; pass ``next_after`` as ``after`` (or as an event id) to continue."""

    lines: tuple[LogLine, ...]
    next_after: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogPage:
        return cls(
            lines=tuple(LogLine.from_json(item) for item in data.get("items", [])),
            next_after=int(data.get("next_after", 0)),
        )


@dataclass(frozen=True)
class Artifact:
    """A job output: verified on download against ``sha256`` and ``size``."""

    name: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    url: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(
            name=str(data["name"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]).lower(),
            content_type=str(data.get("content_type", "application/octet-stream")),
            created_at=_required_time(data["created_at"]),
            url=str(data.get("url", "")),
        )


@dataclass(frozen=True)
class Upload:
    """An uploaded file the server validated; its id goes into a job spec."""

    id: str
    owner_id: str
    name: str
    format: str
    filename: str
    size: int
    sha256: str
    summary: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            id=str(data["id"]),
            owner_id=str(data.get("owner_id", "")),
            name=str(data.get("name", "")),
            format=str(data.get("format", "")),
            filename=str(data.get("filename", "")),
            size=int(data.get("size", 0)),
            sha256=str(data.get("sha256", "")),
            summary=_dict(data.get("summary")),
            created_at=_required_time(data["created_at"]),
        )


@dataclass(frozen=True)
class Dataset(Upload):
    """An uploaded dataset (``dataset.path`` of a spec): mnist, npz, imagefolder, cifar10, cifar100, text or
    labeled-text; or a tokenizer (``dataset.tokenizer``)."""


@dataclass(frozen=True)
class CheckpointInfo(Upload):
    """An uploaded dense checkpoint (``model.checkpoint`` of a spec): safetensors or torch."""


@dataclass(frozen=True)
class HFModelInfo(Upload):
    """An uploaded Hugging Face model directory (``model.path`` of a spec with ``model.source: huggingface``);
    its summary names the family (``model_type``), the tasks it can do and its ``parameter_count``."""


@dataclass(frozen=True)
class ModelInfo:
    """A built-in architecture: its arguments (name, default, help) and its Linear/Conv2d layers."""

    name: str
    description: str
    input_size: tuple[int, ...] | None
    args: tuple[dict[str, Any], ...]
    layers: tuple[dict[str, Any], ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInfo:
        size = data.get("input_size")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            input_size=tuple(int(v) for v in size) if isinstance(size, list) else None,
            args=tuple(_dict(a) for a in data.get("args", [])),
            layers=tuple(_dict(layer) for layer in data.get("layers", [])),
        )
