"""Does a job fit? Its data shape as far as it is known before any data is read, and its memory estimate
against the service's limit (``LBC_MAX_JOB_MEMORY_BYTES``).

The API refuses a job over the limit at submit time (a 422 naming the estimate and the limit); the worker
quotes the same estimate when an allocation fails anyway. The arithmetic is in :mod:`jobs.sizing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from jobs.benchmarks import BENCHMARK_KIND, BenchmarkJobSpec, parse_benchmark_spec
from jobs.catalog import ARCHITECTURES
from jobs.models import Checkpoint, Dataset, HFModel, Job
from jobs.sizing import (
    MemoryEstimate,
    ModelShape,
    format_bytes,
    hf_model_shape,
    inference_memory,
    model_shape,
    training_memory,
)
from jobs.spec import FieldProblem, JobSpec, SpecError, parse_spec

LIMIT_SETTING = "LBC_MAX_JOB_MEMORY_BYTES"


def _int_list(value: Any) -> tuple[int, ...] | None:
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    return None


def upload_input_shape(summary: Mapping[str, Any] | None) -> tuple[int, ...] | None:
    """One sample's shape as an upload's validation recorded it (npz, mnist, cifar); None if unknown."""
    return _int_list((summary or {}).get("input_shape"))


def data_shape(spec: JobSpec, dataset_summary: Mapping[str, Any] | None) -> tuple[int, ...] | None:
    """One sample's shape: fixed by the source, or recorded by the upload; None when only reading the
    data tells (an image folder's channels)."""
    return spec.known_input_shape() or upload_input_shape(dataset_summary)


def _estimate_shape(spec: JobSpec, dataset_summary: Mapping[str, Any] | None) -> tuple[int, ...] | None:
    """The shape to size the model for: the data's, or an image folder's resize / first image size with
    the architecture's channels; None: the architecture's own input size."""
    shape = data_shape(spec, dataset_summary)
    if shape is not None:
        return shape
    size = spec.dataset.image_size
    recorded = _int_list((dataset_summary or {}).get("image_size"))  # [H, W] of the first image
    if size is not None:
        height = width = size
    elif recorded is not None:
        height, width = recorded[0], recorded[-1]
    else:
        return None
    if spec.model.architecture is None:
        return None
    defaults = ARCHITECTURES[spec.model.architecture].defaults
    channels = spec.model.args.get("in_channels", defaults.get("in_channels", 3))
    return (int(channels), height, width)


def _model_shape(
    spec: JobSpec, dataset_summary: Mapping[str, Any] | None, model_summary: Mapping[str, Any] | None = None
) -> ModelShape:
    """The model a sparsification job builds, with the arguments the data fills in; an uploaded Hugging
    Face model is sized from what its upload check recorded."""
    if spec.model.architecture is None:
        return hf_model_shape(model_summary or {})
    classes = spec.known_num_classes() or (dataset_summary or {}).get("num_classes")
    return model_shape(
        spec.model.catalog_architecture,
        spec.model.args,
        _estimate_shape(spec, dataset_summary),
        classes if isinstance(classes, int) else None,
    )


def job_memory(
    spec: JobSpec,
    dataset_summary: Mapping[str, Any] | None = None,
    checkpoint_summary: Mapping[str, Any] | None = None,
    model_summary: Mapping[str, Any] | None = None,
) -> MemoryEstimate:
    """Peak memory of a sparsification job, from its spec and what its uploads recorded."""
    return training_memory(
        _model_shape(spec, dataset_summary, model_summary),
        batch_size=spec.train.batch_size,
        eval_batch_size=spec.train.eval_batch_size,
        optimizer=spec.train.optimizer,
        momentum=spec.train.momentum,
        method=spec.sparsity.method,
        checkpoint_parameters=_checkpoint_parameters(checkpoint_summary),
        processes=spec.train.processes,
        accumulation_steps=spec.train.grad_accumulation_steps,
        # CUDA ranks get a GPU each (the limit is then per GPU); ``auto`` may land on a worker without one.
        per_device=spec.train.device.startswith("cuda"),
    )


def benchmark_memory(
    architecture: str,
    args: Mapping[str, Any],
    input_shape: Sequence[int] | None,
    batch_sizes: Sequence[int],
    checkpoint_summary: Mapping[str, Any] | None = None,
) -> MemoryEstimate:
    """Peak memory of a benchmark job measuring ``architecture`` at its largest batch size."""
    shape = model_shape(architecture, args, input_shape)
    return inference_memory(
        shape, batch_sizes=batch_sizes, checkpoint_parameters=_checkpoint_parameters(checkpoint_summary)
    )


def _checkpoint_parameters(summary: Mapping[str, Any] | None) -> int:
    count = (summary or {}).get("parameter_count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def over_limit(estimate: MemoryEstimate, limit: int, field: str, advice: str) -> FieldProblem | None:
    """The problem of a job whose estimate exceeds ``limit`` bytes (0: no limit); None when it fits."""
    if limit <= 0 or estimate.total <= limit:
        return None
    return FieldProblem(
        field,
        f"the job would need {estimate.describe()}, over the limit of {format_bytes(limit)} "
        f"({limit} bytes, {LIMIT_SETTING}); {advice}",
    )


TRAINING_ADVICE = (
    "use a smaller model (model.args), a smaller train.batch_size or more train.grad_accumulation_steps"
)
MULTIPROCESS_ADVICE = (
    "use a smaller model (model.args), a smaller train.batch_size, more train.grad_accumulation_steps "
    "or fewer train.processes"
)


def training_advice(spec: JobSpec) -> str:
    """What to change in a training job over the limit (every CPU process holds a copy of the model)."""
    return MULTIPROCESS_ADVICE if spec.train.processes > 1 else TRAINING_ADVICE


BENCHMARK_ADVICE = "use smaller benchmark.batch_sizes or a smaller model"


def stored_job_memory(session: Session, job: Job) -> MemoryEstimate | None:
    """The estimate of a stored job (what the worker quotes when an allocation fails); None when its
    spec no longer parses or names what no longer exists."""
    try:
        if job.kind == BENCHMARK_KIND:
            return _stored_benchmark_memory(session, parse_benchmark_spec(job.spec))
        spec = parse_spec(job.spec)
    except SpecError:
        return None
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    checkpoint = session.get(Checkpoint, job.checkpoint_id) if job.checkpoint_id else None
    model = (
        session.get(HFModel, spec.model.path)
        if spec.model.source == "huggingface" and spec.model.path
        else None
    )
    return job_memory(
        spec,
        dataset.summary if dataset else None,
        checkpoint.summary if checkpoint else None,
        model.summary if model else None,
    )


def _stored_benchmark_memory(session: Session, spec: BenchmarkJobSpec) -> MemoryEstimate | None:
    source = spec.source
    batch_sizes = spec.benchmark.batch_sizes
    if source.checkpoint_id is not None and source.architecture is not None:
        checkpoint = session.get(Checkpoint, source.checkpoint_id)
        return benchmark_memory(
            source.architecture,
            source.args or {},
            source.input_shape,
            batch_sizes,
            checkpoint.summary if checkpoint else None,
        )
    measured = session.get(Job, source.job_id) if source.job_id else None
    return trained_model_memory(session, measured, batch_sizes)


def trained_model_memory(
    session: Session, job: Job | None, batch_sizes: Sequence[int]
) -> MemoryEstimate | None:
    """The benchmark estimate for the exported model of sparsification ``job``."""
    if job is None:
        return None
    try:
        spec = parse_spec(job.spec)
    except SpecError:
        return None
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    summary = dataset.summary if dataset else None
    model = (
        session.get(HFModel, spec.model.path)
        if spec.model.source == "huggingface" and spec.model.path
        else None
    )
    return inference_memory(
        _model_shape(spec, summary, model.summary if model else None), batch_sizes=batch_sizes
    )


__all__ = [
    "BENCHMARK_ADVICE",
    "LIMIT_SETTING",
    "MULTIPROCESS_ADVICE",
    "TRAINING_ADVICE",
    "benchmark_memory",
    "data_shape",
    "job_memory",
    "over_limit",
    "stored_job_memory",
    "trained_model_memory",
    "training_advice",
    "upload_input_shape",
]
