"""The job spec accepts what the engine can run and rejects everything else up front, naming the field."""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from jobs.catalog import architecture_names
from jobs.spec import (
    JobSpec,
    SparsitySpec,
    SpecError,
    TrainSpec,
    dump_spec,
    format_path,
    json_schema,
    layer_pattern_problems,
    load_spec,
    parse_spec,
    render_field_docs,
)
from lbc_catalog.tasks import (
    CAUSAL_LM,
    IMAGE_CLASSIFICATION,
    MODEL_SOURCES,
    TASKS,
    default_recipe,
    task_model_problem,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

MINIMAL: dict[str, Any] = {"model": {"architecture": "lenet5"}, "dataset": {"source": "digits"}}
MNIST = {"source": "mnist", "path": "data/mnist"}
TEXT: dict[str, Any] = {
    "model": {"source": "huggingface", "path": "models/llama"},
    "dataset": {"source": "text", "path": "corpus.txt"},
}
LABELED: dict[str, Any] = {
    "model": {"source": "huggingface", "path": "models/llama"},
    "dataset": {"source": "labeled-text", "path": "t.csv"},
}


def with_fields(base: dict[str, Any] | None = None, **dotted: Any) -> dict[str, Any]:
    """A copy of ``base`` (default MINIMAL) with ``section__field=value`` overrides applied."""
    data = copy.deepcopy(base if base is not None else MINIMAL)
    for key, value in dotted.items():
        *parents, leaf = key.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def problems(data: Any) -> list[str]:
    try:
        parse_spec(data)
    except SpecError as exc:
        return [str(p) for p in exc.problems]
    return []


def assert_rejected(data: Any, path: str, fragment: str = "") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    lines = [str(p) for p in info.value.problems]
    assert any(line.startswith(f"{path}: ") and fragment in line for line in lines), lines
    assert f"{path}: " in str(info.value)
    return info.value


# -- every field: good values accepted, bad values rejected with the field's path ---------------------------

# (dotted path, base spec or None for MINIMAL, accepted values, rejected values)
# A Hugging Face model directory instead of a catalog architecture.
HF_MODEL: dict[str, Any] = {
    "model": {"source": "huggingface", "path": "./my-llama"},
    "dataset": {"source": "digits"},
}

FIELD_CASES: list[tuple[str, dict[str, Any] | None, list[Any], list[Any]]] = [
    ("name", None, ["run 1", "x" * 200, None], ["", "x" * 201, 3]),
    ("model.architecture", None, architecture_names(), ["lenet6", "", 5, None]),
    ("model.checkpoint", None, ["dense.safetensors", None], ["", 7]),
    ("model.source", None, ["catalog"], ["hub", "", 3, None]),
    ("model.path", HF_MODEL, ["./my-llama", "5d1e2c3b4a5f6e7d8c9b0a1f2e3d4c5b"], ["", None, 3]),
    ("dataset.source", None, ["digits", "synthetic"], ["imagenet", "", None, 1]),
    ("dataset.val_fraction", None, [0.01, 0.5, 0.99], [0, 0.0, 1, 1.0, -0.1, "0.2", True]),
    ("dataset.val_size", None, [1, 500, None], [0, -3, 1.5, "10"]),
    ("dataset.augment", None, [True, False], ["yes", 1]),
    ("dataset.hflip", with_fields(dataset__augment=True), [True, False], ["yes", 1, None]),
    ("dataset.seed", None, [0, 2**32 - 1], [-1, 2**32, 0.5]),
    ("dataset.limit", None, [2, 1000, None], [1, 0, -5, 2.5]),
    ("dataset.path", {"model": MINIMAL["model"], "dataset": dict(MNIST)}, ["x", "/abs/dir"], ["", None, 3]),
    ("dataset.val_path", {"model": MINIMAL["model"], "dataset": dict(MNIST)}, ["val", None], ["", 3]),
    (
        "dataset.split",
        {"model": MINIMAL["model"], "dataset": dict(MNIST)},
        ["t10k", "train", None],
        ["", "a/b", 3],
    ),
    (
        "dataset.image_size",
        {"model": MINIMAL["model"], "dataset": {"source": "imagefolder", "path": "imgs"}},
        [1, 224, 4096, None],
        [0, 4097, 2.0],
    ),
    (
        "dataset.synthetic.num_samples",
        with_fields(dataset__source="synthetic"),
        [2, 5000],
        [1, 0, 10**8, 3.5],
    ),
    (
        "dataset.synthetic.input_shape",
        with_fields(dataset__source="synthetic", model__architecture="mlp"),  # takes flat samples too
        [[1, 8, 8], [3, 32, 32], [64]],
        [[], [1, 8], [1, 2, 3, 4], [0, 8, 8], [1, 8, 5000], "1x8x8"],
    ),
    ("dataset.synthetic.num_classes", with_fields(dataset__source="synthetic"), [2, 10], [1, 0, 10**6]),
    ("dataset.synthetic.noise", with_fields(dataset__source="synthetic"), [0, 0.5, 100], [-0.1, 101, "x"]),
    ("task", None, ["image-classification"], ["speech", "", None, 3, ["causal-lm"], {"a": 1}]),
    ("dataset.block_size", {**TEXT, "task": "causal-lm"}, [2, 128, 65_536, None], [1, 0, 65_537, 2.5, "64"]),
    ("dataset.max_length", {**LABELED, "task": "sequence-classification"}, [1, 512, None], [0, 65_537, "8"]),
    ("dataset.tokenizer", dict(TEXT), ["tokenizer.json", "models/gpt", None], ["", 3]),
    ("sparsity.method", None, ["lbc", "srste", "asp", "wanda", "dense"], ["LBC", "magnitude", "", None]),
    ("sparsity.score_init", None, ["uniform", "magnitude", "wanda"], ["Wanda", "random", "", None]),
    (
        "sparsity.prior_strength",
        with_fields(sparsity__score_init="magnitude"),
        [0.001, 1, 1000],
        [0, -1, 1001, "1", None],
    ),
    (
        "sparsity.calibration_samples",
        with_fields(sparsity__method="wanda"),
        [1, 128, 65_536, None],
        [0, -1, 65_537, 1.5, "128"],
    ),
    ("sparsity.n", with_fields(sparsity__m=16), [1, 2, 15], [0, -1, 16, 2.5, "2"]),
    ("sparsity.m", with_fields(sparsity__n=1), [2, 4, 8, 16], [1, 0, 17, 32, 4.0]),
    ("sparsity.srste_lambda", None, [0, 2e-4, 1], [-1e-4, 2, None]),
    ("sparsity.schedule.t_i", with_fields(sparsity__schedule__t_f=10), [0, 3.5, 9.9], [-1, "0", None]),
    ("sparsity.schedule.t_f", None, [0.5, 5, 10, None], [0, -1, 10.5, 11]),
    ("sparsity.schedule.power", None, [0.5, 3, 100], [0, -1, 101]),
    ("sparsity.schedule.per_step", None, [True, False], ["true", None]),
    ("sparsity.layers.include", None, [["*"], ["layer*.conv1", "fc?"]], [[], [""], "*", None, ["x" * 257]]),
    ("sparsity.layers.exclude", None, [[], ["*.fc"]], [[""], "fc", None]),
    ("sparsity.layers.keep_stem_dense", None, [True, False], [None, "no"]),
    ("sparsity.layers.keep_classifier_dense", None, [True, False], [None, 0]),
    ("train.epochs", None, [1, 10, 10_000], [0, -1, 10_001, 2.5, "10", True]),
    ("train.batch_size", None, [1, 128, 65_536], [0, 65_537, 1.5]),
    ("train.optimizer", None, ["sgd", "adamw"], ["adam", "SGD", None]),
    ("train.lr", None, [1e-5, 0.1, 100, None], [0, -0.1, 101, float("nan"), float("inf"), "0.1"]),
    ("train.momentum", None, [0, 0.9, 0.999], [1, 1.5, -0.1]),
    ("train.nesterov", None, [True, False], [None, "true"]),
    ("train.weight_decay", None, [0, 5e-4, 1], [-1e-4, 1.5]),
    ("train.betas", None, [[0.9, 0.999], [0, 0.5]], [[0.9], [0.9, 0.99, 0.9], [1.0, 0.9], "0.9"]),
    ("train.lr_schedule", None, ["cosine", "constant", "step"], ["linear", None]),
    ("train.warmup_epochs", None, [0, 0.5, 9.99], [-1, 10, 11]),
    ("train.min_lr", with_fields(train__lr=0.1), [0, 0.05, 0.1], [-0.1, 0.2]),
    ("train.step_milestones", None, [[], [0.5], [0.3, 0.6, 0.9]], [[0], [1], [1.5], [0.6, 0.3], [0.5, 0.5]]),
    ("train.step_gamma", None, [0.1, 1], [0, 1.5]),
    ("train.label_smoothing", None, [0, 0.1, 0.99], [1, -0.1]),
    ("train.grad_clip_norm", None, [0.5, 10, None], [0, -1]),
    ("train.seed", None, [0, 12345], [-1, 2**32, 1.5]),
    (
        "train.device",
        None,
        ["auto", "cpu", "cuda", "cuda:0", "cuda:12"],
        ["gpu", "cuda:", "cuda:x", "mps", ""],
    ),
    ("train.eval_batch_size", None, [1, 512], [0, 70_000]),
    ("train.drop_last", None, [True, False], [None, "x"]),
    ("train.precision", None, ["fp32", "bf16", "fp16"], ["fp8", "BF16", None]),
    ("train.grad_accumulation_steps", None, [1, 4, 128], [0, -1, 129, 1.5]),
    ("train.processes", with_fields(train__batch_size=64), [1, 2, 64], [0, 65, 1.5, "2", None]),
    ("train.sync_batchnorm", None, [True, False], [None, "yes"]),
    ("benchmark.enabled", None, [True, False], [None, "on"]),
    ("benchmark.device", None, ["cpu", "cuda:1", None], ["tpu", ""]),
    ("benchmark.batch_sizes", None, [[1], [1, 64, 256]], [[], [0], [65_537], [1, 1], list(range(1, 18))]),
    ("benchmark.launch", None, ["eager", "cuda-graph"], ["graph", "EAGER", None]),
    (
        "benchmark.dtypes",
        None,
        [["float16"], ["float32", "bfloat16"]],
        [[], ["int4"], ["float16", "float16"]],
    ),
    ("export.onnx", None, [True, False], [None, "yes", 1]),
    ("limits.time_limit_s", None, [1, 3600, None], [0, -5, 31 * 86_400, 1.5]),
    ("limits.priority", None, [0, 5, 9], [-1, 10, "high"]),
    ("limits.queue", None, ["default", "h100", "gpu-a.1"], ["", "Upper", "-x", "a" * 65, "a b"]),
]


def _set_path(base: dict[str, Any] | None, path: str, value: Any) -> dict[str, Any]:
    return with_fields(base, **{path.replace(".", "__"): value})


def _ids(case: tuple[str, Any, Any, Any]) -> str:
    return case[0]


@pytest.mark.parametrize("case", FIELD_CASES, ids=_ids)
def test_field_accepts_good_values(case: tuple[str, dict[str, Any] | None, list[Any], list[Any]]) -> None:
    path, base, good, _ = case
    for value in good:
        assert problems(_set_path(base, path, value)) == [], (path, value)


@pytest.mark.parametrize("case", FIELD_CASES, ids=_ids)
def test_field_rejects_bad_values_naming_the_field(
    case: tuple[str, dict[str, Any] | None, list[Any], list[Any]],
) -> None:
    path, base, _, bad = case
    for value in bad:
        found = problems(_set_path(base, path, value))
        assert any(line.startswith(f"{path}: ") or line.startswith(f"{path}[") for line in found), (
            value,
            found,
        )


def test_field_cases_cover_every_field_of_the_spec() -> None:
    covered = {case[0] for case in FIELD_CASES} | {"model.args"}  # model.args: see the tests below
    assert set(_leaf_paths(JobSpec)) <= covered, set(_leaf_paths(JobSpec)) - covered


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        nested = _nested_model(info.annotation)
        path = f"{prefix}{name}"
        paths.extend(_leaf_paths(nested, f"{path}.") if nested else [path])
    return paths


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _nested_model(arg)
        if found:
            return found
    return None


# -- model ---------------------------------------------------------------------------------------------------


def test_unknown_architecture_lists_the_valid_choices() -> None:
    error = assert_rejected(with_fields(model__architecture="resnet7"), "model.architecture", "resnet7")
    assert "lenet5" in str(error) and "resnet20" in str(error)


def test_unknown_model_argument_is_rejected_by_name() -> None:
    error = assert_rejected(with_fields(model__args={"widht": 0.5}), "model.args.widht", "unknown argument")
    assert "width" in str(error)  # the accepted names are listed


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"num_classes": 1}, "model.args.num_classes"),
        ({"num_classes": 1_000_000}, "model.args.num_classes"),
        ({"num_classes": 10.0}, "model.args.num_classes"),
        ({"num_classes": True}, "model.args.num_classes"),
        ({"in_channels": 0}, "model.args.in_channels"),
        ({"in_channels": 5000}, "model.args.in_channels"),
        ({"width": 0}, "model.args.width"),
        ({"width": -1.0}, "model.args.width"),
        ({"width": 17}, "model.args.width"),
        ({"width": "wide"}, "model.args.width"),
    ],
)
def test_model_argument_ranges(args: dict[str, Any], path: str) -> None:
    assert_rejected(with_fields(model__args=args), path)


