"""One sparsification run end to end: data -> model -> sparsifier -> training -> verified exports.

Used by the local CLI and by the service's workers. A run writes its training checkpoint under
``out_dir/checkpoints`` every epoch and resumes from it when started again with the same output
directory, so an interrupted run continues instead of starting over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lbc_catalog.data_rules import tokenizer_in_use
from lbc_catalog.tasks import IMAGE_CLASSIFICATION, TEXT_SOURCES
from lbc_core.data import DataBundle, DataConfig, load_data
from lbc_core.export import ExportResult, export_all
from lbc_core.export.onnx_export import OnnxInputs
from lbc_core.models.probe import probe_forward
from lbc_core.models.source import (
    CATALOG,
    HUGGINGFACE,
    SOURCES,
    CatalogSource,
    DataFacts,
    ModelSource,
    ModelSourceError,
)
from lbc_core.sparsity import ScoreOptimizer, SparsityConfig, build_sparsifier
from lbc_core.tasks import DEFAULT_TASK, Task, get_task
from lbc_core.training import (
    TrainConfig,
    Trainer,
    TrainingCallback,
    evaluate,
    resume_point,
)
from lbc_core.training.distributed import SingleProcess

CHECKPOINT_NAME = "checkpoints/last.pt"
METRICS_NAME = "metrics.json"
# The sparse model in the user's own format (a Hugging Face source's save_pretrained directory), in export/.


class RunError(ValueError):
    """A run that cannot start as configured (e.g. a checkpoint that does not fit the model)."""


@dataclass(frozen=True)
class ModelConfig:
    """Where the model comes from.

    ``source="catalog"``: a built-in ``architecture`` with ``args`` (``num_classes``/``in_channels`` default
    to what the data says) and optional dense starting weights in ``checkpoint`` (safetensors or a torch
    state dict). ``source="huggingface"``: ``path`` is a local Hugging Face model directory.
    """

    architecture: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    source: str = CATALOG
    path: str | None = None


def model_source(config: ModelConfig, task: str = IMAGE_CLASSIFICATION) -> ModelSource:
    """The source that builds ``config``'s model for ``task``."""
    if config.source == CATALOG:
        return CatalogSource(config.architecture, config.args, config.checkpoint)
    if config.source == HUGGINGFACE:
        if not config.path:
            raise RunError("model.path must name a Hugging Face model directory")
        from lbc_core.models.huggingface import HuggingFaceSource

        return HuggingFaceSource(config.path, task)
    raise RunError(f"unknown model source {config.source!r}; known: {', '.join(SOURCES)}")


@dataclass(frozen=True)
class ExportConfig:
    """Export formats besides the safetensors files and manifest every run writes."""

    onnx: bool = False  # model.onnx + model.fp16.onnx for TensorRT (needs the onnx extra)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data: DataConfig
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: str = DEFAULT_TASK  # see lbc_core.tasks.TASK_NAMES
    export: ExportConfig = field(default_factory=ExportConfig)


@dataclass(frozen=True)
class RunResult:
    status: str  # "succeeded" | "stopped"
    out_dir: Path
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    exports: ExportResult | None = None


def data_facts(data: DataBundle) -> DataFacts:
    return DataFacts(data.num_classes, tuple(data.input_shape), data.vocab_size)


def model_arguments(config: ModelConfig, data: DataBundle) -> dict[str, Any]:
    """Catalog architecture arguments with the data's class count and input shape filled in."""
    try:
        return CatalogSource(config.architecture, config.args).arguments(data_facts(data))
    except ModelSourceError as exc:
        raise RunError(str(exc)) from exc


def score_optimizer_for(train: TrainConfig) -> ScoreOptimizer:
    """Scores follow the weights' optimizer, as in the LBC authors' runs."""
    if train.optimizer == "adamw":
        return ScoreOptimizer(kind="adam", momentum=0.0, weight_decay=0.0, betas=train.betas)
    return ScoreOptimizer(
        kind="sgd", momentum=train.momentum, nesterov=train.nesterov, weight_decay=train.weight_decay
    )


