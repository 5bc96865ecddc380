"""Training hyperparameters as one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adamw")
# "bf16": the forward pass and loss run under bfloat16 autocast (weights, gradients, optimizer and LBC
# state stay fp32). bfloat16 has fp32's exponent range, so no loss scaling is needed and LBC's score
# signal w * dL/dw~ is the same kind of fp32 gradient as without autocast.
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("cosine", "constant", "step")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    step_milestones: tuple[float, ...] = ()  # fractions of training for the "step" schedule
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    grad_clip_norm: float | None = None
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    eval_batch_size: int = 512
    drop_last: bool = False
    precision: str = "fp32"  # see PRECISIONS

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                self.lr_schedule in LR_SCHEDULES,
                f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}",
            ),
            (
                0 <= self.warmup_epochs < self.epochs,
                f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}",
            ),
            (0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr], got {self.min_lr}"),
            (all(0 < m < 1 for m in self.step_milestones), "step_milestones are fractions in (0, 1)"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm must be > 0 when set"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (
                self.precision in PRECISIONS,
                f"precision must be one of {PRECISIONS}, got {self.precision!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def learning_rate(config: TrainConfig, epoch_progress: float) -> float:
    """The learning rate at fractional epoch ``epoch_progress``: linear warm-up, then the schedule.

    A pure function of progress, so a resumed run needs no scheduler state.
    """
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        return config.lr * (epoch_progress + 1e-12) / config.warmup_epochs
    span = max(config.epochs - config.warmup_epochs, 1e-12)
    frac = min(max((epoch_progress - config.warmup_epochs) / span, 0.0), 1.0)
    if config.lr_schedule == "cosine":
        return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * frac))
    if config.lr_schedule == "step":
        passed = sum(1 for m in config.step_milestones if frac >= m)
        return max(config.lr * config.step_gamma**passed, config.min_lr)
    return config.lr
