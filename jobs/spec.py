"""The job spec: which model to sparsify, on what data, with which N:M method and training recipe.

One schema for both front doors: the REST service validates request bodies with it and ``lbc train`` reads
it from YAML or JSON. Every problem is reported up front as ``field.path: message``, never discovered by a
crashing worker.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from client.spec_text import SpecTextError, load_spec_file, load_spec_text
from jobs.catalog import ARCHITECTURES, check_model_args, weight_layer_names
from jobs.sizing import input_problems
from jobs.text import name_problem, nul_problems
from lbc_catalog.tasks import (
    DEFAULT_TASK,
    IMAGE_SOURCES,
    MODEL_SOURCES,
    TASKS,
    TEXT_SOURCES,
    default_recipe,
    task_for_source,
    task_model_problem,
)

# The sparsity methods a job may name: the one list the spec, the API filters and the CLI read.
Method = Literal["lbc", "srste", "asp", "wanda", "dense"]
METHODS: tuple[str, ...] = get_args(Method)
ScoreInit = Literal["uniform", "magnitude", "wanda"]
SOURCES = IMAGE_SOURCES + TEXT_SOURCES
PATH_SOURCES = frozenset({"mnist", "npz", "imagefolder", "cifar10", "cifar100", *TEXT_SOURCES})
MAX_TOKENS_PER_SAMPLE = 65_536
SPLIT_SOURCES = frozenset({"mnist", "cifar10", "cifar100"})
# Class counts known before any data is read, for checking model.args.num_classes up front.
_KNOWN_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100}
# Sample shapes known before any data is read, for checking the architecture arguments against them.
_KNOWN_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
# Sample counts of sources that need no upload, for checking the validation split up front.
_KNOWN_SAMPLES = {"digits": 1797}
MAX_M = 16
MAX_SYNTHETIC_VALUES = 1 << 28  # 1 GiB of float32 inputs
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]{1,2})$"

Device = Annotated[str, Field(pattern=DEVICE_PATTERN, examples=["auto", "cpu", "cuda", "cuda:1"])]
Glob = Annotated[str, Field(min_length=1, max_length=256)]
LocalRef = Annotated[str, Field(min_length=1, max_length=4096)]
MAX_NAME_LENGTH = 200


def _safe_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise PydanticCustomError("name_invalid", problem)
    return value


# A label people read in listings and terminals: no control or bidirectional characters (jobs.text).
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_safe_name)]


class _Section(BaseModel):
    # strict: YAML and JSON give real numbers and booleans, so "10" for an int or 1 for a bool is a mistake.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _problems_error(
    title: str, problems: Sequence[tuple[tuple[str | int, ...], str, Any]]
) -> ValidationError:
    """Several field errors at once; pydantic prefixes each location with the section's own path."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("spec_invalid", "{reason}", {"reason": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in problems
        ],
    )


def refuse_nul(data: Any, title: str) -> Any:
    """A root spec's ``mode="before"`` check: no string anywhere in ``data`` holds a NUL (jobs.text).

    Run on the raw data, so strings inside free-form mappings (``model.args``) are covered too.
    """
    problems = [(loc, message, None) for loc, message in nul_problems(data)]
    if problems:
        raise _problems_error(title, problems)
    return data


def known_architecture(value: str) -> str:
    """A field validator's check: ``value`` names an architecture of the catalog."""
    if value not in ARCHITECTURES:
        raise PydanticCustomError(
            "unknown_architecture",
            "unknown architecture '{name}'; valid choices: {choices}",
            {"name": value, "choices": ", ".join(ARCHITECTURES)},
        )
    return value


def _architecture_enum(schema: dict[str, Any]) -> None:
    """The schema lists the catalog's names on the string branch (the field is null for other sources)."""
    for option in schema.get("anyOf", []):
        if option.get("type") == "string":
            option["enum"] = list(ARCHITECTURES)


class ModelSpec(_Section):
    """The network to sparsify: a catalog architecture, or a Hugging Face model directory."""

    source: Literal["catalog", "huggingface"] = Field(
        default="catalog",
        description=(
            "Where the model comes from: catalog (a built-in architecture, optionally started from a "
            "checkpoint) or huggingface (a transformers model directory: config.json + safetensors; see "
            "docs/huggingface.md)."
        ),
        json_schema_extra={"enum": list(MODEL_SOURCES)},
    )
    architecture: str | None = Field(
        default=None,
        description="Built-in architecture to build (see the architecture list); required for source catalog.",
        examples=["lenet5", "resnet20", "vit"],
        json_schema_extra=_architecture_enum,
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Keyword arguments of the architecture, e.g. num_classes, in_channels, width. Unknown names are "
            "rejected. num_classes, in_channels, input_features and image_size default to what the dataset says."
        ),
        examples=[{"width": 0.5}, {"num_classes": 10, "in_channels": 1}],
    )
    checkpoint: LocalRef | None = Field(
        default=None,
        description=(
            "Dense starting weights for this architecture: a safetensors file or a torch state dict (loaded "
            "with weights_only=True, never unpickled). For `lbc train` a local file path (relative paths are "
            "resolved against the current directory); for the service the id of an uploaded checkpoint. "
            "Omitted: train from random initialisation."
        ),
        examples=["dense-lenet5.safetensors"],
    )
    path: LocalRef | None = Field(
        default=None,
        description=(
            "For source huggingface: the model directory (config.json + safetensors). For `lbc train` a local "
            "directory; for the service the id of an uploaded model (POST /v1/hf-models)."
        ),
        examples=["./my-llama", "5d1e2c3b4a5f6e7d8c9b0a1f2e3d4c5b"],
    )

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str | None) -> str | None:
        return None if value is None else known_architecture(value)

    @model_validator(mode="after")
    def _fields_fit_source(self) -> ModelSpec:
        if self.source == "huggingface":
            given = [name for name in ("architecture", "checkpoint") if getattr(self, name) is not None]
            given += ["args"] if self.args else []
            problems: list[tuple[tuple[str | int, ...], str, Any]] = [
                ((name,), "is for source catalog; a Hugging Face model is described by its config.json", None)
                for name in given
            ]
            if self.path is None:
                problems.append(
                    (("path",), "names the Hugging Face model directory; required for this source", None)
                )
            if problems:
                raise _problems_error("ModelSpec", problems)
            return self
        if self.path is not None:
            raise _problems_error(
                "ModelSpec",
                [(("path",), "is for source huggingface; a catalog model uses architecture", None)],
            )
        if self.architecture is None:
            raise _problems_error("ModelSpec", [(("architecture",), "is required for source catalog", None)])
        arg_problems = check_model_args(self.architecture, self.args)
        if arg_problems:
            raise _problems_error(
                "ModelSpec", [(("args", key), message, self.args.get(key)) for key, message in arg_problems]
            )
        return self

    @property
    def catalog_architecture(self) -> str:
        """The catalog architecture (specs of source catalog always have one)."""
        if self.architecture is None:
            raise ValueError("this model is not a catalog architecture")
        return self.architecture


