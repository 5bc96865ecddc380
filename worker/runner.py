"""From a validated :class:`jobs.spec.JobSpec` to an engine run: the one mapping the CLI and the workers share.

``to_run_config`` maps every spec field onto ``lbc_core``'s frozen dataclasses; ``run_spec`` runs it. Engine
errors that mean "this job cannot run as specified" (bad data, a checkpoint that does not fit, a layer pattern
that matches nothing, no CUDA on this machine) come out as :class:`JobInputError`, which retrying cannot fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from jobs.spec import DatasetSpec, JobSpec, ModelSpec, SparsitySpec, TrainSpec, dump_spec
from lbc_core.data import DataConfig, SyntheticSpec
from lbc_core.pipeline import ExportConfig, ModelConfig, RunConfig, RunResult, run
from lbc_core.sparsity import LayerPolicy, NMPattern, RemovalSchedule, SparsifierStateError, SparsityConfig
from lbc_core.training import TrainConfig, TrainingCallback
from lbc_core.training.distributed import SingleProcess

T = TypeVar("T")


class JobInputError(ValueError):
    """The engine rejected the job as specified; ``error_type`` names the engine's own exception class."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def model_config(spec: ModelSpec) -> ModelConfig:
    return ModelConfig(
        architecture=spec.architecture or "",
        args=dict(spec.args),
        checkpoint=spec.checkpoint,
        source=spec.source,
        path=spec.path,
    )


def data_config(spec: DatasetSpec) -> DataConfig:
    synthetic = spec.synthetic_or_default
    return DataConfig(
        source=spec.source,
        path=spec.path,
        val_fraction=spec.val_fraction,
        val_size=spec.val_size,
        val_path=spec.val_path,
        split=spec.split,
        image_size=spec.image_size,
        augment=spec.augment,
        hflip=spec.hflip,
        seed=spec.seed,
        limit=spec.limit,
        synthetic=SyntheticSpec(
            num_samples=synthetic.num_samples,
            input_shape=tuple(synthetic.input_shape),
            num_classes=synthetic.num_classes,
            noise=synthetic.noise,
        ),
        # None in the spec: the engine's defaults (DataConfig) apply.
        **{
            name: getattr(spec, name)
            for name in ("block_size", "max_length")
            if getattr(spec, name) is not None
        },
        tokenizer=spec.tokenizer,
    )


def sparsity_config(spec: SparsitySpec, t_f: float) -> SparsityConfig:
    layers, schedule = spec.layers, spec.schedule
    config = SparsityConfig(
        method=spec.method,
        pattern=NMPattern(spec.n, spec.m),
        layers=LayerPolicy(
            include=tuple(layers.include),
            exclude=tuple(layers.exclude),
            keep_stem_dense=layers.keep_stem_dense,
            keep_classifier_dense=layers.keep_classifier_dense,
        ),
        schedule=RemovalSchedule(t_i=schedule.t_i, t_f=t_f, power=schedule.power, per_step=schedule.per_step),
        # None: the pipeline makes the LBC scores follow the weights' optimizer.
        score_optimizer=None,
        srste_decay=spec.srste_lambda,
        score_init=spec.score_init,
        prior_strength=spec.prior_strength,
    )
    # Omitted in the spec: the engine's default applies (one place holds it).
    if spec.calibration_samples is not None:
        config = replace(config, calibration_samples=spec.calibration_samples)
    return config


def train_config(spec: TrainSpec) -> TrainConfig:
    return TrainConfig(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        optimizer=spec.optimizer,
        lr=spec.lr,
        momentum=spec.momentum,
        nesterov=spec.nesterov,
        weight_decay=spec.weight_decay,
        betas=(spec.betas[0], spec.betas[1]),
        lr_schedule=spec.lr_schedule,
        warmup_epochs=spec.warmup_epochs,
        min_lr=spec.min_lr,
        step_milestones=tuple(spec.step_milestones),
        step_gamma=spec.step_gamma,
        label_smoothing=spec.label_smoothing,
        grad_clip_norm=spec.grad_clip_norm,
        seed=spec.seed,
        device=spec.device,
        eval_batch_size=spec.eval_batch_size,
        drop_last=spec.drop_last,
        precision=spec.precision,
        grad_accumulation_steps=spec.grad_accumulation_steps,
        processes=spec.processes,
        sync_batchnorm=spec.sync_batchnorm,
    )


def to_run_config(spec: JobSpec) -> RunConfig:
    """The engine configuration of ``spec`` (``benchmark`` and ``limits`` are not part of a training run).

    The spec has already been validated; an engine constructor that still objects raises JobInputError
    naming the section.
    """
    return RunConfig(
        model=_build("model", lambda: model_config(spec.model)),
        data=_build("dataset", lambda: data_config(spec.dataset)),
        sparsity=_build("sparsity", lambda: sparsity_config(spec.sparsity, spec.effective_t_f())),
        train=_build("train", lambda: train_config(spec.train)),
        task=spec.task,
        export=ExportConfig(onnx=spec.export.onnx),
    )


def _build(section: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except ValueError as exc:  # DatasetError, PatternError and the dataclasses' own checks
        raise JobInputError(f"{section}: {exc}", type(exc).__name__) from exc


def run_spec(
    spec: JobSpec,
    out_dir: str | os.PathLike[str],
    callbacks: Sequence[TrainingCallback] = (),
    resume: bool = True,
    *,
    scratch_dir: str | os.PathLike[str] | None = None,
    parallel: SingleProcess | None = None,
) -> RunResult:
    """Train, finalize and export ``spec`` into ``out_dir``; continues from its checkpoint when ``resume``.

    Returns the engine's RunResult (status ``stopped`` when a callback asked to stop: the checkpoint is
    written and the same call resumes). Raises JobInputError for input the engine rejects.
    """
    config = to_run_config(spec)
    try:
        return run(
            config,
            out_dir,
            callbacks=callbacks,
            resume=resume,
            scratch_dir=scratch_dir,
            extra_manifest={"spec": dump_spec(spec)},
            parallel=parallel,
        )
    except (ValueError, SparsifierStateError) as exc:
        # The engine's input errors are ValueErrors (DatasetError, PatternError, LayerSelectionError, RunError,
        # CheckpointError, UnknownArchitectureError, "CUDA is not available", ...); SparsifierStateError is a
        # training checkpoint written by another method or pattern.
        raise JobInputError(str(exc), type(exc).__name__) from exc


__all__ = [
    "JobInputError",
    "data_config",
    "model_config",
    "run_spec",
    "sparsity_config",
    "to_run_config",
    "train_config",
]
