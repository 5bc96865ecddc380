"""The did-not-learn check, on synthetic histories: chance-level accuracy, a loss that never fell."""

from __future__ import annotations

import math

import pytest

from lbc_core.training import DID_NOT_LEARN, TrainConfig, learning_warnings
from lbc_core.training.learning_check import best_possible_loss, chance_accuracy_limit


def _history(*losses: float) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "train_loss": loss} for i, loss in enumerate(losses)]


LEARNT = _history(1.2, 0.4, 0.2, 0.1)
STUCK = _history(2.31, 2.302, 2.303, 2.302)  # the lenet5 at batch 16, lr 0.1: ln(10) = 2.303


def test_a_run_that_learnt_has_no_warning() -> None:
    assert learning_warnings(LEARNT, num_classes=10, train=TrainConfig(), val_accuracy=0.97) == []


def test_chance_accuracy_and_a_stuck_loss_give_one_warning_that_says_what_to_change() -> None:
    train = TrainConfig(batch_size=16, lr=0.1)
    (warning,) = learning_warnings(
        STUCK, num_classes=10, train=train, val_accuracy=0.103, majority_share=0.11
    )
    assert warning.code == DID_NOT_LEARN
    assert "validation accuracy 0.103 is at chance level for 10 classes" in warning.message
    assert "the training loss never fell" in warning.message
    # The advice names the fields to change and the default that trains at this batch size.
    assert "lr 0.1 (given) at batch_size 16 without warm-up" in warning.message
    assert "try a lower train.lr (e.g. 0.0125" in warning.message
    assert "train.warmup_epochs" in warning.message
    assert warning.to_dict() == {"code": DID_NOT_LEARN, "message": warning.message}


def test_chance_accuracy_alone_is_enough() -> None:
    (warning,) = learning_warnings(LEARNT, num_classes=10, train=TrainConfig(), val_accuracy=0.12)
    assert "chance level" in warning.message and "never fell" not in warning.message


def test_a_stuck_loss_alone_is_enough_without_a_validation_metric() -> None:
    (warning,) = learning_warnings(STUCK, num_classes=10, train=TrainConfig())
    assert "never fell" in warning.message and "chance level" not in warning.message


@pytest.mark.parametrize(
    ("classes", "majority", "accuracy", "flagged"),
    [
        (10, None, 0.15, True),  # 1/C + 0.5/C
        (10, None, 0.16, False),
        (2, None, 0.55, True),  # the margin is capped at 0.05
        (2, None, 0.60, False),
        (2, 0.9, 0.92, True),  # always answering the majority class of an imbalanced set is chance too
        (2, 0.9, 0.97, False),
        (1000, None, 0.0015, True),
        (1000, None, 0.01, False),
    ],
)
def test_the_chance_level_follows_the_class_count_and_the_majority_class(
    classes: int, majority: float | None, accuracy: float, flagged: bool
) -> None:
    warnings = learning_warnings(
        LEARNT, num_classes=classes, train=TrainConfig(), val_accuracy=accuracy, majority_share=majority
    )
    assert bool(warnings) is flagged
    assert (accuracy <= chance_accuracy_limit(classes, majority)) is flagged


def test_a_fine_tune_whose_loss_starts_low_and_stays_low_is_not_flagged() -> None:
    # A dense checkpoint fine-tuned under a fixed mask: the loss barely moves, but it is far below ln(C).
    flat_and_low = _history(0.05, 0.049, 0.05, 0.048)
    assert learning_warnings(flat_and_low, num_classes=10, train=TrainConfig(), val_accuracy=0.98) == []


def test_a_slow_start_whose_loss_is_falling_is_not_flagged() -> None:
    falling = _history(2.30, 2.10, 1.90)
    assert learning_warnings(falling, num_classes=10, train=TrainConfig()) == []


def test_a_single_epoch_is_judged_by_its_accuracy_only() -> None:
    assert learning_warnings(_history(2.30), num_classes=10, train=TrainConfig()) == []


def test_label_smoothing_raises_the_loss_floor() -> None:
    assert best_possible_loss(10) == 0.0
    floor = best_possible_loss(10, 0.5)
    assert floor == pytest.approx(1.676, abs=1e-3) and floor < math.log(10)
    # Smoothed targets cannot get below 1.676: a loss of 2.15 has covered a quarter of the way, so it is not
    # "near a uniform guess" as it would be without smoothing.
    smoothed = _history(2.16, 2.16, 2.15)
    assert learning_warnings(smoothed, num_classes=10, train=TrainConfig()) != []
    assert learning_warnings(smoothed, num_classes=10, train=TrainConfig(label_smoothing=0.5)) == []


def test_a_tiny_lr_is_told_to_go_higher() -> None:
    train = TrainConfig(batch_size=64, lr=1e-6)
    (warning,) = learning_warnings(STUCK, num_classes=10, train=train, val_accuracy=0.1)
    assert "try a higher train.lr (e.g. 0.05, the default for this batch size)" in warning.message


def test_the_default_lr_is_named_as_such() -> None:
    (warning,) = learning_warnings(STUCK, num_classes=10, train=TrainConfig(batch_size=16), val_accuracy=0.1)
    assert "lr 0.0125 (default) at batch_size 16" in warning.message
    # Already at the default: lower still, or warm up.
    assert "try a lower train.lr (e.g. 0.003125)" in warning.message


def test_fewer_than_two_classes_is_not_judged() -> None:
    assert learning_warnings(STUCK, num_classes=1, train=TrainConfig(), val_accuracy=1.0) == []