class SyntheticDataSpec(_Section):
    """Shape of a generated data set (source ``synthetic``): noisy copies of one random template per class."""

    num_samples: int = Field(
        default=2048, ge=2, le=10_000_000, description="Samples to generate (train + validation)."
    )
    input_shape: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [1, 8, 8],
        min_length=1,
        max_length=3,
        description="Shape of one sample: [C, H, W] for images or [F] for flat vectors.",
        examples=[[3, 32, 32], [64]],
    )
    num_classes: int = Field(default=10, ge=2, le=100_000, description="Number of classes.")
    noise: float = Field(
        default=0.5,
        ge=0.0,
        le=100.0,
        description="Standard deviation of the Gaussian noise around each class template.",
    )

    @model_validator(mode="after")
    def _sane_size(self) -> SyntheticDataSpec:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if len(self.input_shape) == 2:
            problems.append((("input_shape",), "must be [C, H, W] or [F]", self.input_shape))
        elif self.num_samples * math.prod(self.input_shape) > MAX_SYNTHETIC_VALUES:
            problems.append(
                (
                    ("num_samples",),
                    f"num_samples x prod(input_shape) exceeds {MAX_SYNTHETIC_VALUES} values",
                    self.num_samples,
                )
            )
        if problems:
            raise _problems_error("SyntheticDataSpec", problems)
        return self


def known_source(value: str) -> str:
    """A field validator's check: ``value`` names a dataset source (lbc_catalog.tasks)."""
    if value not in SOURCES:
        raise PydanticCustomError(
            "spec_invalid",
            "{reason}",
            {"reason": f"unknown source {value!r}; valid choices: {', '.join(SOURCES)}"},
        )
    return value


def known_task(value: str) -> str:
    if value not in TASKS:
        raise PydanticCustomError(
            "spec_invalid",
            "{reason}",
            {"reason": f"unknown task {value!r}; valid choices: {', '.join(TASKS)}"},
        )
    return value


