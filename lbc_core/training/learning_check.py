"""Did a finished run learn anything? A pure check of its history and final metric.

A run that trained to the end without an error can still have learnt nothing: a learning rate too high for
its batch size leaves the loss at that of a uniform guess and the accuracy at chance. Such a run still
succeeded (it ran), but its model is useless, so the run carries a warning that says so and what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lbc_core.training.config import TrainConfig, default_lr

DID_NOT_LEARN = "did_not_learn"

# The chance-level margin: accuracy within min(0.5 / C, 0.05) above chance (1/C, or the majority class's
# share when larger) is no better than guessing: 0.15 for 10 balanced classes, 0.55 for 2.
_CHANCE_MARGIN_PER_CLASS = 0.5
_CHANCE_MARGIN_MAX = 0.05
# A training loss that ends within the top 10 % of the range between the best possible loss and that of a
# uniform guess, and never fell meaningfully below the first epoch's, has not learnt.
_LOSS_AT_CHANCE = 0.9
_LOSS_FELL = 0.97


@dataclass(frozen=True)
class RunWarning:
    """Something about a finished run that its user must know: a stable ``code`` and a plain message."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def chance_accuracy(num_classes: int, majority_share: float | None = None) -> float:
    """Accuracy of guessing: 1 / num_classes, or always answering the most common class if that scores more."""
    return max(1.0 / num_classes, majority_share or 0.0)


def chance_accuracy_limit(num_classes: int, majority_share: float | None = None) -> float:
    """Accuracy at or below which a model is no better than guessing."""
    margin = min(_CHANCE_MARGIN_PER_CLASS / num_classes, _CHANCE_MARGIN_MAX)
    return chance_accuracy(num_classes, majority_share) + margin


def uniform_guess_loss(num_classes: int) -> float:
    """Cross-entropy of predicting every class with equal probability: ln(num_classes)."""
    return math.log(num_classes)


def best_possible_loss(num_classes: int, label_smoothing: float = 0.0) -> float:
    """The lowest cross-entropy reachable: the entropy of the (smoothed) target distribution."""
    if label_smoothing <= 0:
        return 0.0
    true_p = 1 - label_smoothing + label_smoothing / num_classes
    other_p = label_smoothing / num_classes
    return -(true_p * math.log(true_p) + (num_classes - 1) * other_p * math.log(other_p))


def learning_warnings(
    history: Sequence[Mapping[str, Any]],
    *,
    num_classes: int,
    train: TrainConfig,
    val_accuracy: float | None = None,
    majority_share: float | None = None,
) -> list[RunWarning]:
    """Warnings for a finished run: ``did_not_learn`` when its final validation accuracy is at chance level,
    or when its training loss never fell and ended near that of a uniform guess.

    ``history`` holds the per-epoch records (``train_loss``); ``majority_share`` is the most common class's
    share of the validation set, so an imbalanced set's "always the same class" counts as chance.
    """
    if num_classes < 2:
        return []
    evidence: list[str] = []
    limit = chance_accuracy_limit(num_classes, majority_share)
    if val_accuracy is not None and val_accuracy <= limit:
        chance = chance_accuracy(num_classes, majority_share)
        evidence.append(
            f"validation accuracy {val_accuracy:.3f} is at chance level for {num_classes} classes "
            f"(guessing scores {chance:.3f})"
        )
    losses = [float(r["train_loss"]) for r in history if isinstance(r.get("train_loss"), int | float)]
    if len(losses) >= 2:
        uniform = uniform_guess_loss(num_classes)
        floor = best_possible_loss(num_classes, train.label_smoothing)
        stuck = losses[-1] >= floor + _LOSS_AT_CHANCE * (uniform - floor)
        never_fell = min(losses[1:]) >= _LOSS_FELL * losses[0]
        if stuck and never_fell:
            evidence.append(
                f"the training loss never fell (first epoch {losses[0]:.3f}, last {losses[-1]:.3f}; "
                f"a uniform guess scores ln({num_classes}) = {uniform:.3f})"
            )
    if not evidence:
        return []
    message = (
        "the model did not learn: "
        + "; ".join(evidence)
        + ". The exported model is no better than guessing. "
        + _advice(train)
    )
    return [RunWarning(DID_NOT_LEARN, message)]


# A language model whose validation perplexity stays above half that of a uniform guess over its vocabulary
# has learnt next to nothing: even unigram frequencies of real text bring it far below that.
_PERPLEXITY_AT_CHANCE = 0.5


def language_model_warnings(
    *, vocab_size: int, train: TrainConfig, val_perplexity: float | None
) -> list[RunWarning]:
    """``did_not_learn`` for a causal LM whose final validation perplexity is near a uniform guess's
    (the vocabulary size)."""
    if val_perplexity is None or vocab_size < 2 or val_perplexity < _PERPLEXITY_AT_CHANCE * vocab_size:
        return []
    message = (
        f"the model did not learn: validation perplexity {val_perplexity:.1f} is near that of a uniform guess "
        f"over its {vocab_size} tokens ({vocab_size}). The exported model is no better than guessing. "
        + _advice(train)
    )
    return [RunWarning(DID_NOT_LEARN, message)]


def _advice(train: TrainConfig) -> str:
    """What to change, from the learning rate this run used."""
    lr, batch = train.peak_lr, train.batch_size
    used = f"This run used lr {lr:g} ({'given' if train.lr is not None else 'default'}) at batch_size {batch}"
    used += f" with {train.warmup_epochs:g} warm-up epochs" if train.warmup_epochs else " without warm-up"
    suggested = default_lr(train.optimizer, batch)
    if lr < suggested / 10:
        return f"{used}: try a higher train.lr (e.g. {suggested:g}, the default for this batch size) or more epochs."
    lower = suggested if lr > suggested else lr / 4
    return (
        f"{used}: try a lower train.lr (e.g. {lower:g}"
        + (", the default for this batch size, by omitting train.lr" if lr > suggested else "")
        + "), train.warmup_epochs: 1, or a larger train.batch_size."
    )


__all__ = [
    "DID_NOT_LEARN",
    "RunWarning",
    "best_possible_loss",
    "chance_accuracy",
    "chance_accuracy_limit",
    "language_model_warnings",
    "learning_warnings",
    "uniform_guess_loss",
]