def test_model_arguments_within_range_are_accepted() -> None:
    spec = parse_spec(with_fields(model__args={"num_classes": 12, "in_channels": 1, "width": 0.5}))
    assert spec.model.args == {"num_classes": 12, "in_channels": 1, "width": 0.5}


def test_architecture_specific_arguments() -> None:
    base = {"model": {"architecture": "vit"}, "dataset": {"source": "synthetic"}}
    assert problems(with_fields(base, model__args={"depth": 2, "embed_dim": 64, "num_heads": 2})) == []
    assert_rejected(
        with_fields(base, model__args={"width": 1.0}), "model.args.width", "unknown argument for vit"
    )
    assert_rejected(with_fields(base, model__args={"embed_dim": 64, "num_heads": 3}), "model.args.num_heads")
    assert_rejected(
        with_fields(base, model__args={"image_size": 30, "patch_size": 4}), "model.args.patch_size"
    )
    mlp = {"model": {"architecture": "mlp"}, "dataset": {"source": "digits"}}
    assert problems(with_fields(mlp, model__args={"hidden_sizes": [64, 32]})) == []
    assert_rejected(with_fields(mlp, model__args={"hidden_sizes": []}), "model.args.hidden_sizes")
    assert_rejected(with_fields(mlp, model__args={"hidden_sizes": [64, 0]}), "model.args.hidden_sizes")
    mobilenet = {"model": {"architecture": "mobilenetv2"}, "dataset": {"source": "digits"}}
    assert_rejected(with_fields(mobilenet, model__args={"dropout": 1.0}), "model.args.dropout")