class DatasetSpec(_Section):
    """Where the training data comes from and how the validation split is made."""

    source: Annotated[str, AfterValidator(known_source)] = Field(
        description=(
            "Kind of data. digits: scikit-learn's bundled 8x8 digits (1,797 images, no path). mnist: a "
            "directory of MNIST IDX files. npz: a .npz file with arrays x and y. imagefolder: a directory, zip "
            "or tar with one sub-directory per class. cifar10/cifar100: the CIFAR python batches (directory or "
            "archive). synthetic: generated data (no path; see synthetic). text: a corpus for causal-lm, plain "
            'UTF-8 text or JSON lines {"text": ...}, packed into blocks of block_size tokens. labeled-text: '
            "JSON lines or CSV with text and label columns for sequence-classification (labels are integers, "
            "or strings mapped to ids in sorted order)."
        ),
        examples=["digits", "mnist", "text"],
        json_schema_extra={"enum": list(SOURCES)},
    )
    path: LocalRef | None = Field(
        default=None,
        description=(
            "Data location, required for mnist, npz, imagefolder, cifar10 and cifar100 and not allowed for "
            "digits and synthetic. For `lbc train` a local path (relative to the current directory); for the "
            "service the id of an uploaded dataset."
        ),
        examples=["../shared/data/mnist-t10k"],
    )
    split: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = Field(
        default=None,
        description=(
            "Which file set to read from path: the MNIST file prefix (train, t10k; omitted: the only pair in "
            "the directory) or the CIFAR split (train, test; default train). Only for mnist, cifar10, cifar100."
        ),
        examples=["t10k", "train"],
    )
    val_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Share of the samples held out for validation (stratified). Ignored with val_size or val_path.",
    )
    val_size: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="Exact number of validation samples; overrides val_fraction.",
        examples=[2000],
    )
    val_path: LocalRef | None = Field(
        default=None,
        description="A separate validation set of the same kind as path; overrides val_fraction and val_size.",
    )
    image_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Resize imagefolder images to image_size x image_size (default: the first image's size).",
    )
    augment: bool = Field(
        default=False,
        description="Random-crop augmentation of training batches (zero padding of 1/8 of the side).",
    )
    hflip: bool = Field(
        default=False,
        description="Also flip training images horizontally at random (needs augment; wrong for digits).",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the shuffle behind limit and the validation split.",
    )
    limit: int | None = Field(
        default=None,
        ge=2,
        le=1_000_000_000,
        description="Use only this many samples (a deterministic random subset, taken before splitting).",
        examples=[1000],
    )
    synthetic: SyntheticDataSpec | None = Field(
        default=None,
        description="Generated data set parameters; only for source synthetic (defaults apply when omitted).",
    )
    block_size: int | None = Field(
        default=None,
        ge=2,
        le=MAX_TOKENS_PER_SAMPLE,
        description="Tokens per training block of a text corpus (source text only; omitted: 128).",
        examples=[256],
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOKENS_PER_SAMPLE,
        description=(
            "Tokens per text of labeled-text: longer texts are truncated, shorter ones padded and masked "
            "(omitted: 128)."
        ),
        examples=[128],
    )
    tokenizer: LocalRef | None = Field(
        default=None,
        description=(
            "A tokenizer.json (Hugging Face tokenizers format) for text sources: for `lbc train` a local file or "
            "a model directory holding one; for the service the id of an uploaded dataset of format tokenizer. "
            "Omitted: UTF-8 bytes (vocabulary 256)."
        ),
    )

    @model_validator(mode="after")
    def _fields_fit_source(self) -> DatasetSpec:
        source = self.source
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if source in PATH_SOURCES and not self.path:
            problems.append((("path",), f"required for source {source!r}", None))
        for name in ("path", "val_path"):
            if source not in PATH_SOURCES and getattr(self, name):
                problems.append(
                    ((name,), f"source {source!r} is built in and takes no {name}", getattr(self, name))
                )
        if self.split is not None and source not in SPLIT_SOURCES:
            problems.append(
                (("split",), f"only used by sources {', '.join(sorted(SPLIT_SOURCES))}", self.split)
            )
        if self.image_size is not None and source != "imagefolder":
            problems.append((("image_size",), "only used by source 'imagefolder'", self.image_size))
        if self.hflip and not self.augment:
            problems.append((("hflip",), "needs augment: true", self.hflip))
        if self.synthetic is not None and source != "synthetic":
            problems.append((("synthetic",), "only used by source 'synthetic'", None))
        for name, only in (("block_size", "text"), ("max_length", "labeled-text")):
            if getattr(self, name) is not None and source != only:
                problems.append(((name,), f"only used by source {only!r}", getattr(self, name)))
        if self.tokenizer is not None and source not in TEXT_SOURCES:
            problems.append(
                (("tokenizer",), f"only used by sources {', '.join(TEXT_SOURCES)}", self.tokenizer)
            )
        if self.augment and source in TEXT_SOURCES:
            problems.append((("augment",), "augmentation is for images, not text", True))
        if self.augment and source == "synthetic" and len(self.synthetic_or_default.input_shape) != 3:
            problems.append((("augment",), "needs image samples ([C, H, W] synthetic.input_shape)", True))
        if self.val_size is not None and self.limit is not None and self.val_size >= self.limit:
            problems.append((("val_size",), f"must be smaller than limit ({self.limit})", self.val_size))
        synthetic_size = self.synthetic_or_default.num_samples
        if source == "synthetic" and self.val_size is not None and self.val_size >= synthetic_size:
            problems.append((("val_size",), "must be smaller than synthetic.num_samples", self.val_size))
        known_samples = _KNOWN_SAMPLES.get(source)
        if known_samples is not None and self.val_size is not None and self.val_size >= known_samples:
            message = f"must leave samples to train on: the {source} dataset has {known_samples} samples"
            problems.append((("val_size",), message, self.val_size))
        if problems:
            raise _problems_error("DatasetSpec", problems)
        return self

    @property
    def synthetic_or_default(self) -> SyntheticDataSpec:
        return self.synthetic or SyntheticDataSpec()


class ScheduleSpec(_Section):
    """LBC's removal schedule: how fast candidate combinations per group are removed (times in epochs)."""

    t_i: float = Field(default=0.0, ge=0.0, description="Epoch at which combination removal starts.")
    t_f: float | None = Field(
        default=None,
        gt=0.0,
        description=(
            "Epoch by which every group is down to its final combination; must be > t_i and <= train.epochs. "
            "Omitted: half of train.epochs, leaving the second half to fine-tune the final mask."
        ),
        examples=[5.0],
    )
    power: float = Field(
        default=3.0, gt=0.0, le=100.0, description="Exponent of the polynomial removal curve."
    )
    per_step: bool = Field(
        default=False,
        description="Evaluate the schedule at fractional epochs, so removal also happens inside epochs.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleSpec:
        if self.t_f is not None and self.t_f <= self.t_i:
            raise _problems_error(
                "ScheduleSpec",
                [(("t_f",), f"must be greater than t_i ({self.t_i:g}), got {self.t_f:g}", self.t_f)],
            )
        return self


class LayersSpec(_Section):
    """Which Linear/Conv2d layers get an N:M mask, by module name."""

    include: list[Glob] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=256,
        description="Shell-style globs of module names to sparsify (e.g. 'layer*.conv1'); each must match a layer.",
        examples=[["*"], ["features.*", "classifier.0"]],
    )
    exclude: list[Glob] = Field(
        default_factory=list,
        max_length=256,
        description="Globs of module names to keep dense.",
        examples=[["*.fc?"]],
    )
    keep_stem_dense: bool = Field(
        default=True, description="Keep the first weight layer dense unless include names it explicitly."
    )
    keep_classifier_dense: bool = Field(
        default=True,
        description="Keep the last weight layer (the classifier) dense unless include names it explicitly.",
    )