def run(
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    callbacks: Sequence[TrainingCallback] = (),
    resume: bool = True,
    scratch_dir: str | os.PathLike[str] | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
    parallel: SingleProcess | None = None,
) -> RunResult:
    """Train, finalize and export. With ``parallel`` (one rank of a multi-process run) only rank 0 writes
    anything; the other ranks train their share and return without exports."""
    parallel = parallel or SingleProcess()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(config.task)
    source = model_source(config.model, config.task)
    data = load_data(_with_models_tokenizer(config.data, source), scratch_dir=scratch_dir)
    if _stop_requested(callbacks):
        return _stopped_before_training(out)

    torch.manual_seed(config.train.seed)
    built = source.build(data_facts(data))
    model = built.model
    if not parallel.rank.is_writer:  # the same initial weights everywhere, other dropout draws
        torch.manual_seed(parallel.seed(config.train.seed))
    # Building a large model takes long and cannot be interrupted: honour a stop asked meanwhile.
    if _stop_requested(callbacks):
        return _stopped_before_training(out)

    sparsity = config.sparsity
    if sparsity.score_optimizer is None:
        sparsity = replace(sparsity, score_optimizer=score_optimizer_for(config.train))
    sparsifier = build_sparsifier(sparsity)
    sparsifier.prepare(model, built.dense_defaults)
    trainer = Trainer(
        model,
        sparsifier,
        config.train,
        data.train,
        data.val,
        callbacks=callbacks,
        augment=data.augment,
        checkpoint_path=out / CHECKPOINT_NAME,
        task=task,
        parallel=parallel,
    )
    example = task.example_batch(data.train).to(trainer.device)
    probe_forward(model, example.inputs, "the data", call=lambda m: task.forward(m, example))
    checkpoint = out / CHECKPOINT_NAME
    resumed_from = None
    if resume and checkpoint.exists():
        trainer.resume(checkpoint)
        resumed_from = resume_point(trainer.epoch, trainer.step, trainer.global_step)
    # After resume: a resumed sparsifier restored its calibrated state and is not recalibrated.
    if sparsifier.needs_calibration:
        sparsifier.calibrate(
            task.calibration_forward(
                model,
                data.train,
                sparsity.calibration_samples,
                batch_size=config.train.eval_batch_size,
                seed=config.train.seed,
                device=trainer.device,
            )
        )
    outcome = trainer.fit()
    if not parallel.rank.is_writer:
        return RunResult(outcome.status, out, outcome.history, {})
    lr_record = _learning_rate_record(config.train)
    _write_json(out / METRICS_NAME, {"history": outcome.history, "resumed_from": resumed_from, **lr_record})
    if outcome.status == "stopped":
        position = {"epoch": outcome.epoch, "step": outcome.step, "global_step": outcome.global_step}
        return RunResult("stopped", out, outcome.history, dict(position))

    report = sparsifier.finalize()
    final = evaluate(model, data.val, config.train.eval_batch_size, trainer.device, task)
    warnings = [
        warning.to_dict()
        for warning in task.learning_warnings(outcome.history, final, config.train, data.val)
    ]
    primary = task.primary_metric
    primary_record = {"name": primary.key, "higher_is_better": primary.higher_is_better}
    metrics = {
        **{f"val_{key}": value for key, value in final.items()},
        "task": task.name,
        "primary_metric": primary_record,
        "measured_with": "exported model (exact N:M masks, parametrization removed)",
        "epochs": config.train.epochs,
        **lr_record,
        "warnings": warnings,
        "history": outcome.history,
    }
    data_info = {
        "source": config.data.source,
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "train_size": task.size(data.train),
        "val_size": task.size(data.val),
        "mean": list(data.mean),
        "std": list(data.std),
        **({"vocab_size": data.vocab_size, "tokenizer": data.tokenizer} if data.vocab_size else {}),
        **task.data_info(data.train),
    }
    exports = export_all(
        model.cpu(),
        report,
        out / "export",
        architecture=built.record["name"],
        architecture_args=dict(built.record["args"]),
        source_record=built.record,
        metrics=metrics,
        data=data_info,
        pattern=config.sparsity.pattern,
        extra={
            "config": _jsonable(asdict(replace(config, sparsity=sparsity))),
            # Per-weight scores equal LBC's combination scores exactly only for SGD-family optimizers.
            "score_optimizer_exact": bool(sparsity.score_optimizer and sparsity.score_optimizer.exact),
            # Tensors the user's weights lacked and the source initialised (a new classification head).
            "fresh_tensors": list(built.fresh),
            **(extra_manifest or {}),
        },
        onnx=_onnx_inputs(task, data, model) if config.export.onnx else None,
        user_format=(lambda target: source.save(model, target)) if source.writes_user_format else None,
    )
    summary = {
        primary.key: final[primary.name],
        "task": task.name,
        "primary_metric": primary_record,
        "density": report.nonzero_params / max(report.dense_params, 1),
        "verified_nm": report.all_verified,
        "sparsified_layers": len(report.layers),
        "skipped_layers": len(report.skipped),
        "method": config.sparsity.method,
        "pattern": str(config.sparsity.pattern),
        "resumed_from": resumed_from,
        **lr_record,
        # A run that did not learn still succeeded (it ran); the warning says so and what to change.
        "warnings": warnings,
    }
    if "onnx" in exports.manifest:
        summary["onnx"] = onnx_summary(exports.manifest["onnx"])
    if built.fresh:  # the user's weights lacked these: a new head, trained from its initialisation
        summary["fresh_tensors"] = list(built.fresh)
    _write_json(out / "summary.json", summary)
    return RunResult("succeeded", out, outcome.history, summary, exports)


