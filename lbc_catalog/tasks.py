"""The tasks a job can name: their data sources, their primary metric, and the training defaults per task
and model source. The one source of these facts for the engine (``lbc_core.tasks``), the job spec, the
API, the CLI and the dashboard (which reads them from the API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DEFAULT_TASK",
    "IMAGE_SOURCES",
    "MODEL_SOURCES",
    "TASKS",
    "TEXT_SOURCES",
    "Recipe",
    "TaskEntry",
    "default_recipe",
    "render_recipes",
    "task_for_source",
]

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
                "image-classification",
                "Images (or flat feature vectors) with one class label each; cross-entropy, top-1 accuracy.",
                IMAGE_SOURCES,
                "accuracy",
                higher_is_better=True,
            ),
            TaskEntry(
                "sequence-classification",
                "Texts with one label each (labeled-text), tokenized, truncated and padded to max_length; "
                "cross-entropy, accuracy.",
                ("labeled-text",),
                "accuracy",
                higher_is_better=True,
            ),
            TaskEntry(
                "causal-lm",
                "Next-token prediction on a text corpus packed into blocks of block_size tokens; the metric "
                "is validation perplexity, exp(mean token negative log-likelihood), lower is better.",
                ("text",),
                "perplexity",
                higher_is_better=False,
            ),
        )
    }
)
DEFAULT_TASK = "image-classification"


def task_for_source(source: str) -> str:
    """The task a dataset source implies when a spec names none (every source serves exactly one task)."""
    for entry in TASKS.values():
        if source in entry.sources:
            return entry.name
    return DEFAULT_TASK


@dataclass(frozen=True)
class Recipe:
    """Training defaults a spec takes where it leaves a field out.

    ``lr`` None keeps the batch-scaled default of the optimizer (lbc_core.training.config.default_lr);
    ``warmup_fraction`` is the share of the epochs spent warming the learning rate up.
    """

    optimizer: str
    lr: float | None
    warmup_fraction: float
    weight_decay: float

    def describe(self) -> str:
        lr = f"lr {self.lr:g}" if self.lr is not None else "the batch-scaled default lr"
        warmup = f"{self.warmup_fraction:.0%} of the epochs warm-up" if self.warmup_fraction else "no warm-up"
        return f"{self.optimizer}, {lr}, {warmup}, weight_decay {self.weight_decay:g}"


# Why each: images from scratch: SGD at the batch-scaled rate (docs/reliability.md,
# "defaults that train"). Transformers trained from scratch: AdamW with warm-up (SGD barely moves attention
# layers). A pretrained transformer is fine-tuned: AdamW at a small rate with warm-up, since SGD at 0.1 or
# AdamW at 3e-3 destroys what it learnt in the first steps.
_RECIPES: Mapping[tuple[str, str], Recipe] = MappingProxyType(
    {
        ("image-classification", "catalog"): Recipe("sgd", None, 0.0, 5e-4),
        ("sequence-classification", "catalog"): Recipe("adamw", None, 0.1, 0.01),
        ("causal-lm", "catalog"): Recipe("adamw", None, 0.1, 0.01),
        ("image-classification", "huggingface"): Recipe("adamw", 5e-5, 0.1, 0.01),
        ("sequence-classification", "huggingface"): Recipe("adamw", 5e-5, 0.1, 0.01),
        ("causal-lm", "huggingface"): Recipe("adamw", 5e-5, 0.1, 0.01),
    }
)


def default_recipe(task: str, model_source: str = "catalog") -> Recipe:
    """The training defaults for ``task`` with a model from ``model_source`` (see MODEL_SOURCES)."""
    return _RECIPES[(task, model_source)]


def render_recipes() -> str:
    """The defaults per task and model source, for ``--help`` texts and the spec documentation."""
    lines = [
        "Training defaults (train.optimizer, train.lr, train.warmup_epochs, train.weight_decay) by task:"
    ]
    for (task, source), recipe in _RECIPES.items():
        lines.append(f"  {task} with a {source} model: {recipe.describe()}")
    return "\n".join(lines)