class SparsitySpec(_Section):
    """The N:M pattern, the method that learns it, and which layers it applies to."""

    method: Method = Field(
        default="lbc",
        description=(
            "lbc: learn the best combination per group with a removal schedule. srste: sparse-refined "
            "straight-through estimator. asp: one-shot magnitude masks (NVIDIA ASP style), computed once at "
            "the start and then fixed while the weights fine-tune. wanda: one-shot masks by |weight| x "
            "input-activation norm over calibration samples (Wanda), then fixed while the weights "
            "fine-tune. dense: no mask (a baseline)."
        ),
    )
    n: int = Field(
        default=2,
        ge=1,
        le=MAX_M - 1,
        description=(
            "Weights KEPT (non-zero) in every group of m consecutive weights along the reduction dimension: "
            "n=2, m=4 keeps 2 of every 4 (50% sparsity). 1 <= n < m."
        ),
    )
    m: int = Field(
        default=4,
        ge=2,
        le=MAX_M,
        description="Group size; n:m with 2 <= m <= 16. 2:4 runs on sparse tensor cores.",
    )
    srste_lambda: float = Field(
        default=2e-4,
        ge=0.0,
        le=1.0,
        description="SR-STE decay applied to pruned weights (method srste only).",
    )
    score_init: ScoreInit = Field(
        default="uniform",
        description=(
            "Where LBC's combination scores start (method lbc only). uniform: all equal, as published. "
            "magnitude / wanda: from each weight's importance relative to its group (|weight|, or "
            "|weight| x input-activation norm over calibration samples), so the first removals follow "
            "that prior until training overrules it."
        ),
    )
    prior_strength: float = Field(
        default=1.0,
        gt=0.0,
        le=1000.0,
        description=(
            "Scales a score prior's deviation from the uniform start (score_init magnitude or wanda only). "
            "At 1 the prior decides almost every group (docs/engine.md); smaller values let the training "
            "signal overrule it more often."
        ),
    )
    calibration_samples: int | None = Field(
        default=None,
        ge=1,
        le=65_536,
        description=(
            "Training samples (a seeded choice) whose activations calibrate method wanda or "
            "score_init wanda; only allowed there. Omitted: the engine's default (128)."
        ),
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="LBC removal schedule.")
    layers: LayersSpec = Field(default_factory=LayersSpec, description="Which layers are sparsified.")

    @model_validator(mode="after")
    def _consistent(self) -> SparsitySpec:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if self.n >= self.m:
            problems.append(
                (
                    ("n",),
                    f"must be smaller than m ({self.m}); n counts the weights kept per group of m",
                    self.n,
                )
            )
        if self.score_init != "uniform" and self.method != "lbc":
            problems.append(
                (("score_init",), f"only applies to method lbc, not {self.method}; omit it", self.score_init)
            )
        if self.prior_strength != 1.0 and self.score_init == "uniform":
            problems.append(
                (
                    ("prior_strength",),
                    "only applies with score_init magnitude or wanda (a uniform start has no prior); omit it",
                    self.prior_strength,
                )
            )
        if self.calibration_samples is not None and not self.uses_calibration:
            problems.append(
                (
                    ("calibration_samples",),
                    "only applies to method wanda or score_init wanda (nothing else reads activations); omit it",
                    self.calibration_samples,
                )
            )
        if problems:
            raise _problems_error("SparsitySpec", problems)
        return self

    @property
    def uses_calibration(self) -> bool:
        return self.method == "wanda" or self.score_init == "wanda"

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}"


