"""Response bodies of the REST API (request bodies are ``jobs.spec.JobSpec`` and multipart uploads)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from jobs.models import Artifact, Checkpoint, Dataset, HFModel, Job, JobEvent
from jobs.states import user_actions


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RunWarningOut(BaseModel):
    """Something about a finished job's result that its user must know."""

    code: str = Field(description="Stable identifier, e.g. did_not_learn", examples=["did_not_learn"])
    message: str = Field(
        description="What is wrong and what to change",
        examples=[
            "the model did not learn: validation accuracy 0.103 is at chance level for 10 classes (guessing "
            "scores 0.112). The exported model is no better than guessing. This run used lr 0.1 (given) at "
            "batch_size 16 without warm-up: try a lower train.lr (e.g. 0.0125, the default for this batch "
            "size, by omitting train.lr), train.warmup_epochs: 1, or a larger train.batch_size."
        ],
    )


def result_warnings(result: object) -> list[RunWarningOut]:
    """The warnings a worker recorded in a job's result (``result.warnings``); malformed entries are skipped."""
    entries = result.get("warnings") if isinstance(result, dict) else None
    return [
        RunWarningOut(code=entry["code"], message=entry["message"])
        for entry in entries or ()
        if isinstance(entry, dict)
        and isinstance(entry.get("code"), str)
        and isinstance(entry.get("message"), str)
    ]


class JobSummary(_Out):
    """A job as listed: state and the fields it is filtered by; the spec is in the detail view."""

    id: str = Field(examples=["3f2b9c1d0e8a4f6b9c2d1e0f8a7b6c5d"])
    owner_id: str
    name: str | None = Field(examples=["lenet5 2:4 on digits"])
    kind: str = Field(
        description="sparsify (trains an N:M model) or benchmark (measures one: POST /v1/benchmarks)",
        examples=["sparsify"],
    )
    state: str = Field(
        description="queued, running, cancelling, succeeded, failed or cancelled", examples=["queued"]
    )
    phase: str | None = Field(
        description="What the job is doing now (preparing, training, ...)", examples=["queued"]
    )
    method: str = Field(examples=["lbc"])
    pattern: str = Field(description="N:M pattern", examples=["2:4"])
    architecture: str = Field(examples=["lenet5"])
    dataset_id: str | None
    checkpoint_id: str | None
    queue: str = Field(examples=["gpu"])
    priority: int = Field(examples=[5])
    time_limit_s: int | None
    attempt: int = Field(description="Attempts started so far (0 while waiting for the first)")
    max_attempts: int
    cancel_requested: bool
    progress: dict[str, Any] = Field(
        description="Latest throttled progress report", examples=[{"epoch": 2, "step": 120, "loss": 0.41}]
    )
    error_type: str | None
    error_message: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    result: dict[str, Any] | None = Field(
        description=(
            "Final metrics once succeeded: the task's primary metric under its key (val_accuracy, or "
            "val_perplexity for causal-lm), task, primary_metric {name, higher_is_better}, density, "
            "verified_nm, ..."
        )
    )
    dataset_source: str | None = Field(
        default=None, description="The spec's dataset.source (digits, mnist, npz, ...)", examples=["digits"]
    )
    warnings: list[RunWarningOut] = Field(
        default_factory=list,
        description=(
            "Problems with the result of a job that ran to the end, each saying what to change: did_not_learn "
            "means the trained model is no better than guessing (its loss never fell or its validation "
            "accuracy is at chance level). The job is still succeeded; do not use its model."
        ),
    )
    actions: list[Literal["cancel", "retry"]] = Field(
        default_factory=list,
        description="What the job's state allows now: POST .../cancel, POST .../retry (any other is a 409)",
        examples=[["cancel"]],
    )

    @classmethod
    def of(cls, job: Job) -> Self:
        summary = cls.model_validate(job)
        summary._derive(job.spec)
        return summary

    @classmethod
    def page_of(cls, rows: Sequence[dict[str, Any]]) -> list[JobSummary]:
        """From rows of :func:`job_summary_columns` as dicts, validated as one list: one call into
        pydantic's core per page rather than one per job, from plain dicts (validating a dict is several
        times cheaper than reading a row's or an object's attributes)."""
        return _summaries().validate_python([_summary_fields(row) for row in rows]) if rows else []

    def _derive(self, spec: Any) -> None:
        dataset = spec.get("dataset") if isinstance(spec, dict) else None
        source = dataset.get("source") if isinstance(dataset, dict) else None
        for name, value in _derived_fields(self.result, self.state, source).items():
            setattr(self, name, value)


def _derived_fields(result: Any, state: str, dataset_source: Any) -> dict[str, Any]:
    """The fields computed from a job's columns: its spec's dataset source (a benchmark's spec may have
    none), the warnings in its result, what its state allows."""
    return {
        "dataset_source": dataset_source if isinstance(dataset_source, str) else None,
        "warnings": result_warnings(result),
        "actions": list(user_actions(state)),
    }


def _summary_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A listed job's fields: its row (the dataset source read in SQL), plus what is computed from it."""
    row.update(_derived_fields(row["result"], row["state"], row["dataset_source"]))
    return row


@cache
def _summaries() -> TypeAdapter[list[JobSummary]]:
    return TypeAdapter(list[JobSummary])


