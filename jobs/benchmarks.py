"""Speedup reports in the service: the benchmark job's spec, its queue, and the report's artifact names.

A *sparsification* job with ``benchmark.enabled`` builds its speedup report after export. A *benchmark* job
(``Job.kind == "benchmark"``, submitted with ``POST /v1/benchmarks``) only measures an already sparse
model: the exported model of a succeeded sparsification job of the same owner, or an uploaded N:M
checkpoint with its architecture. Both write the same three artifacts and the same ``result.speedup``
summary. No torch here: the worker does the measuring (``worker.benchmarking``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from jobs.catalog import ARCHITECTURES, check_model_args
from jobs.sizing import input_problems
from jobs.spec import (
    MAX_M,
    BenchmarkSpec,
    FieldProblem,
    JobSpec,
    LimitsSpec,
    Name,
    SpecError,
    UploadRef,
    _problems_error,
    _Section,
    known_architecture,
    parse_spec,
    problems_from,
    refuse_nul,
)

SPARSIFY_KIND = "sparsify"
BENCHMARK_KIND = "benchmark"
JOB_KINDS = (SPARSIFY_KIND, BENCHMARK_KIND)
# Job.method of a benchmark job: it trains nothing, and listings should say so.
BENCHMARK_METHOD = "benchmark"

REPORT_SCHEMA_VERSION = "lbc.speedup-report/3"
REPORT_JSON = "speedup_report.json"
REPORT_HTML = "speedup_report.html"
REPORT_CHART = "speedup_chart.svg"
REPORT_CONTENT_TYPES: Mapping[str, str] = {
    REPORT_JSON: "application/json",
    REPORT_HTML: "text/html; charset=utf-8",
    REPORT_CHART: "image/svg+xml",
}
# The exported files of a sparsification job a benchmark job can measure (the names lbc_core.export writes:
# the manifest plus the compressed N:M weights or, failing that, the dense-layout sparse checkpoint).
MANIFEST_ARTIFACT = "manifest.json"
MODEL_ARTIFACTS = ("model.nm.safetensors", "model.safetensors")
# result.speedup.error_type when a sparsification job's benchmark failed (the job still succeeds).
BENCHMARK_ERROR = "benchmark_error"

MAX_INPUT_VALUES = 1 << 26  # one sample of at most 64 Mi values


@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    """The JSON Schema of ``speedup_report.json`` (a copy of ``lbc_core.benchmark.REPORT_SCHEMA``, which the
    API may not import; ``tests/worker/test_benchmarking.py`` asserts the two are equal)."""
    text = resources.files("jobs").joinpath("speedup_report.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


class PatternSpec(_Section):
    """An N:M pattern: ``n`` weights kept in every group of ``m`` along the reduction dimension."""

    n: int = Field(default=2, ge=1, le=MAX_M - 1, description="Weights kept per group (1 <= n < m).")
    m: int = Field(default=4, ge=2, le=MAX_M, description="Group size (2 <= m <= 16).")

    @model_validator(mode="after")
    def _n_below_m(self) -> PatternSpec:
        if self.n >= self.m:
            raise _problems_error(
                "PatternSpec", [(("n",), f"must be smaller than m ({self.m}); n counts kept weights", self.n)]
            )
        return self

    @property
    def text(self) -> str:
        return f"{self.n}:{self.m}"


Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class BenchmarkSource(_Section):
    """What to measure: exactly one of ``job_id`` and ``checkpoint_id``."""

    job_id: Id | None = Field(
        default=None,
        description=(
            "A succeeded sparsification job of yours: its exported model (manifest and compressed N:M weights) "
            "is measured, with the input shape of its data and its validation accuracy."
        ),
        examples=["3f2b9c1d0e8a4f6b9c2d1e0f8a7b6c5d"],
    )
    checkpoint_id: Id | None = Field(
        default=None,
        description=(
            "An uploaded checkpoint of yours (POST /v1/checkpoints) holding already N:M-sparse weights of "
            "`architecture`. The worker checks the pattern and fails the job if no layer follows it."
        ),
    )
    architecture: str | None = Field(
        default=None,
        description="Built-in architecture of the checkpoint (required with checkpoint_id).",
        json_schema_extra={"enum": list(ARCHITECTURES)},
        examples=["lenet5"],
    )
    args: dict[str, Any] | None = Field(
        default=None,
        description="Architecture arguments the checkpoint was trained with (num_classes, width, ...).",
        examples=[{"num_classes": 10, "width": 0.5}],
    )
    pattern: PatternSpec | None = Field(
        default=None, description="The checkpoint's N:M pattern (omitted: 2:4). Only with checkpoint_id."
    )
    input_shape: list[Annotated[int, Field(ge=1, le=4096)]] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description=(
            "One sample's shape without the batch dimension, [C, H, W] or [F] (omitted: the size the "
            "architecture is built for). Only with checkpoint_id; a job's own data shape is used otherwise."
        ),
        examples=[[1, 28, 28]],
    )

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str | None) -> str | None:
        return None if value is None else known_architecture(value)

    @model_validator(mode="after")
    def _one_source(self) -> BenchmarkSource:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if (self.job_id is None) == (self.checkpoint_id is None):
            problems.append(((), "give exactly one of job_id and checkpoint_id", None))
        elif self.job_id is not None:
            for name in ("architecture", "args", "pattern", "input_shape"):
                if getattr(self, name) is not None:
                    problems.append(
                        ((name,), "only used with checkpoint_id (a job's export records it)", None)
                    )
        else:
            if self.architecture is None:
                problems.append((("architecture",), "required with checkpoint_id", None))
            elif self.args:
                problems.extend(
                    (("args", key), message, self.args.get(key))
                    for key, message in check_model_args(self.architecture, self.args)
                )
        shape = self.input_shape
        if shape is not None:
            if len(shape) == 2:
                problems.append((("input_shape",), "must be [C, H, W] or [F]", shape))
            elif math.prod(shape) > MAX_INPUT_VALUES:
                problems.append((("input_shape",), f"more than {MAX_INPUT_VALUES} values per sample", shape))
            elif self.architecture is not None and not problems:
                # The checkpoint's model is built from args and the defaults alone, never from input_shape.
                built = {**ARCHITECTURES[self.architecture].defaults, **(self.args or {})}
                for key, message in input_problems(self.architecture, built, shape, "input_shape"):
                    loc = ("architecture",) if key == "architecture" else ("args", key)
                    problems.append((loc, message, built.get(key, self.architecture)))
        if problems:
            raise _problems_error("BenchmarkSource", problems)
        return self

    @property
    def pattern_text(self) -> str:
        return (self.pattern or PatternSpec()).text


class BenchmarkJobSpec(_Section):
    """A benchmark job: a speedup report of an already sparse model, without training."""

    name: Name | None = Field(
        default=None,
        description="A label for people (shown in listings); no control or bidirectional characters.",
        examples=["lenet5 2:4 on an H100"],
    )
    source: BenchmarkSource = Field(description="The model to measure.")
    benchmark: BenchmarkSpec = Field(
        default_factory=BenchmarkSpec, description="Device, batch sizes and dtypes to measure."
    )
    limits: LimitsSpec = Field(
        default_factory=LimitsSpec,
        description=(
            "Time limit, priority and queue. Queue default: the CPU queue when benchmark.device is cpu, "
            "else the service's default (GPU) queue."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return refuse_nul(data, "BenchmarkJobSpec")

    def upload_refs(self) -> list[UploadRef]:
        """The uploads this job reads: the checkpoint it measures, if it is one."""
        ref = self.source.checkpoint_id
        return [UploadRef("source.checkpoint_id", "checkpoint", ref)] if ref is not None else []

    @model_validator(mode="after")
    def _benchmarks(self) -> BenchmarkJobSpec:
        if not self.benchmark.enabled:
            raise _problems_error(
                "BenchmarkJobSpec",
                [(("benchmark", "enabled"), "a benchmark job always benchmarks; omit it or set true", False)],
            )
        return self


def requested_device(spec: BenchmarkJobSpec) -> str:
    return spec.benchmark.device or "auto"


def stored_spec(kind: str, data: Any, source: str | None = None) -> JobSpec | BenchmarkJobSpec:
    """The spec of a job row (``Job.kind``, ``Job.spec``) as its model; raises SpecError."""
    return parse_benchmark_spec(data, source) if kind == BENCHMARK_KIND else parse_spec(data, source)


def parse_benchmark_spec(data: Any, source: str | None = None) -> BenchmarkJobSpec:
    """Validate a benchmark job spec (a mapping); raises SpecError naming every field at fault."""
    if not isinstance(data, Mapping):
        problem = FieldProblem("", f"a benchmark spec is a mapping, got {type(data).__name__}")
        raise SpecError([problem], source)
    try:
        return BenchmarkJobSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(problems_from(exc, BenchmarkJobSpec), source) from None


def dump_benchmark_spec(spec: BenchmarkJobSpec) -> dict[str, Any]:
    """The spec as stored on the job row: plain JSON with every default filled in."""
    return spec.model_dump(mode="json")


__all__ = [
    "BENCHMARK_ERROR",
    "BENCHMARK_KIND",
    "BENCHMARK_METHOD",
    "JOB_KINDS",
    "MANIFEST_ARTIFACT",
    "MODEL_ARTIFACTS",
    "REPORT_CHART",
    "REPORT_CONTENT_TYPES",
    "REPORT_HTML",
    "REPORT_JSON",
    "REPORT_SCHEMA_VERSION",
    "SPARSIFY_KIND",
    "BenchmarkJobSpec",
    "BenchmarkSource",
    "PatternSpec",
    "dump_benchmark_spec",
    "parse_benchmark_spec",
    "report_schema",
    "requested_device",
    "stored_spec",
]