class TrainSpec(_Section):
    """The training recipe shared by every method."""

    epochs: int = Field(default=10, ge=1, le=10_000, description="Passes over the training set.")
    batch_size: int = Field(default=128, ge=1, le=65_536, description="Training samples per optimizer step.")
    optimizer: Literal["sgd", "adamw"] = Field(
        default="sgd",
        description=(
            "Weight optimizer (LBC scores follow it). In a job spec, omitted: the recipe's for the task and "
            "model source (sgd for a catalog model, adamw to fine-tune a Hugging Face one; see the training "
            "defaults)."
        ),
    )
    lr: float | None = Field(
        default=None,
        gt=0.0,
        le=100.0,
        description=(
            "Peak learning rate (reached after warm-up), used as given. Omitted with a Hugging Face model: the "
            "recipe's rate for the optimizer (see the training defaults). Omitted "
            "otherwise: scaled from a reference batch "
            "size of 128, down for smaller batches and never above the reference for larger ones: sgd "
            "0.1 x min(batch_size, 128) / 128 (0.0125 at batch 16, 0.05 at 64, 0.1 from 128 up), adamw "
            "0.003 x sqrt(min(batch_size, 128) / 128). The rate used is recorded in the run's summary "
            "(lr, lr_rule)."
        ),
        examples=[0.05],
    )
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    nesterov: bool = Field(default=False, description="Nesterov momentum for SGD (needs momentum > 0).")
    weight_decay: float = Field(
        default=5e-4,
        ge=0.0,
        le=1.0,
        description=(
            "L2 weight decay (decoupled for adamw). In a job spec, omitted: the recipe's for the task, model "
            "source and optimizer."
        ),
    )
    betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.9, 0.999],
        min_length=2,
        max_length=2,
        description="AdamW betas [beta1, beta2].",
    )
    lr_schedule: Literal["cosine", "constant", "step"] = Field(
        default="cosine", description="Learning-rate schedule after warm-up."
    )
    warmup_epochs: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "Linear learning-rate warm-up, in (fractional) epochs; must be < epochs. In a job spec, omitted: "
            "the task's default share of the epochs (none for image classification, 10 % for text tasks)."
        ),
    )
    min_lr: float = Field(
        default=0.0, ge=0.0, description="Final learning rate of the cosine schedule (<= lr)."
    )
    step_milestones: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.5, 0.75],
        max_length=32,
        description="For lr_schedule step: fractions of training after which lr is multiplied by step_gamma.",
    )
    step_gamma: float = Field(
        default=0.1, gt=0.0, le=1.0, description="Factor applied at each step milestone."
    )
    label_smoothing: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Label smoothing of the cross-entropy loss."
    )
    grad_clip_norm: float | None = Field(
        default=None, gt=0.0, description="Clip the gradient norm to this value (omitted: no clipping)."
    )
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Seed of initialisation, batch order and augmentation."
    )
    device: Device = Field(default="auto", description="auto (CUDA when available), cpu, cuda or cuda:N.")
    eval_batch_size: int = Field(default=512, ge=1, le=65_536, description="Batch size for validation.")
    drop_last: bool = Field(
        default=False, description="Drop the last, incomplete training batch of every epoch."
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Data-parallel processes training the job together on the worker (DDP: NCCL between GPUs, one "
            "GPU per process; gloo between CPU processes). batch_size stays the global batch: each step's "
            "batch_size samples are split across the processes, so the run trains like one process."
        ),
    )
    sync_batchnorm: bool = Field(
        default=False,
        description="With processes > 1 on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm).",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32",
        description=(
            "fp32, or bf16: forward pass and loss under bfloat16 autocast (weights, optimizer and LBC "
            "scores stay fp32; no loss scaling needed). Fast on GPUs with bf16 tensor cores. fp16: float16 "
            "autocast with dynamic loss scaling; LBC scores are unscaled with the weights' gradients and "
            "skip the steps an overflow skips."
        ),
    )
    grad_accumulation_steps: int = Field(
        default=1,
        ge=1,
        le=65_536,
        description=(
            "Run every batch as this many micro-batches whose gradients add up before one optimizer step: "
            "the result of the whole batch (BatchNorm sees the micro-batches) in less memory. LBC scores "
            "step once per optimizer step. At most batch_size."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if self.warmup_epochs >= self.epochs:
            problems.append(
                (("warmup_epochs",), f"must be smaller than epochs ({self.epochs})", self.warmup_epochs)
            )
        if self.lr is None and self.min_lr > 0:
            # The default lr depends on the batch size and the optimizer; a floor needs the ceiling it is under.
            problems.append(
                (("min_lr",), "needs an explicit lr (the default lr depends on batch_size)", self.min_lr)
            )
        elif self.lr is not None and self.min_lr > self.lr:
            problems.append((("min_lr",), f"must not exceed lr ({self.lr:g})", self.min_lr))
        if self.processes > self.batch_size:
            problems.append(
                (("processes",), f"must not exceed batch_size ({self.batch_size})", self.processes)
            )
        if self.sync_batchnorm and self.device == "cpu":
            problems.append((("sync_batchnorm",), "needs CUDA devices (SyncBatchNorm is GPU-only)", True))
        if self.nesterov and self.momentum == 0:
            problems.append((("nesterov",), "needs momentum > 0", self.nesterov))
        if self.grad_accumulation_steps > self.batch_size:
            problems.append(
                (
                    ("grad_accumulation_steps",),
                    f"must not exceed batch_size ({self.batch_size})",
                    self.grad_accumulation_steps,
                )
            )
        if list(self.step_milestones) != sorted(set(self.step_milestones)):
            problems.append((("step_milestones",), "must be strictly increasing", self.step_milestones))
        if problems:
            raise _problems_error("TrainSpec", problems)
        return self


Dtype = Literal["float32", "float16", "bfloat16"]


class BenchmarkSpec(_Section):
    """The speedup report measured after training: dense vs N:M sparse layers and end to end."""

    enabled: bool = Field(
        default=True,
        description=(
            "Produce a speedup report after training (artifacts speedup_report.json, speedup_report.html, "
            "speedup_chart.svg; summary in the job's result.speedup). A failed benchmark does not fail the job."
        ),
    )
    device: Device | None = Field(
        default=None,
        description=(
            "Device to measure on; auto: CUDA when the worker has it, else CPU (omitted: train.device for a "
            "sparsification job, auto for a benchmark job). A CPU has no sparse kernel: its report gives dense "
            "timings and the size/FLOP savings only."
        ),
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=lambda: [1, 64, 256],
        min_length=1,
        max_length=16,
        description="Batch sizes to time.",
    )
    dtypes: list[Dtype] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description=(
            "Data types to time; sparse tensor cores accelerate float16 and bfloat16. Omitted: float16 where a "
            "2:4 sparse kernel exists, float32 elsewhere (half precision on a CPU is slow and says nothing "
            "about sparse speed)."
        ),
        examples=[["float16"], ["float16", "bfloat16"]],
    )

    launch: Literal["eager", "cuda-graph"] = Field(
        default="eager",
        description=(
            "How timed calls are launched: eager (one by one from Python, host overhead included: what eager "
            "PyTorch serving sees) or cuda-graph (replayed from a captured CUDA graph: what "
            "torch.compile(mode='reduce-overhead'), TensorRT or graph-captured serving see; CUDA devices only)."
        ),
    )

    @model_validator(mode="after")
    def _unique(self) -> BenchmarkSpec:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        for name in ("batch_sizes", "dtypes"):
            values = getattr(self, name)
            if values is not None and len(set(values)) != len(values):
                problems.append(((name,), "must not repeat a value", values))
        if self.launch == "cuda-graph" and self.device == "cpu":
            problems.append((("launch",), "cuda-graph needs a CUDA device, and device is cpu", self.launch))
        if problems:
            raise _problems_error("BenchmarkSpec", problems)
        return self


class ExportSpec(_Section):
    """Export formats written besides the safetensors checkpoint, masks, compressed form and manifest."""

    onnx: bool = Field(
        default=False,
        description=(
            "Also write model.onnx and model.fp16.onnx for TensorRT (opset 18, weights as constants with "
            "exact zeros, linear layers as Gemm nodes), each checked with onnxruntime on CPU against the "
            "PyTorch model. A model that cannot be exported still succeeds: the reason is in the manifest "
            "(onnx) and the job's result (onnx)."
        ),
    )


class LimitsSpec(_Section):
    """Scheduling limits applied by the service."""

    time_limit_s: int | None = Field(
        default=None,
        ge=1,
        le=30 * 86_400,
        description="Wall-clock limit of a run in seconds; the job fails when exceeded (omitted: service default).",
        examples=[3600],
    )
    priority: int = Field(default=5, ge=0, le=9, description="Queue priority, 0 (lowest) to 9 (highest).")
    queue: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] = Field(
        default="default",
        description=(
            "Worker queue to send the job to: default routes by device (cpu to the CPU queue, anything else to "
            "the GPU queue); a named queue must be one the service declares (LBC_GPU_QUEUES, LBC_CPU_QUEUES, "
            "e.g. a pool of one GPU type) and agree with the device."
        ),
        examples=["gpu", "cpu"],
    )