def test_num_classes_smaller_than_the_dataset_is_rejected() -> None:
    assert_rejected(with_fields(model__args={"num_classes": 5}), "model.args.num_classes", "10 classes")
    synthetic = with_fields(dataset__source="synthetic", dataset__synthetic={"num_classes": 20})
    assert_rejected(with_fields(synthetic, model__args={"num_classes": 10}), "model.args.num_classes", "20")


def test_missing_sections_are_named() -> None:
    assert_rejected({"model": {"architecture": "lenet5"}}, "dataset", "required")
    assert_rejected({"dataset": {"source": "digits"}}, "model", "required")
    assert_rejected({"model": {}, "dataset": {"source": "digits"}}, "model.architecture", "required")


# -- unknown fields -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({**MINIMAL, "epochs": 3}, "epochs"),
        (with_fields(model__arch="x"), "model.arch"),
        (with_fields(dataset__valsize=3), "dataset.valsize"),
        (with_fields(sparsity__N=2), "sparsity.N"),
        (with_fields(sparsity__schedule__tf=2), "sparsity.schedule.tf"),
        (with_fields(sparsity__layers__includes=["*"]), "sparsity.layers.includes"),
        (with_fields(train__learning_rate=0.1), "train.learning_rate"),
        (with_fields(benchmark__batch=1), "benchmark.batch"),
        (with_fields(limits__timeout=1), "limits.timeout"),
        (
            with_fields(dataset__source="synthetic", dataset__synthetic={"samples": 3}),
            "dataset.synthetic.samples",
        ),
    ],
)
def test_unknown_fields_are_rejected_by_name(data: dict[str, Any], path: str) -> None:
    assert_rejected(data, path, "unknown field")


