"""The tasks a job can name: their data sources, their primary metric, and the training defaults per task
and model source. The one source of these facts for the engine (``lbc_core.tasks``), the job spec, the
API, the CLI and the dashboard (which reads them from the API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "CAUSAL_LM",
    "DEFAULT_TASK",
    "IMAGE_CLASSIFICATION",
    "IMAGE_SOURCES",
    "MODEL_SOURCES",
    "SEQUENCE_CLASSIFICATION",
    "TASKS",
    "TEXT_SOURCES",
    "OptimizerDefaults",
    "Recipe",
    "TaskEntry",
    "default_recipe",
    "render_recipes",
    "task_for_source",
    "task_model_problem",
]

IMAGE_CLASSIFICATION = "image-classification"
SEQUENCE_CLASSIFICATION = "sequence-classification"
CAUSAL_LM = "causal-lm"

IMAGE_SOURCES = ("digits", "mnist", "npz", "imagefolder", "cifar10", "cifar100", "synthetic")
# "text": a corpus (plain text or JSON lines {"text": ...}); "labeled-text": JSON lines or CSV rows with
# "text" and "label".
TEXT_SOURCES = ("text", "labeled-text")
# Where a model comes from: an architecture of our catalog (trained from scratch or from a dense state
# dict), or a pretrained Hugging Face model directory.
MODEL_SOURCES = ("catalog", "huggingface")


@dataclass(frozen=True)
class TaskEntry:
    name: str
    description: str
    sources: tuple[str, ...]  # the dataset sources this task reads
    primary_metric: str  # reported as val_<primary_metric>
    higher_is_better: bool

    @property
    def primary_key(self) -> str:
        """The primary metric's key in a run's records and results, e.g. ``val_accuracy``."""
        return f"val_{self.primary_metric}"


TASKS: Mapping[str, TaskEntry] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            TaskEntry(
                IMAGE_CLASSIFICATION,
                "Images (or flat feature vectors) with one class label each; cross-entropy, top-1 accuracy.",
                IMAGE_SOURCES,
                "accuracy",
                higher_is_better=True,
            ),
            TaskEntry(
                SEQUENCE_CLASSIFICATION,
                "Texts with one label each (labeled-text), tokenized, truncated and padded to max_length; "
                "cross-entropy, accuracy.",
                ("labeled-text",),
                "accuracy",
                higher_is_better=True,
            ),
            TaskEntry(
                CAUSAL_LM,
                "Next-token prediction on a text corpus packed into blocks of block_size tokens; the metric "
                "is validation perplexity, exp(mean token negative log-likelihood), lower is better.",
                ("text",),
                "perplexity",
                higher_is_better=False,
            ),
        )
    }
)
DEFAULT_TASK = IMAGE_CLASSIFICATION


def task_for_source(source: str) -> str:
    """The task a dataset source implies when a spec names none (every source serves exactly one task)."""
    for entry in TASKS.values():
        if source in entry.sources:
            return entry.name
    return DEFAULT_TASK


@dataclass(frozen=True)
class OptimizerDefaults:
    """What a recipe sets for one optimizer: ``lr`` None keeps the batch-scaled default of the optimizer
    (lbc_core.training.config.default_lr)."""

    lr: float | None
    weight_decay: float

    def describe(self) -> str:
        lr = f"lr {self.lr:g}" if self.lr is not None else "the batch-scaled default lr"
        return f"{lr}, weight_decay {self.weight_decay:g}"


@dataclass(frozen=True)
class Recipe:
    """Training defaults a spec takes where it leaves a field out.

    ``optimizer`` is the default optimizer; ``optimizers`` holds the rate and weight decay for each
    optimizer a spec may name, so a spec that picks the other one gets that one's defaults, not the
    default optimizer's. ``warmup_fraction`` is the share of the epochs spent warming the learning rate up.
    """

    optimizer: str
    warmup_fraction: float
    optimizers: Mapping[str, OptimizerDefaults] = field(hash=False)

    def for_optimizer(self, optimizer: str) -> OptimizerDefaults | None:
        """The defaults for ``optimizer``; None for a name the recipe does not know (validation names it)."""
        return self.optimizers.get(optimizer)

    def describe(self) -> str:
        warmup = f"{self.warmup_fraction:.0%} of the epochs warm-up" if self.warmup_fraction else "no warm-up"
        chosen = self.optimizers[self.optimizer].describe()
        others = "; ".join(
            f"with {name}: {defaults.describe()}"
            for name, defaults in self.optimizers.items()
            if name != self.optimizer
        )
        return f"{self.optimizer}, {chosen}, {warmup}" + (f" ({others})" if others else "")


def _recipe(optimizer: str, warmup_fraction: float, **optimizers: OptimizerDefaults) -> Recipe:
    return Recipe(optimizer, warmup_fraction, MappingProxyType(optimizers))


# Why each: images from scratch: SGD at the batch-scaled rate (docs/reliability.md, "defaults that train").
# A pretrained transformer is fine-tuned: AdamW at a small rate with warm-up, since SGD at 0.1 or AdamW at
# 3e-3 destroys what it learnt in the first steps; SGD, when a spec asks for it, at 1e-3 without weight decay
# (SGD's is an L2 term that pulls every pretrained weight towards zero; docs/huggingface.md). The catalog
# architectures are image classifiers, so the text tasks have a Hugging Face recipe only: a pair without a
# recipe is a spec the service refuses (task_model_problem).
_RECIPES: Mapping[tuple[str, str], Recipe] = MappingProxyType(
    {
        (IMAGE_CLASSIFICATION, "catalog"): _recipe(
            "sgd",
            0.0,
            sgd=OptimizerDefaults(None, 5e-4),
            adamw=OptimizerDefaults(None, 5e-4),
        ),
        **{
            (task, "huggingface"): _recipe(
                "adamw",
                0.1,
                adamw=OptimizerDefaults(5e-5, 0.01),
                sgd=OptimizerDefaults(1e-3, 0.0),
            )
            for task in (IMAGE_CLASSIFICATION, SEQUENCE_CLASSIFICATION, CAUSAL_LM)
        },
    }
)
# How messages name the models of each source.
_SOURCE_MODELS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "catalog": ("the catalog architectures", "a catalog architecture"),
        "huggingface": ("Hugging Face models", "a Hugging Face model"),
    }
)


def task_model_problem(task: str, model_source: str) -> str | None:
    """Why a ``task`` job cannot use a model from ``model_source`` (one of MODEL_SOURCES); None when it can
    (the pair has a recipe)."""
    if (task, model_source) in _RECIPES:
        return None
    done = " and ".join(t for t, source in _RECIPES if source == model_source) or "no task"
    sources = [source for t, source in _RECIPES if t == task]
    needed = " or ".join(_SOURCE_MODELS[source][1] for source in sources)
    return (
        f"{_SOURCE_MODELS[model_source][0]} do {done} only; a {task} job needs {needed} "
        f"(model.source: {' or '.join(sources)})"
    )


def default_recipe(task: str, model_source: str = "catalog") -> Recipe:
    """The training defaults for ``task`` with a model from ``model_source`` (see MODEL_SOURCES).

    A pair without a recipe is a KeyError: check it first with :func:`task_model_problem`.
    """
    return _RECIPES[(task, model_source)]


def render_recipes() -> str:
    """The defaults per task and model source, for ``--help`` texts and the spec documentation."""
    lines = [
        "Training defaults (train.optimizer, train.lr, train.warmup_epochs, train.weight_decay) by task:"
    ]
    for (task, source), recipe in _RECIPES.items():
        lines.append(f"  {task} with a {source} model: {recipe.describe()}")
    for task in TASKS:
        for source in MODEL_SOURCES:
            problem = task_model_problem(task, source)
            if problem is not None:
                lines.append(f"  {task} with a {source} model: refused, {problem}")
    return "\n".join(lines)