class JobSpec(_Section):
    """A complete sparsification job."""

    name: Name | None = Field(
        default=None,
        description="A label for people (shown in listings); no control or bidirectional characters.",
        examples=["lenet5 2:4 on digits"],
    )
    task: Annotated[str, AfterValidator(known_task)] = Field(
        default="image-classification",
        description=(
            "What the model learns: image-classification (cross-entropy, metric val_accuracy), "
            "sequence-classification (labeled-text; val_accuracy) or causal-lm (text; val_perplexity, lower is "
            "better). Omitted: the task the dataset source serves (image-classification for image sources)."
        ),
        examples=["image-classification", "causal-lm"],
        json_schema_extra={"enum": list(TASKS)},
    )
    model: ModelSpec = Field(description="The network to sparsify.")
    dataset: DatasetSpec = Field(description="Training and validation data.")
    sparsity: SparsitySpec = Field(
        default_factory=SparsitySpec, description="N:M pattern, method and layers."
    )
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training recipe.")
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec, description="Speedup report.")
    export: ExportSpec = Field(default_factory=ExportSpec, description="Extra export formats (ONNX).")
    limits: LimitsSpec = Field(default_factory=LimitsSpec, description="Time limit, priority and queue.")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return with_task_defaults(refuse_nul(data, "JobSpec"))

    @model_validator(mode="after")
    def _sections_agree(self) -> JobSpec:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        schedule, epochs = self.sparsity.schedule, self.train.epochs
        if schedule.t_f is not None and schedule.t_f > epochs:
            problems.append(
                (
                    ("sparsity", "schedule", "t_f"),
                    f"must be <= train.epochs ({epochs}), got {schedule.t_f:g}",
                    schedule.t_f,
                )
            )
        if schedule.t_f is None and schedule.t_i >= epochs / 2:
            problems.append(
                (
                    ("sparsity", "schedule", "t_i"),
                    f"must be smaller than t_f, which defaults to train.epochs / 2 = {epochs / 2:g}",
                    schedule.t_i,
                )
            )
        entry = TASKS[self.task]
        if self.dataset.source not in entry.sources:
            problems.append(
                (
                    ("dataset", "source"),
                    f"task {self.task} reads sources {', '.join(entry.sources)}, not {self.dataset.source!r} "
                    f"(which is for task {task_for_source(self.dataset.source)})",
                    self.dataset.source,
                )
            )
        task_problem = task_model_problem(self.task, self.model.source)
        if task_problem is not None:
            problems.append((("task",), task_problem, self.task))
        if self.model.architecture is None:  # a Hugging Face model: its upload is checked at submit
            if problems:
                raise _problems_error("JobSpec", problems)
            return self
        num_classes = self.model.args.get("num_classes")
        known = self.known_num_classes()
        if num_classes is not None and known is not None and num_classes < known:
            problems.append(
                (
                    ("model", "args", "num_classes"),
                    f"the {self.dataset.source} dataset has {known} classes, got {num_classes}",
                    num_classes,
                )
            )
        shape = self.known_input_shape()
        if shape is not None:
            what = f"the {self.dataset.source} dataset"
            for key, message in input_problems(self.model.architecture, self.model.args, shape, what):
                loc = ("model", "architecture") if key == "architecture" else ("model", "args", key)
                value = self.model.architecture if key == "architecture" else self.model.args.get(key)
                problems.append((loc, message, value))
        if problems:
            raise _problems_error("JobSpec", problems)
        return self

    def upload_refs(self) -> list[UploadRef]:
        """The uploads this job reads (service mode: ids of its owner's datasets and checkpoints)."""
        refs: list[UploadRef] = []
        if self.dataset.source in PATH_SOURCES:
            for field in ("path", "val_path"):
                ref = getattr(self.dataset, field)
                if ref is not None:
                    refs.append(UploadRef(f"dataset.{field}", "dataset", ref))
        if self.dataset.tokenizer is not None:
            refs.append(UploadRef("dataset.tokenizer", "dataset", self.dataset.tokenizer, format="tokenizer"))
        if self.model.checkpoint is not None:
            refs.append(UploadRef("model.checkpoint", "checkpoint", self.model.checkpoint))
        if self.model.source == "huggingface" and self.model.path is not None:
            refs.append(UploadRef("model.path", "model", self.model.path))
        return refs

    def known_input_shape(self) -> tuple[int, ...] | None:
        """One sample's shape when the source alone fixes it (built-in and CIFAR data); else None."""
        if self.dataset.source == "synthetic":
            return tuple(self.dataset.synthetic_or_default.input_shape)
        return _KNOWN_SHAPES.get(self.dataset.source)

    def known_num_classes(self) -> int | None:
        """The class count when the source alone fixes it; else None."""
        if self.dataset.source == "synthetic":
            return self.dataset.synthetic_or_default.num_classes
        return _KNOWN_CLASSES.get(self.dataset.source)

    def effective_t_f(self) -> float:
        """``sparsity.schedule.t_f``, or half of ``train.epochs`` when omitted."""
        t_f = self.sparsity.schedule.t_f
        return t_f if t_f is not None else self.train.epochs / 2