def test_unknown_field_message_lists_the_expected_ones() -> None:
    error = assert_rejected(with_fields(train__epoch=3), "train.epoch")
    assert "epochs" in str(error) and "batch_size" in str(error)


# -- sparsity pattern and schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(4, 4), (5, 4), (8, 8)])
def test_n_must_be_smaller_than_m(n: int, m: int) -> None:
    assert_rejected(with_fields(sparsity__n=n, sparsity__m=m), "sparsity.n", "kept per group")


def test_m_above_16_is_rejected() -> None:
    assert_rejected(with_fields(sparsity__n=2, sparsity__m=32), "sparsity.m", "16")


def test_include_patterns_must_name_a_layer_of_the_architecture() -> None:
    spec = parse_spec(with_fields(sparsity__layers__include=["features.*", "layer*.conv1", "classifier.?"]))
    assert [str(p) for p in layer_pattern_problems(spec)] == [
        "sparsity.layers.include[1]: pattern 'layer*.conv1' matches no Linear/Conv2d layer of lenet5; "
        "layers are: features.0, features.3, classifier.1, classifier.3, classifier.5"
    ]
    resnet = with_fields(model__architecture="resnet20", sparsity__layers__include=["layer*.conv1", "fc"])
    assert layer_pattern_problems(parse_spec(resnet)) == []
    long_list = with_fields(model__architecture="resnet56", sparsity__layers__include=["blocks.*"])
    assert str(layer_pattern_problems(parse_spec(long_list))[0]).endswith(" ...")


