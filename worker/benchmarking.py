"""Speedup reports inside jobs: the glue between a job and ``lbc_core.benchmark``.

Two callers, one measurement (:func:`measure`):

- a sparsification job with ``benchmark.enabled``: after export, :func:`report_after_training` measures the
  *exported* model (rebuilt from the export directory: the model users download is the model timed) with
  its validation accuracy and its data's input shape. It never fails the job: a benchmark problem is
  logged and recorded as ``result.speedup = {"error_type": "benchmark_error", "message": ...}``, and the
  trained model is published as usual.
- a benchmark job (``Job.kind == "benchmark"``): :func:`fetch_target` downloads the source (a succeeded
  job's export, or an uploaded checkpoint that must already be N:M sparse) and :func:`measure` builds the
  report; here a problem fails the job.

Both write ``speedup_report.json`` (schema ``lbc.speedup-report/3``), ``speedup_report.html`` and
``speedup_chart.svg``, and summarise the report for the job row with :func:`report_summary`.

Cost: on CUDA the library's defaults (10 warm-up calls, 30 repeats); on a CPU, which has no sparse kernel
and only gets dense timings, 1 warm-up call and 5 repeats. Every repeat lasts at least 1 ms. The
batch sizes and dtypes come from the spec. Between two timings the job's cancel flag, lease and time
limit are checked (:class:`BenchmarkStopped`), so a long report stops within one timing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from sqlalchemy import select
from torch import nn

from jobs.benchmarks import (
    BENCHMARK_ERROR,
    REPORT_CHART,
    REPORT_CONTENT_TYPES,
    REPORT_HTML,
    REPORT_JSON,
    BenchmarkJobSpec,
)
from jobs.db import transaction
from jobs.models import Artifact, Checkpoint, Job
from jobs.spec import BenchmarkSpec, JobSpec
from jobs.states import JobState
from lbc_core.benchmark import (
    SpeedupReport,
    Timing,
    TimingRequest,
    architecture_input_shape,
    build_speedup_report,
    make_timer,
    render_html,
    render_svg_chart,
    sparsified_layer_names,
)
from lbc_core.benchmark.gemm import gemm_layers
from lbc_core.export import (
    CHECKPOINT_FILE,
    COMPRESSED_FILE,
    MANIFEST_FILE,
    MASKS_FILE,
    load_state_dict_file,
    read_manifest,
    rebuild_model,
)
from lbc_core.models import build_model
from lbc_core.models.probe import probe_forward
from lbc_core.models.source import load_dense_weights
from lbc_core.sparsity import NMPattern, PatternError, count_violations
from lbc_core.training import resolve_device
from worker.context import WorkerContext
from worker.inputs import InputError, download

log = logging.getLogger(__name__)

EXPORT_FILES = (MANIFEST_FILE, COMPRESSED_FILE, CHECKPOINT_FILE, MASKS_FILE)


@dataclass(frozen=True)
class TimingBudget:
    warmup: int
    repeats: int
    min_repeat_ms: float


CUDA_BUDGET = TimingBudget(warmup=10, repeats=30, min_repeat_ms=1.0)
# CPU workers: few repeats keep the job short; the N:M CPU kernel's gains at small batches (1.5-4x at batch 1)
# are far above the spread of 5 repeats.
CPU_BUDGET = TimingBudget(warmup=1, repeats=5, min_repeat_ms=1.0)


def budget_for(device: torch.device) -> TimingBudget:
    return CUDA_BUDGET if device.type == "cuda" else CPU_BUDGET


StopReason = Literal["cancelled", "lost", "time_limit", "interrupted"]


class BenchmarkStopped(Exception):
    """Raised between two timings when the job must stop. Not a RuntimeError on purpose: the report
    builder turns RuntimeErrors of one timing (CUDA OOM at a large batch) into a per-row reason."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


StopCheck = Callable[[], None]  # raises BenchmarkStopped when the job must stop


def _never_stop() -> None:
    return None


class NotNMSparseError(InputError):
    """An uploaded checkpoint in which no Linear/Conv2d weight follows the requested N:M pattern."""