def model_source(data: Mapping[str, Any]) -> str | None:
    """Where the spec's model comes from (lbc_catalog.tasks.MODEL_SOURCES), for the task's recipe: a
    pretrained Hugging Face model is fine-tuned (AdamW, small rate, warm-up), a catalog one trained. None
    for a source that is not one of them (validation names it)."""
    model = data.get("model", {})
    source = model.get("source", "catalog") if isinstance(model, Mapping) else "catalog"
    return source if isinstance(source, str) and source in MODEL_SOURCES else None


def with_task_defaults(data: Any) -> Any:
    """Raw spec data with ``task`` (the dataset source's task when omitted) and the training fields the
    recipe of the task and model source sets (optimizer, lr, weight_decay, warmup_epochs) filled in where
    the spec leaves them out; lr and weight_decay are those of the optimizer the spec names, if it names one.

    Filled in before validation, so the stored spec records the values the run used; anything malformed
    is left for validation to name, and so is a task the model source cannot do (it has no recipe).
    """
    if not isinstance(data, Mapping):
        return data
    dataset, train = data.get("dataset"), data.get("train", {})
    if "task" not in data and isinstance(dataset, Mapping) and isinstance(dataset.get("source"), str):
        data = {**data, "task": task_for_source(dataset["source"])}
    task, source = data.get("task", DEFAULT_TASK), model_source(data)
    if not isinstance(task, str) or task not in TASKS or source is None or not isinstance(train, Mapping):
        return data
    if task_model_problem(task, source) is not None:
        return data  # no recipe for the pair: JobSpec's own check names the task, with any other problem
    recipe = default_recipe(task, source)
    optimizer = train.get("optimizer", recipe.optimizer)
    defaults: dict[str, Any] = {"optimizer": recipe.optimizer}
    chosen = recipe.for_optimizer(optimizer) if isinstance(optimizer, str) else None
    if chosen is not None:
        defaults["weight_decay"] = chosen.weight_decay
        if chosen.lr is not None:
            defaults["lr"] = chosen.lr
    epochs = train.get("epochs", TrainSpec.model_fields["epochs"].default)
    if recipe.warmup_fraction and isinstance(epochs, int) and not isinstance(epochs, bool):
        defaults["warmup_epochs"] = recipe.warmup_fraction * epochs
    return {**data, "train": {**defaults, **train}}


def layer_pattern_problems(spec: JobSpec) -> list[FieldProblem]:
    """``sparsity.layers.include`` globs that match no Linear/Conv2d layer of the spec's model.

    The engine refuses them when it builds the model; the service checks them at submit time from the
    layer catalog instead of letting a queued job fail. Skipped when the model's arguments change its
    layer structure (the catalog lists default structures only).
    """
    if spec.model.architecture is None:  # a Hugging Face model's layers are known once it is built
        return []
    names = weight_layer_names(spec.model.architecture, spec.model.args)
    if not names:
        return []
    listed = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    return [
        FieldProblem(
            f"sparsity.layers.include[{index}]",
            f"pattern {pattern!r} matches no Linear/Conv2d layer of {spec.model.architecture}; "
            f"layers are: {listed}",
        )
        for index, pattern in enumerate(spec.sparsity.layers.include)
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names)
    ]


@dataclass(frozen=True)
class UploadRef:
    """A spec field naming an upload: where (``dataset.path``), what kind of upload, and its id.

    One rule for every reference, at submit and at retry: the upload must belong to the job's owner
    (``jobs.repository.owned_upload``).
    """

    field: str
    kind: Literal["dataset", "checkpoint", "model"]
    id: str
    # The dataset format the field needs; None: the spec's dataset.source.
    format: str | None = None


# -- errors -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One validation problem: the dotted field path (``""`` for the document itself) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A job spec that cannot be read or does not validate; the message lists every problem."""

    def __init__(self, problems: Sequence[FieldProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"invalid job spec{f' {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  {problem}" for problem in self.problems))


def format_path(loc: Sequence[str | int]) -> str:
    """``("benchmark", "batch_sizes", 0)`` -> ``"benchmark.batch_sizes[0]"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def problems_from(error: ValidationError, root: type[BaseModel] | None = None) -> list[FieldProblem]:
    """Readable problems from a pydantic error raised while validating ``root`` (default: a JobSpec)."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind, message, value = item["type"], item["msg"], item.get("input")
        if kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            allowed = _allowed_fields(loc[:-1], root or JobSpec)
            message = "unknown field" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        elif kind not in ("spec_invalid", "unknown_architecture") and _is_scalar(value):
            message = f"{message}, got {value!r}"
        problems.append(FieldProblem(format_path(loc), message))
    return problems


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _allowed_fields(loc: Sequence[str | int], root: type[BaseModel]) -> list[str]:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        model = _section_type(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


# -- loading ------------------------------------------------------------------------------------------------


def parse_spec(data: Any, source: str | None = None) -> JobSpec:
    """Validate already-parsed data (a mapping from YAML/JSON); raises SpecError."""
    if not isinstance(data, Mapping):
        raise SpecError(
            [
                FieldProblem(
                    "",
                    f"a job spec is a mapping with sections {', '.join(JobSpec.model_fields)}, "
                    f"got {type(data).__name__}",
                )
            ],
            source,
        )
    try:
        return JobSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source) from None