def test_include_patterns_are_left_to_the_engine_when_the_structure_depends_on_arguments() -> None:
    deeper = with_fields(
        model__architecture="mlp", model__args={"depth": 4}, sparsity__layers__include=["features.6"]
    )
    assert layer_pattern_problems(parse_spec(deeper)) == []


def test_n_description_states_keep_n_semantics() -> None:
    description = SparsitySpec.model_fields["n"].description
    assert description is not None and "KEPT" in description and "2 of every 4" in description


def test_t_f_beyond_the_epochs_is_rejected() -> None:
    data = with_fields(train__epochs=10, sparsity__schedule__t_f=12)
    assert_rejected(data, "sparsity.schedule.t_f", "train.epochs (10)")


def test_t_f_must_follow_t_i() -> None:
    assert_rejected(
        with_fields(sparsity__schedule__t_i=4, sparsity__schedule__t_f=4), "sparsity.schedule.t_f", "t_i"
    )


def test_t_i_must_precede_the_default_t_f() -> None:
    assert_rejected(
        with_fields(train__epochs=10, sparsity__schedule__t_i=5), "sparsity.schedule.t_i", "epochs / 2"
    )


def test_t_f_defaults_to_half_the_epochs() -> None:
    spec = parse_spec(with_fields(train__epochs=7))
    assert spec.sparsity.schedule.t_f is None
    assert spec.effective_t_f() == 3.5
    assert parse_spec(with_fields(sparsity__schedule__t_f=2)).effective_t_f() == 2


def test_lr_defaults_to_the_engine_rule_which_the_field_documents() -> None:
    from lbc_core.training import REFERENCE_BATCH_SIZE, REFERENCE_LR, default_lr_rule

    assert parse_spec(with_fields()).train.lr is None  # the engine derives it from batch_size
    description = TrainSpec.model_fields["lr"].description or ""
    # jobs cannot import the engine, so its description repeats the rule: it must say what the engine does.
    for optimizer in REFERENCE_LR:
        assert f"{optimizer} {default_lr_rule(optimizer)}" in description
    assert f"batch size of {REFERENCE_BATCH_SIZE}" in description
    assert "used as given" in description
    assert "lr_rule" in render_field_docs()


def test_warmup_must_be_shorter_than_training() -> None:
    assert_rejected(with_fields(train__epochs=3, train__warmup_epochs=3), "train.warmup_epochs", "epochs (3)")


def test_every_process_of_a_job_needs_a_share_of_each_batch_and_sync_batchnorm_needs_gpus() -> None:
    assert_rejected(with_fields(train__batch_size=4, train__processes=8), "train.processes", "batch_size (4)")
    assert_rejected(
        with_fields(train__device="cpu", train__processes=2, train__sync_batchnorm=True),
        "train.sync_batchnorm",
        "needs CUDA",
    )


def test_train_cross_field_checks() -> None:
    assert_rejected(with_fields(train__lr=0.01, train__min_lr=0.1), "train.min_lr")
    # The default lr depends on the batch size: a floor needs the lr it sits under.
    assert_rejected(with_fields(train__min_lr=0.001), "train.min_lr", "needs an explicit lr")
    assert_rejected(with_fields(train__momentum=0, train__nesterov=True), "train.nesterov")


# -- dataset ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["mnist", "npz", "imagefolder", "cifar10", "cifar100"])
def test_sources_reading_files_need_a_path(source: str) -> None:
    assert_rejected(with_fields(dataset__source=source), "dataset.path", "required")
    assert problems(with_fields(dataset__source=source, dataset__path="somewhere")) == []


@pytest.mark.parametrize("source", ["digits", "synthetic"])
def test_built_in_sources_need_no_path_and_take_none(source: str) -> None:
    assert problems(with_fields(dataset__source=source)) == []
    assert_rejected(with_fields(dataset__source=source, dataset__path="x"), "dataset.path", "takes no path")
    assert_rejected(with_fields(dataset__source=source, dataset__val_path="x"), "dataset.val_path")