@dataclass(frozen=True)
class Target:
    """The finalized model to measure and what the report needs to know about it."""

    model: nn.Module
    name: str  # the architecture
    pattern: NMPattern
    layers: list[str] | None  # the sparsified layers; None: every exactly N:M Linear/Conv2d
    input_shape: tuple[int, ...]
    accuracy: float | None
    export_dir: Path | None  # adds the exported files' sizes to the report
    training_warnings: tuple[str, ...] = ()  # the training run's warnings (e.g. did not learn)


@dataclass(frozen=True)
class ReportFiles:
    report: SpeedupReport
    files: list[tuple[str, Path, str]]  # (artifact name, local file, content type)
    summary: dict[str, Any]


def benchmark_device(name: str) -> torch.device:
    """``auto``: CUDA when this worker has it, else the CPU; ``cuda`` without CUDA is a ValueError."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:  # name the GPU actually used
        device = torch.device("cuda", torch.cuda.current_device())
    return device


# -- targets --------------------------------------------------------------------------------------------
def exported_target(directory: Path) -> Target:
    """The model of an export directory (manifest plus compressed N:M weights, else the sparse checkpoint)."""
    manifest = read_manifest(directory / MANIFEST_FILE)
    architecture = manifest["architecture"]
    name, args = str(architecture["name"]), dict(architecture["args"])
    if (directory / COMPRESSED_FILE).is_file():
        model = rebuild_model(manifest, directory / COMPRESSED_FILE)
    else:
        model = build_model(name, **args)
        model.load_state_dict(load_state_dict_file(directory / CHECKPOINT_FILE), strict=True)
    metrics = manifest.get("metrics") or {}
    accuracy = metrics.get("val_accuracy")
    recorded = (manifest.get("data") or {}).get("input_shape")
    return Target(
        model=model.eval(),
        name=name,
        pattern=NMPattern.parse(manifest["pattern"]["text"]),
        layers=[str(layer["name"]) for layer in manifest.get("layers", [])],
        input_shape=tuple(int(s) for s in recorded) if recorded else architecture_input_shape(name, args),
        accuracy=float(accuracy) if isinstance(accuracy, int | float) else None,
        export_dir=directory,
        training_warnings=tuple(
            str(w["message"])
            for w in metrics.get("warnings") or ()
            if isinstance(w, dict) and w.get("message")
        ),
    )


def checkpoint_target(
    path: Path,
    *,
    what: str,
    architecture: str,
    args: dict[str, Any],
    pattern: NMPattern,
    input_shape: Sequence[int] | None,
) -> Target:
    """An uploaded checkpoint of ``architecture``; NotNMSparseError unless some layer is exactly N:M."""
    try:
        model = build_model(architecture, **args)
    except (TypeError, ValueError) as exc:
        raise InputError(f"source.args: cannot build {architecture} with {args}: {exc}") from exc
    try:
        load_dense_weights(model, path)  # names every missing, unexpected or mis-shaped tensor
    except ValueError as exc:
        raise InputError(f"source.checkpoint_id: {what}: {exc}") from exc
    model.eval()
    layers = sparsified_layer_names(model, pattern)
    if not layers:
        raise NotNMSparseError(not_nm_message(model, pattern, what))
    log.info("%s: %d layers are exactly %s: %s", what, len(layers), pattern, ", ".join(layers))
    shape = tuple(input_shape) if input_shape else architecture_input_shape(architecture, args)
    probe_forward(model, torch.zeros(1, *shape), "source.input_shape")  # names the layer that refuses it
    return Target(model, architecture, pattern, layers, shape, None, None)


def not_nm_message(model: nn.Module, pattern: NMPattern, what: str) -> str:
    """Why ``model`` is not ``pattern``-sparse, naming the layer that comes closest."""
    closest: tuple[float, str, int, int] | None = None
    for name, module in gemm_layers(model):
        weight = module.weight.detach()
        try:
            violations = count_violations(weight, pattern)
        except PatternError:  # input size not divisible by M
            continue
        groups = max(weight.numel() // pattern.m, 1)
        if closest is None or violations / groups < closest[0]:
            closest = (violations / groups, name, violations, groups)
    text = (
        f"source.checkpoint_id: {what} is not {pattern} sparse: no Linear/Conv2d weight keeps at most "
        f"{pattern.n} non-zeros in every group of {pattern.m} consecutive weights along its input dimension"
    )
    if closest is not None:
        _, name, violations, groups = closest
        text += f" (closest: layer {name!r}, {violations} of {groups} groups hold more than {pattern.n})"
    return (
        text + ". Upload the weights after N:M pruning, or submit a sparsification job that starts from "
        "this checkpoint (model.checkpoint)."
    )


# -- measuring ------------------------------------------------------------------------------------------
def measure(
    target: Target,
    spec: BenchmarkSpec,
    device: torch.device,
    out_dir: Path,
    *,
    stop: StopCheck = _never_stop,
    budget: TimingBudget | None = None,
) -> ReportFiles:
    """Build the report on ``device`` and write its three files into ``out_dir``."""
    budget = budget or budget_for(device)
    timings = 0

    measured = make_timer(
        device, warmup=budget.warmup, repeats=budget.repeats, min_repeat_ms=budget.min_repeat_ms
    )

    def timer(request: TimingRequest, fn: Callable[[], object]) -> Timing:
        nonlocal timings
        stop()
        timings += 1
        return measured(request, fn)

    started = time.monotonic()
    log.info(
        "benchmarking %s (%s) on %s: batch sizes %s, dtypes %s, %d warm-up calls and %d repeats",
        target.name,
        target.pattern,
        device,
        spec.batch_sizes,
        spec.dtypes or "device default",
        budget.warmup,
        budget.repeats,
    )
    report = build_speedup_report(
        target.model,
        input_shape=target.input_shape,
        batch_sizes=spec.batch_sizes,
        dtypes=spec.dtypes,
        device=device,
        pattern=target.pattern,
        layers=target.layers,
        accuracy=target.accuracy,
        export_dir=target.export_dir,
        model_name=target.name,
        training_warnings=target.training_warnings,
        warmup=budget.warmup,
        repeats=budget.repeats,
        min_repeat_ms=budget.min_repeat_ms,
        launch=spec.launch,
        timer=timer,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        REPORT_JSON: report.to_json() + "\n",
        REPORT_HTML: render_html(report),
        REPORT_CHART: render_svg_chart(report),
    }
    files = []
    for name, text in texts.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        files.append((name, path, REPORT_CONTENT_TYPES[name]))
    summary = report_summary(report)
    log.info(
        "speedup report: %d timings in %.1fs; median layer speedup %s, end to end %s; %s",
        timings,
        time.monotonic() - started,
        _x(summary["median_layer_speedup"]),
        _x(summary["end_to_end_speedup"]),
        summary["verdict"],
    )
    return ReportFiles(report, files, summary)


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def report_summary(report: SpeedupReport) -> dict[str, Any]:
    """What the job row's ``result.speedup`` holds: the report's summary, and where it was measured."""
    summary, env = report.summary, report.environment
    return {
        "schema": report.schema,
        "report": REPORT_JSON,
        "median_layer_speedup": summary.median_layer_speedup,
        "end_to_end_speedup": summary.end_to_end_speedup,
        "layers_recommended_dense": list(summary.layers_recommended_dense),
        "layers_recommended_sparse": list(summary.layers_recommended_sparse),
        "layers_not_applicable": len(summary.layers_not_applicable),
        "device": env.device,
        "device_name": env.device_name,
        "sparse_kernels": env.sparse_kernels,
        "backend": env.backend,
        "verdict": summary.verdict,
    }


def benchmark_error(message: str) -> dict[str, Any]:
    return {"error_type": BENCHMARK_ERROR, "message": message}


# -- after training ---------------------------------------------------------------------------------------
def report_after_training(
    spec: JobSpec, export_dir: Path, out_dir: Path, *, stop: StopCheck = _never_stop
) -> tuple[list[tuple[str, Path, str]], dict[str, Any]]:
    """``(files, result.speedup)`` for a finished sparsification job; never raises for a benchmark problem.

    A failure (no CUDA on this worker for ``benchmark.device: cuda``, an input shape the model rejects,
    the time limit reached while measuring, ...) yields no files and a ``benchmark_error`` summary: the
    trained model is the job's main output and is published regardless. Only a cancel request or a lost
    lease propagate (as BenchmarkStopped), since then nothing may be published.
    """
    if spec.task != "image-classification":
        # The report feeds float samples of the data's input shape; token ids need the task's own inputs.
        message = f"the speedup report times image models; task {spec.task} gets none yet"
        log.warning("%s; the trained model is published without a speedup report", message)
        return [], benchmark_error(message)
    requested = spec.benchmark.device or spec.train.device
    try:
        device = benchmark_device(requested)
        outcome = measure(exported_target(export_dir), spec.benchmark, device, out_dir, stop=stop)
    except BenchmarkStopped as exc:
        if exc.reason != "time_limit":
            raise
        log.warning("benchmark stopped: %s; the trained model is published without a speedup report", exc)
        return [], benchmark_error(str(exc))
    except Exception as exc:
        message = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
        # Input-like problems get one line; anything unexpected gets the traceback in the job log.
        log.warning(
            "benchmark failed (%s); the trained model is published without a speedup report",
            message,
            exc_info=not isinstance(exc, ValueError),
        )
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        return [], benchmark_error(message[:2000])
    return outcome.files, outcome.summary


# -- benchmark jobs ---------------------------------------------------------------------------------------
def fetch_target(ctx: WorkerContext, job: Job, spec: BenchmarkJobSpec, scratch: Path) -> Target:
    """Download what a benchmark job measures into ``scratch/inputs`` and rebuild the model."""
    source = spec.source
    directory = scratch / "inputs"
    directory.mkdir(parents=True, exist_ok=True)
    if source.job_id is not None:
        return exported_target(_fetch_export(ctx, job, source.job_id, directory))
    assert source.checkpoint_id is not None and source.architecture is not None
    with transaction(ctx.sessions) as session:
        row = session.get(Checkpoint, source.checkpoint_id)
        if row is None or row.owner_id != job.owner_id:
            raise InputError(
                f"source.checkpoint_id: {source.checkpoint_id} is not one of the job owner's uploads"
            )
        key, size = row.storage_key, row.size
    log.info("downloading checkpoint %s (%d bytes)", source.checkpoint_id, size)
    # Named after the upload: the engine's messages name the file ("checkpoint <id> does not fit ...").
    path = download(ctx, key, directory / source.checkpoint_id, "source.checkpoint_id")
    pattern = NMPattern.parse(source.pattern_text)
    return checkpoint_target(
        path,
        what=f"checkpoint {source.checkpoint_id}",
        architecture=source.architecture,
        args=dict(source.args or {}),
        pattern=pattern,
        input_shape=source.input_shape,
    )


def _fetch_export(ctx: WorkerContext, job: Job, source_id: str, directory: Path) -> Path:
    with transaction(ctx.sessions) as session:
        source = session.get(Job, source_id)
        if source is None or source.owner_id != job.owner_id:
            raise InputError(f"source.job_id: job {source_id} does not exist")
        if source.state != JobState.SUCCEEDED.value:
            raise InputError(f"source.job_id: job {source_id} is {source.state}, not succeeded")
        rows = session.execute(
            select(Artifact.name, Artifact.storage_key).where(
                Artifact.job_id == source_id, Artifact.name.in_(EXPORT_FILES)
            )
        )
        keys = {name: key for name, key in rows}
    if MANIFEST_FILE not in keys or not {COMPRESSED_FILE, CHECKPOINT_FILE} & set(keys):
        raise InputError(f"source.job_id: job {source_id} has no exported model")
    export = directory / "export"
    export.mkdir()
    log.info("downloading the export of job %s (%s)", source_id, ", ".join(sorted(keys)))
    for name, key in keys.items():  # names from a fixed list, never from user input
        download(ctx, key, export / name, f"source.job_id: job {source_id}: {name}")
    return export


__all__ = [
    "CPU_BUDGET",
    "CUDA_BUDGET",
    "BenchmarkStopped",
    "NotNMSparseError",
    "ReportFiles",
    "Target",
    "TimingBudget",
    "benchmark_device",
    "benchmark_error",
    "checkpoint_target",
    "exported_target",
    "fetch_target",
    "measure",
    "not_nm_message",
    "report_after_training",
    "report_summary",
]