def load_spec(path_or_text: str | os.PathLike[str]) -> JobSpec:
    """Read a job spec from a YAML or JSON file, or from YAML/JSON text; raises SpecError.

    A ``Path`` (or a string naming an existing file, or ending in .yaml/.yml/.json) is read as a file;
    any other string is parsed as the spec text itself.
    """
    if isinstance(path_or_text, os.PathLike) or _looks_like_path(path_or_text):
        source = str(Path(path_or_text))
        try:
            data = load_spec_file(path_or_text)
        except SpecTextError as exc:
            raise SpecError([FieldProblem("", str(exc))], source) from None
        return parse_spec(data, source)
    text = str(path_or_text)
    return parse_spec(_parse_text(text, text.lstrip().startswith("{"), None), None)


def _looks_like_path(text: str) -> bool:
    if "\n" in text or text.lstrip().startswith("{"):
        return False
    return os.path.isfile(text) or text.lower().endswith((".yaml", ".yml", ".json"))


def _parse_text(text: str, is_json: bool, source: str | None) -> Any:
    try:
        return load_spec_text(text, is_json=is_json)
    except SpecTextError as exc:
        raise SpecError([FieldProblem("", str(exc))], source) from None


def dump_spec(spec: JobSpec) -> dict[str, Any]:
    """The spec as plain JSON data (every default filled in)."""
    return spec.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    """The JSON schema of a job spec (what ``lbc spec schema`` prints and the API documents)."""
    return JobSpec.model_json_schema()


# -- documentation ------------------------------------------------------------------------------------------


def render_field_docs(schema: Mapping[str, Any] | None = None, width: int = 100) -> str:
    """Every field of the spec with its type, default, constraints and description, from the JSON schema."""
    schema = schema or json_schema()
    defs = schema.get("$defs", {})
    lines: list[str] = []
    for path, prop, required, is_section in _walk(schema, defs, ""):
        description = prop.get("description", "")
        if is_section:
            lines.append("")
            lines.append(f"{path}{'' if required else ' (optional section)'}")
            if description:
                lines.extend(textwrap.wrap(description, width, initial_indent="  ", subsequent_indent="  "))
            continue
        lines.append(f"  {path}: {_describe_type(prop, defs)}; {_describe_default(prop, required)}")
        details = description
        constraints = _describe_constraints(prop)
        if constraints:
            details += f" [{constraints}]"
        if prop.get("examples"):
            details += " Example: " + ", ".join(json.dumps(e) for e in prop["examples"][:2])
        if details:
            lines.extend(
                textwrap.wrap(details.strip(), width, initial_indent="      ", subsequent_indent="      ")
            )
    return "\n".join(lines).lstrip("\n")


def _resolve(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The section schema a property points at, if it is (optionally) a nested model."""
    ref = prop.get("$ref")
    if ref is None:
        for option in [*prop.get("anyOf", ()), *prop.get("allOf", ())]:
            if "$ref" in option:
                ref = option["$ref"]
                break
    if ref is None:
        return None
    return defs[ref.rsplit("/", 1)[-1]]


def _walk(
    schema: Mapping[str, Any], defs: Mapping[str, Any], prefix: str
) -> Iterator[tuple[str, Mapping[str, Any], bool, bool]]:
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        section = _resolve(prop, defs)
        if section is not None:
            merged = {"description": prop.get("description") or section.get("description", "")}
            yield path, merged, name in required, True
            yield from _walk(section, defs, path)
        else:
            yield path, prop, name in required, False


_JSON_TYPES = {
    "integer": "integer",
    "number": "number",
    "string": "string",
    "boolean": "boolean",
    "null": "null",
    "object": "mapping",
    "array": "list",
}


def _describe_type(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_describe_type(option, defs) for option in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items", {})
        return f"list of {_describe_type(items, defs)}" if items else "list"
    return _JSON_TYPES.get(str(kind), "any")


def _describe_default(prop: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in prop:
        return f"default {json.dumps(prop['default'])}"
    return "optional"


_CONSTRAINTS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length >= {}"),
    ("maxLength", "length <= {}"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches {}"),
)


def _describe_constraints(prop: Mapping[str, Any]) -> str:
    parts: list[str] = []

    def collect(node: Mapping[str, Any], label: str = "") -> None:
        for key, template in _CONSTRAINTS:
            if key in node:
                parts.append(label + template.format(node[key]))

    collect(prop)
    for option in prop.get("anyOf", ()):
        collect(option)
        if option.get("type") == "array" and "items" in option:
            collect(option["items"], "each ")
    if prop.get("type") == "array" and "items" in prop:
        collect(prop["items"], "each ")
    return ", ".join(parts)


__all__ = [
    "METHODS",
    "SOURCES",
    "BenchmarkSpec",
    "DatasetSpec",
    "ExportSpec",
    "FieldProblem",
    "JobSpec",
    "LayersSpec",
    "LimitsSpec",
    "Method",
    "ModelSpec",
    "Name",
    "ScheduleSpec",
    "ScoreInit",
    "SparsitySpec",
    "SpecError",
    "SyntheticDataSpec",
    "TrainSpec",
    "UploadRef",
    "dump_spec",
    "format_path",
    "json_schema",
    "layer_pattern_problems",
    "load_spec",
    "parse_spec",
    "problems_from",
    "render_field_docs",
]
