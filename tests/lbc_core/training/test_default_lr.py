"""The default learning rate: scaled down from a reference batch, never above it; a given lr is used as is."""

from __future__ import annotations

import math

import pytest

from lbc_core.training import REFERENCE_BATCH_SIZE, REFERENCE_LR, TrainConfig, default_lr, learning_rate


@pytest.mark.parametrize(
    ("optimizer", "batch", "expected"),
    [
        ("sgd", 16, 0.0125),
        ("sgd", 64, 0.05),
        ("sgd", 128, 0.1),
        ("sgd", 256, 0.1),  # never above the reference: few steps per epoch diverge at 0.2
        ("adamw", 32, 0.003 * 0.5),
        ("adamw", 128, 0.003),
        ("adamw", 1024, 0.003),
    ],
)
def test_default_lr_scales_down_from_the_reference_batch(optimizer: str, batch: int, expected: float) -> None:
    assert default_lr(optimizer, batch) == pytest.approx(expected)
    config = TrainConfig(optimizer=optimizer, batch_size=batch)
    assert config.lr is None and config.peak_lr == pytest.approx(expected)
    # The schedule reads the same rate: cosine starts at the peak without warm-up.
    assert learning_rate(config, 0.0) == pytest.approx(expected)


def test_reference_values() -> None:
    assert REFERENCE_BATCH_SIZE == 128 and REFERENCE_LR == {"sgd": 0.1, "adamw": 3e-3}


def test_a_given_lr_is_used_as_given() -> None:
    config = TrainConfig(batch_size=16, lr=0.1)
    assert config.peak_lr == 0.1 and config.lr_rule == "given"
    assert learning_rate(config, 0.0) == 0.1


def test_the_rule_is_recorded_in_words_with_its_numbers() -> None:
    assert TrainConfig(batch_size=16).lr_rule == (
        "default: 0.1 x min(batch_size, 128) / 128 = 0.0125 at batch_size 16"
    )
    rule = TrainConfig(batch_size=32, optimizer="adamw").lr_rule
    assert rule.startswith("default: 0.003 x sqrt(min(batch_size, 128) / 128) = 0.0015")


def test_min_lr_is_checked_against_the_default_lr() -> None:
    with pytest.raises(ValueError, match=r"min_lr must be in \[0, lr \(here the default 0.0125\)\]"):
        TrainConfig(batch_size=16, min_lr=0.05)
    assert math.isclose(TrainConfig(batch_size=16, min_lr=0.01).peak_lr, 0.0125)