def test_dataset_fields_that_only_fit_some_sources() -> None:
    assert_rejected(with_fields(dataset__split="train"), "dataset.split", "only used")
    assert_rejected(with_fields(dataset__image_size=32), "dataset.image_size", "imagefolder")
    assert_rejected(with_fields(dataset__synthetic={"num_samples": 10}), "dataset.synthetic", "synthetic")
    assert_rejected(with_fields(dataset__hflip=True), "dataset.hflip", "augment")
    assert problems(with_fields(dataset__hflip=True, dataset__augment=True)) == []
    flat = with_fields(
        dataset__source="synthetic", dataset__synthetic={"input_shape": [16]}, dataset__augment=True
    )
    assert_rejected(flat, "dataset.augment", "image")


def test_validation_split_sizes() -> None:
    assert_rejected(with_fields(dataset__limit=100, dataset__val_size=100), "dataset.val_size", "limit")
    synthetic = with_fields(
        dataset__source="synthetic", dataset__synthetic={"num_samples": 50}, dataset__val_size=50
    )
    assert_rejected(synthetic, "dataset.val_size", "num_samples")
    # The bundled digits set always has 1,797 samples: holding all of them out leaves nothing to train on,
    # which the worker used to find only when the job ran.
    everything = with_fields(dataset__source="digits", dataset__val_size=1797)
    assert_rejected(everything, "dataset.val_size", "the digits dataset has 1797 samples")
    assert problems(with_fields(dataset__source="digits", dataset__val_size=1796)) == []
    huge = with_fields(
        dataset__source="synthetic",
        dataset__synthetic={"num_samples": 10_000_000, "input_shape": [3, 224, 224]},
    )
    assert_rejected(huge, "dataset.synthetic.num_samples", "exceeds")


# -- defaults -----------------------------------------------------------------------------------------------


def test_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.model.args == {} and spec.model.checkpoint is None
    assert spec.dataset.val_fraction == 0.2 and spec.dataset.val_size is None and not spec.dataset.augment
    assert (spec.sparsity.method, spec.sparsity.n, spec.sparsity.m, spec.sparsity.pattern) == (
        "lbc",
        2,
        4,
        "2:4",
    )
    assert spec.sparsity.srste_lambda == 2e-4
    assert (spec.sparsity.schedule.t_i, spec.sparsity.schedule.t_f, spec.sparsity.schedule.power) == (
        0,
        None,
        3,
    )
    assert spec.sparsity.layers.include == ["*"] and spec.sparsity.layers.exclude == []
    assert spec.sparsity.layers.keep_stem_dense and spec.sparsity.layers.keep_classifier_dense
    train = spec.train
    assert (train.epochs, train.batch_size, train.optimizer, train.lr) == (10, 128, "sgd", None)
    assert (train.momentum, train.weight_decay, train.lr_schedule, train.warmup_epochs) == (
        0.9,
        5e-4,
        "cosine",
        0,
    )
    assert (train.seed, train.device, train.label_smoothing, train.grad_clip_norm) == (0, "auto", 0, None)
    assert spec.benchmark.enabled and spec.benchmark.device is None
    assert (spec.limits.time_limit_s, spec.limits.priority, spec.limits.queue) == (None, 5, "default")


def test_dump_round_trips() -> None:
    spec = parse_spec(with_fields(model__args={"width": 0.5}, train__epochs=4))
    assert parse_spec(dump_spec(spec)) == spec
    assert json.loads(json.dumps(dump_spec(spec)))["train"]["epochs"] == 4


# -- loading ------------------------------------------------------------------------------------------------


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "job.yaml"
    yaml_file.write_text("model: {architecture: lenet5}\ndataset: {source: digits}\ntrain: {lr: 1e-3}\n")
    json_file = tmp_path / "job.json"
    json_file.write_text(json.dumps(with_fields(train__lr=0.001)))
    assert load_spec(yaml_file).train.lr == 0.001  # YAML 1.2 style exponent, read as a number
    assert load_spec(str(json_file)) == load_spec(yaml_file)


def test_load_text() -> None:
    assert load_spec("model: {architecture: vit}\ndataset: {source: synthetic}\n").model.architecture == "vit"
    assert load_spec(json.dumps(MINIMAL)).dataset.source == "digits"


@pytest.mark.parametrize(
    ("sparsity", "path", "fragment"),
    [
        ({"method": "srste", "score_init": "magnitude"}, "sparsity.score_init", "only applies to method lbc"),
        ({"method": "wanda", "score_init": "wanda"}, "sparsity.score_init", "only applies to method lbc"),
        ({"method": "asp", "calibration_samples": 64}, "sparsity.calibration_samples", "method wanda"),
        ({"method": "lbc", "calibration_samples": 64}, "sparsity.calibration_samples", "score_init wanda"),
        ({"method": "lbc", "prior_strength": 0.1}, "sparsity.prior_strength", "a uniform start has no prior"),
        (
            {"method": "lbc", "score_init": "magnitude", "calibration_samples": 64},
            "sparsity.calibration_samples",
            "nothing else reads activations",
        ),
    ],
)
def test_score_init_and_calibration_are_refused_where_the_method_does_not_use_them(
    sparsity: dict[str, Any], path: str, fragment: str
) -> None:
    assert_rejected(with_fields(sparsity=sparsity), path, fragment)