@cache
def job_summary_columns() -> tuple[Any, ...]:
    """What a listing reads of a job: the columns :class:`JobSummary` shows, and of the spec only its
    dataset's source, as text (a whole spec is most of a row, and decoding every job's spec, then
    every job's dataset section, was a large part of a page's CPU). Stored specs are validated, so
    the source is a string or absent (``NULL``)."""
    table = Job.__table__.c
    shown = [table[name] for name in JobSummary.model_fields if name in table]
    return (*shown, Job.spec[("dataset", "source")].as_string().label("dataset_source"))


class JobDetail(JobSummary):
    spec: dict[str, Any] = Field(description="The validated job spec with every default filled in")
    links: dict[str, str] = Field(default_factory=dict, description="Related resources")

    @classmethod
    def of(cls, job: Job) -> Self:
        detail = super().of(job)
        detail._link()
        return detail

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Self:
        """From a row of :func:`job_detail_columns` as a dict."""
        detail = cls.model_validate(row)
        detail._derive(detail.spec)
        detail._link()
        return detail

    def _link(self) -> None:
        base = f"/v1/jobs/{self.id}"
        self.links = {
            name: f"{base}/{name}"
            for name in ("events", "logs", "metrics", "artifacts", "report", "cancel", "retry")
        }


@cache
def job_detail_columns() -> tuple[Any, ...]:
    """What the detail view reads of a job: the columns :class:`JobDetail` shows."""
    table = Job.__table__.c
    return tuple(table[name] for name in JobDetail.model_fields if name in table)


class JobPage(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class EventOut(_Out):
    id: int = Field(description="Monotonic event id (the SSE id)")
    kind: str = Field(examples=["state", "phase", "progress", "metrics", "log"])
    attempt: int
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        return cls.model_validate(event)


class MetricsHistory(BaseModel):
    job_id: str
    history: list[dict[str, Any]] = Field(
        description="One entry per reported epoch, oldest first",
        examples=[[{"epoch": 1, "train_loss": 0.52, "val_accuracy": 0.91, "lr": 0.1}]],
    )


class LogLine(BaseModel):
    event_id: int
    attempt: int
    created_at: datetime
    line: str


class LogPage(BaseModel):
    items: list[LogLine]
    next_after: int = Field(description="Pass as `after` to continue from here")


class ArtifactOut(BaseModel):
    name: str = Field(examples=["sparse.safetensors"])
    size: int
    sha256: str
    content_type: str = Field(examples=["application/octet-stream"])
    created_at: datetime
    url: str = Field(description="Download path (supports Range and If-None-Match)")

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactOut:
        return cls(
            name=artifact.name,
            size=artifact.size,
            sha256=artifact.sha256,
            content_type=artifact.content_type,
            created_at=artifact.created_at,
            url=f"/v1/jobs/{artifact.job_id}/artifacts/{quote(artifact.name, safe='/')}",
        )


class ArtifactList(BaseModel):
    items: list[ArtifactOut]


class UploadOut(_Out):
    id: str
    owner_id: str
    name: str
    format: str
    filename: str = Field(description="Stored file name (sanitised)")
    size: int
    sha256: str
    summary: dict[str, Any] = Field(description="What validation found: samples, classes, shapes, tensors")
    created_at: datetime


class DatasetOut(UploadOut):
    format: str = Field(examples=["npz"], description="mnist, npz, imagefolder, cifar10 or cifar100")

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetOut:
        return cls.model_validate(dataset)


class CheckpointOut(UploadOut):
    format: str = Field(examples=["safetensors"], description="safetensors or torch")

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointOut:
        return cls.model_validate(checkpoint)


class HFModelOut(UploadOut):
    format: str = Field(examples=["huggingface"], description="huggingface")
    summary: dict[str, Any] = Field(
        description="What the checks found: model_type, tasks, parameter_count, dtypes, stripped_config_keys, "
        "files (read by the engine), ignored (never extracted)"
    )

    @classmethod
    def of(cls, model: HFModel) -> HFModelOut:
        return cls.model_validate(model)


class HFModelList(BaseModel):
    items: list[HFModelOut]


class DatasetList(BaseModel):
    items: list[DatasetOut]


class CheckpointList(BaseModel):
    items: list[CheckpointOut]


class ModelArgument(BaseModel):
    name: str
    default: Any
    help: str


class LayerInfo(BaseModel):
    name: str = Field(examples=["features.3"])
    kind: str = Field(examples=["Conv2d"])
    shape: list[int]
    sparsified: dict[str, bool] = Field(description="By M (as a string): sparsified under the default policy")
    reasons: dict[str, str] = Field(description="By M: why the layer stays dense (absent when sparsified)")


class ModelOut(BaseModel):
    name: str = Field(examples=["lenet5"])
    description: str
    input_size: list[int] | None = Field(description="[H, W] the defaults are designed for; null: flat input")
    args: list[ModelArgument]
    layers: list[LayerInfo] = Field(description="Linear/Conv2d layers at default arguments")


class ModelList(BaseModel):
    items: list[ModelOut]
    m_values: list[int] = Field(description="The M values the layer table covers")


class ComponentStatus(BaseModel):
    ok: bool
    detail: str | None = None
    latency_ms: float | None = None


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    components: dict[str, ComponentStatus]


class Health(BaseModel):
    status: str = Field(examples=["ok"])
