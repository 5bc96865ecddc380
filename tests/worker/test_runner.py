"""A job spec maps field by field onto the engine's configuration, and runs end to end."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from jobs.spec import JobSpec, parse_spec
from lbc_core.data import DataConfig, SyntheticSpec
from lbc_core.pipeline import ExportConfig
from lbc_core.sparsity import LayerPolicy, NMPattern, RemovalSchedule, SparsityConfig
from lbc_core.training import StepEvent, TrainConfig, TrainingCallback
from worker.runner import JobInputError, run_spec, to_run_config

TINY: dict[str, Any] = {
    "model": {"architecture": "lenet5"},
    "dataset": {"source": "digits", "limit": 300},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu"},
}


def spec_of(**sections: dict[str, Any]) -> JobSpec:
    data = json.loads(json.dumps(TINY))
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_spec(data)


# -- mapping ------------------------------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "name": "everything set",
    "model": {
        "architecture": "lenet5",
        "args": {"width": 0.5, "num_classes": 12},
        "checkpoint": "w.safetensors",
    },
    "dataset": {
        "source": "mnist",
        "path": "data/mnist",
        "split": "t10k",
        "val_fraction": 0.3,
        "val_size": 2000,
        "val_path": "data/mnist-val",
        "augment": True,
        "hflip": True,
        "seed": 7,
        "limit": 5000,
    },
    "sparsity": {
        "method": "srste",
        "n": 1,
        "m": 8,
        "srste_lambda": 1e-3,
        "schedule": {"t_i": 1, "t_f": 6, "power": 2, "per_step": True},
        "layers": {
            "include": ["conv*", "fc1"],
            "exclude": ["fc2"],
            "keep_stem_dense": False,
            "keep_classifier_dense": False,
        },
    },
    "train": {
        "epochs": 12,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 0.003,
        "momentum": 0.8,
        "nesterov": True,
        "weight_decay": 0.01,
        "betas": [0.8, 0.99],
        "lr_schedule": "step",
        "warmup_epochs": 1.5,
        "min_lr": 0.0001,
        "step_milestones": [0.3, 0.6],
        "step_gamma": 0.5,
        "label_smoothing": 0.1,
        "grad_clip_norm": 2.0,
        "seed": 3,
        "device": "cuda:1",
        "eval_batch_size": 256,
        "drop_last": True,
        "precision": "fp16",
        "grad_accumulation_steps": 4,
    },
}


def _engine_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def test_model_section_maps_to_model_config() -> None:
    config = to_run_config(parse_spec(FULL))
    assert config.model.architecture == "lenet5"
    assert dict(config.model.args) == {"width": 0.5, "num_classes": 12}
    assert config.model.checkpoint == "w.safetensors"


def test_dataset_section_maps_field_by_field() -> None:
    spec = parse_spec(FULL)
    data = to_run_config(spec).data
    assert isinstance(data, DataConfig)
    for name in type(spec.dataset).model_fields:
        if name not in ("synthetic", "block_size", "max_length"):  # text sizes: see the test below
            assert getattr(data, name) == getattr(spec.dataset, name), name
    assert data.val_size == 2000 and data.split == "t10k"


def test_text_fields_and_the_task_map_onto_the_engine_with_its_defaults_where_omitted() -> None:
    # A text task needs a model that reads tokens: a Hugging Face model, not a catalog image classifier.
    model = {"source": "huggingface", "path": "models/llama"}
    text_dataset = {"source": "text", "path": "c.txt", "block_size": 64, "tokenizer": "t.json"}
    config = to_run_config(parse_spec({**TINY, "model": model, "dataset": text_dataset}))
    assert (config.task, config.data.block_size, config.data.tokenizer) == ("causal-lm", 64, "t.json")
    labeled_dataset = {"source": "labeled-text", "path": "t.csv"}
    labeled = to_run_config(parse_spec({**TINY, "model": model, "dataset": labeled_dataset}))
    assert (labeled.task, labeled.data.max_length, labeled.data.tokenizer) == (
        "sequence-classification",
        128,
        None,
    )
    assert to_run_config(parse_spec(FULL)).task == "image-classification"


def test_synthetic_parameters_are_passed_through() -> None:
    spec = parse_spec(
        {
            "model": {"architecture": "vit"},
            "dataset": {
                "source": "synthetic",
                "synthetic": {"num_samples": 300, "input_shape": [3, 16, 16], "num_classes": 4, "noise": 0.2},
            },
        }
    )
    assert to_run_config(spec).data.synthetic == SyntheticSpec(300, (3, 16, 16), 4, 0.2)
    default = to_run_config(parse_spec({**TINY, "dataset": {"source": "synthetic"}})).data
    assert default.synthetic == SyntheticSpec()


def test_sparsity_section_maps_to_pattern_schedule_and_layers() -> None:
    sparsity = to_run_config(parse_spec(FULL)).sparsity
    assert sparsity.method == "srste"
    assert sparsity.pattern == NMPattern(1, 8)
    assert sparsity.srste_decay == 1e-3
    assert sparsity.schedule == RemovalSchedule(t_i=1, t_f=6, power=2, per_step=True)
    assert sparsity.layers == LayerPolicy(
        include=("conv*", "fc1"), exclude=("fc2",), keep_stem_dense=False, keep_classifier_dense=False
    )
    assert sparsity.score_optimizer is None  # the pipeline makes scores follow the training optimizer


def test_score_init_and_calibration_samples_map_onto_the_engine_and_default_there() -> None:
    prior = to_run_config(
        spec_of(sparsity={"score_init": "wanda", "calibration_samples": 32, "prior_strength": 0.01})
    ).sparsity
    assert prior.score_init == "wanda" and prior.calibration_samples == 32 and prior.prior_strength == 0.01
    wanda = to_run_config(spec_of(sparsity={"method": "wanda"})).sparsity
    assert wanda.method == "wanda" and wanda.score_init == "uniform"
    assert wanda.calibration_samples == SparsityConfig().calibration_samples  # omitted: the engine's default


def test_t_f_defaults_to_half_the_epochs() -> None:
    spec = spec_of(train={"epochs": 9})
    assert to_run_config(spec).sparsity.schedule.t_f == 4.5


def test_train_section_maps_every_field() -> None:
    spec = parse_spec(FULL)
    train = to_run_config(spec).train
    assert isinstance(train, TrainConfig)
    assert set(type(spec.train).model_fields) == {f.name for f in fields(TrainConfig)}
    for name in type(spec.train).model_fields:
        assert getattr(train, name) == _engine_value(getattr(spec.train, name)), name


def test_export_section_maps_every_field() -> None:
    assert to_run_config(spec_of(export={"onnx": True})).export.onnx is True
    default = parse_spec(TINY)
    assert to_run_config(default).export.onnx is False  # opt-in: an export costs time and needs the extra
    assert set(type(default.export).model_fields) == {f.name for f in fields(ExportConfig)}


def test_every_spec_default_is_valid_for_the_engine() -> None:
    config = to_run_config(
        parse_spec({"model": {"architecture": "resnet20"}, "dataset": {"source": "synthetic"}})
    )
    assert config.train.epochs == 10 and config.sparsity.schedule.t_f == 5


# -- running ------------------------------------------------------------------------------------------------


def test_tiny_run_trains_and_exports(tmp_path: Path) -> None:
    result = run_spec(spec_of(dataset={"augment": True}), tmp_path)
    assert result.status == "succeeded"
    assert len(result.history) == 2 and "alive_per_group" in result.history[-1]
    assert result.summary["verified_nm"] is True
    assert result.summary["pattern"] == "2:4"
    for name in ("model.safetensors", "masks.safetensors", "model.nm.safetensors", "manifest.json"):
        assert (tmp_path / "export" / name).is_file(), name
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "summary.json").is_file()
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["extra"]["spec"]["dataset"]["augment"] is True  # the job spec travels with the model


class StopAfter(TrainingCallback):
    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.seen = 0

    def on_step(self, event: StepEvent) -> None:
        self.seen += 1

    def should_stop(self) -> bool:
        return self.seen >= self.steps


def test_stopped_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    spec = spec_of()
    stopped = run_spec(spec, tmp_path, callbacks=[StopAfter(5)])
    assert stopped.status == "stopped" and stopped.summary["global_step"] == 5
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    finished = run_spec(spec, tmp_path)
    assert finished.status == "succeeded"
    assert finished.summary["resumed_from"]["global_step"] == 5
    assert json.loads((tmp_path / "metrics.json").read_text())["resumed_from"]["global_step"] == 5


@pytest.mark.parametrize(
    ("sections", "error_type", "fragment"),
    [
        ({"sparsity": {"layers": {"include": ["no_such_layer*"]}}}, "LayerSelectionError", "no_such_layer"),
        (
            {"dataset": {"source": "mnist", "path": "/nonexistent/mnist", "limit": None}},
            "DatasetError",
            "exist",
        ),
        (
            {"model": {"architecture": "lenet5", "checkpoint": "/nonexistent/w.safetensors"}},
            "",
            "w.safetensors",
        ),
    ],
)
def test_engine_input_errors_surface_as_job_input_errors(
    tmp_path: Path, sections: dict[str, Any], error_type: str, fragment: str
) -> None:
    with pytest.raises(JobInputError) as info:
        run_spec(spec_of(**sections), tmp_path)
    assert fragment in str(info.value)
    assert info.value.error_type.endswith(error_type)