def test_calibration_samples_are_accepted_where_activations_are_read() -> None:
    for sparsity in (
        {"method": "wanda", "calibration_samples": 32},
        {"score_init": "wanda", "calibration_samples": 32},
    ):
        assert parse_spec(with_fields(sparsity=sparsity)).sparsity.calibration_samples == 32


def test_every_problem_is_listed_with_its_path() -> None:
    text = (
        "model: {architecture: lenet6}\n"
        "dataset: {source: mnist, colour: true}\n"
        "sparsity: {n: 2, m: 32}\n"
        "train: {epochs: 0}\n"
        "benchmark: {batch_sizes: [1, 0]}\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(text)
    message = str(info.value)
    for path in (
        "model.architecture",
        "dataset.colour",
        "sparsity.m",
        "train.epochs",
        "benchmark.batch_sizes[1]",
    ):
        assert f"\n  {path}: " in message, message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("model: [unclosed\n", "invalid YAML at line"),
        ("model: {architecture: lenet5}\nmodel: {architecture: vit}\n", "duplicate key 'model'"),
        ("- a\n- b\n", "mapping"),
        ("{not json", "invalid JSON"),
    ],
)
def test_unreadable_specs(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        load_spec(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="file not found"):
        load_spec("nope.json")


def test_format_path() -> None:
    assert format_path(("benchmark", "batch_sizes", 0)) == "benchmark.batch_sizes[0]"
    assert format_path(()) == ""


# -- schema and documentation -------------------------------------------------------------------------------


def test_json_schema_rejects_extra_fields_and_lists_architectures() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
    architecture = schema["$defs"]["ModelSpec"]["properties"]["architecture"]["anyOf"]
    assert architecture == [{"type": "string", "enum": architecture_names()}, {"type": "null"}]


def test_every_field_has_a_description() -> None:
    def check(model: type[BaseModel]) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"
            nested = _nested_model(info.annotation)
            if nested:
                check(nested)

    check(JobSpec)


def test_field_docs_document_every_field() -> None:
    docs = render_field_docs()
    for path in _leaf_paths(JobSpec):
        assert f"  {path}: " in docs, path
    assert "train.epochs: integer; default 10" in docs
    assert ">= 1, <= 10000" in docs
    assert "model.architecture: one of mlp, lenet5" in docs and "required for source catalog" in docs
    assert "KEPT" in docs


# -- examples -----------------------------------------------------------------------------------------------


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "quickstart.yaml",
        "mnist-lenet-lbc-2of4.yaml",
        "mnist-srste-2of4.yaml",
        "digits-asp-1of4.yaml",
        "resnet20-synthetic-2of8.yaml",
        "vit-synthetic-lbc-2of4.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name


def test_quickstart_removes_combinations_in_the_first_half() -> None:
    spec = load_spec(REPO / "examples" / "quickstart.yaml")
    assert (spec.model.architecture, spec.dataset.source, spec.sparsity.method) == ("lenet5", "digits", "lbc")
    assert spec.sparsity.pattern == "2:4"
    assert spec.effective_t_f() == spec.train.epochs / 2


def test_mnist_examples_use_the_shared_test_set() -> None:
    for name in ("mnist-lenet-lbc-2of4.yaml", "mnist-srste-2of4.yaml"):
        spec = load_spec(REPO / "examples" / name)
        assert spec.dataset.path == "../shared/data/mnist-t10k" and spec.dataset.val_size == 2000


# -- tasks -----------------------------------------------------------------------------------------------


def test_the_task_defaults_to_the_one_the_source_serves() -> None:
    assert parse_spec(MINIMAL).task == "image-classification"
    assert parse_spec(TEXT).task == "causal-lm"
    assert parse_spec(LABELED).task == "sequence-classification"


@pytest.mark.parametrize(
    ("task", "data", "message"),
    [
        (
            "causal-lm",
            MINIMAL,
            "task causal-lm reads sources text, not 'digits' (which is for task image-classification)",
        ),
        (
            "image-classification",
            TEXT,
            "task image-classification reads sources digits, mnist, npz, imagefolder",
        ),
        (
            "sequence-classification",
            TEXT,
            "reads sources labeled-text, not 'text' (which is for task causal-lm)",
        ),
    ],
)
def test_a_task_and_a_source_that_do_not_fit_are_refused(
    task: str, data: dict[str, Any], message: str
) -> None:
    assert_rejected({**data, "task": task}, "dataset.source", message)


def test_a_text_task_with_a_catalog_model_is_refused_naming_the_task() -> None:
    """The pair has no training recipe (lbc_catalog.tasks): none is looked up, and the task is named."""
    spec = with_fields(TEXT, train__epochs=3)
    spec["model"] = {"architecture": "lenet5"}
    message = (
        "the catalog architectures do image-classification only; a causal-lm job needs a Hugging Face model "
        "(model.source: huggingface)"
    )
    assert problems(spec) == [f"task: {message}"]
    assert problems({**LABELED, "model": {"architecture": "lenet5"}}) == [
        f"task: {message.replace('causal-lm', 'sequence-classification')}"
    ]
    # A model source that is no source is named as such, not as a task problem.
    spec["model"] = {"source": "hub", "path": "x"}
    assert [line.split(":")[0] for line in problems(spec)] == ["model.source"]


def test_an_optimizer_named_on_a_hugging_face_model_gets_that_optimizers_defaults() -> None:
    """Fine-tuning with SGD: the rate of SGD (docs/huggingface.md), not the 5e-5 meant for AdamW, and no
    weight decay (SGD's is an L2 pull of every pretrained weight towards zero)."""
    sgd = parse_spec(with_fields(TEXT, train__optimizer="sgd")).train
    assert (sgd.optimizer, sgd.lr, sgd.weight_decay, sgd.warmup_epochs) == ("sgd", 1e-3, 0.0, 1.0)
    image = parse_spec(with_fields(HF_MODEL, train__optimizer="sgd")).train
    assert (image.optimizer, image.lr, image.weight_decay) == ("sgd", 1e-3, 0.0)
    given = parse_spec(
        with_fields(TEXT, train__optimizer="sgd", train__lr=0.02, train__weight_decay=1e-4)
    ).train
    assert (given.lr, given.weight_decay) == (0.02, 1e-4)
    # A catalog model's rate stays the batch-scaled default of whichever optimizer the spec names.
    adamw = parse_spec(with_fields(train__optimizer="adamw")).train
    assert (adamw.optimizer, adamw.lr, adamw.weight_decay) == ("adamw", None, 5e-4)


def test_every_recipe_has_defaults_for_every_optimizer_a_spec_may_name() -> None:
    optimizers = typing.get_args(TrainSpec.model_fields["optimizer"].annotation)
    pairs = [(t, m) for t in TASKS for m in MODEL_SOURCES if task_model_problem(t, m) is None]
    assert (IMAGE_CLASSIFICATION, "catalog") in pairs and (CAUSAL_LM, "huggingface") in pairs
    for task, source in pairs:
        recipe = default_recipe(task, source)
        assert recipe.for_optimizer(recipe.optimizer) is not None
        assert [o for o in optimizers if recipe.for_optimizer(o) is None] == [], (task, source)


def test_text_fields_belong_to_text_sources() -> None:
    assert_rejected(with_fields(dataset__block_size=64), "dataset.block_size", "only used by source 'text'")
    assert_rejected(
        with_fields(LABELED, dataset__block_size=64), "dataset.block_size", "only used by source 'text'"
    )
    assert_rejected(with_fields(TEXT, dataset__max_length=64), "dataset.max_length", "'labeled-text'")
    assert_rejected(with_fields(dataset__tokenizer="t.json"), "dataset.tokenizer", "text, labeled-text")
    assert_rejected(with_fields(TEXT, dataset__augment=True), "dataset.augment", "for images, not text")


def test_pretrained_text_models_default_to_adamw_with_warm_up_and_image_catalog_models_keep_sgd() -> None:
    image = parse_spec(MINIMAL).train
    assert (image.optimizer, image.lr, image.warmup_epochs, image.weight_decay) == ("sgd", None, 0.0, 5e-4)
    text = parse_spec(with_fields(TEXT, train__epochs=20)).train
    assert (text.optimizer, text.lr, text.warmup_epochs, text.weight_decay) == ("adamw", 5e-5, 2.0, 0.01)
    given = parse_spec(with_fields(TEXT, train__optimizer="sgd", train__warmup_epochs=0.0)).train
    assert (given.optimizer, given.warmup_epochs) == ("sgd", 0.0)
    # The filled-in values are part of the spec, so a stored job records what it trained with.
    assert dump_spec(parse_spec(TEXT))["train"]["optimizer"] == "adamw"