def _onnx_inputs(task: Task, data: DataBundle, model: nn.Module) -> OnnxInputs:
    """Two validation samples as the task feeds them to the model (normalised images positionally, token
    ids and masks by keyword): two, so the batch axis stays free.

    Inputs the exporter cannot use surface from export_all as a recorded ONNX failure, not here.
    """
    args, kwargs = task.model_inputs(task.example_batch(data.val, n=2))
    if not kwargs:
        return OnnxInputs.positional(*args)
    # A language model's key/value cache is an object, not a tensor the graph could return.
    caches = getattr(getattr(model, "config", None), "use_cache", None) is not None
    return OnnxInputs.by_keyword(kwargs, options={"use_cache": False} if caches else None)


def onnx_summary(section: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``onnx`` section in brief: each file's status, or why nothing was exported."""
    if section.get("status") != "exported":
        return {"status": section.get("status"), "reason": section.get("reason")}
    files = {variant["file"]: variant["status"] for variant in section.get("variants", [])}
    reasons = {v["file"]: v["reason"] for v in section.get("variants", []) if v.get("reason")}
    return {"status": "exported", "files": files, **({"reasons": reasons} if reasons else {})}


def _with_models_tokenizer(data: DataConfig, source: ModelSource) -> DataConfig:
    """Text is tokenized with the model's own tokenizer.json when the data names none: token ids mean
    something only in the vocabulary the model was trained with."""
    if data.source not in TEXT_SOURCES:
        return data
    own = source.tokenizer_file()
    return replace(data, tokenizer=tokenizer_in_use(data.tokenizer, str(own) if own is not None else None))


def _stop_requested(callbacks: Sequence[TrainingCallback]) -> bool:
    return any(callback.should_stop() for callback in callbacks)


def _stopped_before_training(out: Path) -> RunResult:
    """A stop asked before the first step: nothing new to save (a resumable checkpoint stays as it was)."""
    return RunResult("stopped", out, [], {"epoch": 0, "step": 0, "global_step": 0})


def _learning_rate_record(train: TrainConfig) -> dict[str, Any]:
    """The learning rate the run used and where it came from (given, or the batch-scaled default)."""
    return {"lr": train.peak_lr, "lr_rule": train.lr_rule, "warmup_epochs": train.warmup_epochs}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2))
    os.replace(tmp, path)
