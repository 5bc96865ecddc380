"""Training hyperparameters as one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adamw")
# "bf16": the forward pass and loss run under bfloat16 autocast (weights, gradients, optimizer and LBC
# state stay fp32). bfloat16 has fp32's exponent range, so no loss scaling is needed and LBC's score
# signal w * dL/dw~ is the same kind of fp32 gradient as without autocast.
# "fp16": float16 autocast with dynamic loss scaling (torch.amp.GradScaler): fp16's narrow range would
# flush small gradients to zero. LBC's signal comes out of the scaled backward, so it is unscaled (and
# dropped on an overflow step) together with the weights' gradients.
PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCHEDULES = ("cosine", "constant", "step")

# The default learning rate is each optimizer's reference lr at the reference batch size, scaled DOWN for
# smaller batches (linearly for SGD, by the square root for AdamW) and never above the reference for larger
# ones. Measured in docs/reliability.md ("defaults that train"): a fixed 0.1 left LeNet-5 at chance at batch
# 16, and scaling UP (0.2 at batch 256) diverged on small data sets, where a large batch means few steps.
REFERENCE_BATCH_SIZE = 128
MAX_PROCESSES = 64
REFERENCE_LR = {"sgd": 0.1, "adamw": 3e-3}


def default_lr(optimizer: str, batch_size: int) -> float:
    """The learning rate a run uses when none is given (see REFERENCE_LR)."""
    scale = min(batch_size, REFERENCE_BATCH_SIZE) / REFERENCE_BATCH_SIZE
    if optimizer == "adamw":
        scale = math.sqrt(scale)
    return REFERENCE_LR[optimizer] * scale


def default_lr_rule(optimizer: str) -> str:
    """How :func:`default_lr` derives the learning rate, in words (recorded with every run)."""
    reference, batch = REFERENCE_LR[optimizer], REFERENCE_BATCH_SIZE
    if optimizer == "adamw":
        return f"{reference:g} x sqrt(min(batch_size, {batch}) / {batch})"
    return f"{reference:g} x min(batch_size, {batch}) / {batch}"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None  # peak learning rate; None: default_lr(optimizer, batch_size)
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
    # Each batch of batch_size runs as this many micro-batches whose gradients add up before one optimizer
    # step: same result as the whole batch (up to rounding; BatchNorm sees the smaller batches), less memory.
    grad_accumulation_steps: int = 1
    # Data-parallel processes sharing every step's batch_size samples (lbc_core.training.distributed);
    # the launcher sets how many actually run, this records what the run was asked for.
    processes: int = 1
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch when processes > 1

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (
                self.lr is None or (self.lr > 0 and math.isfinite(self.lr)),
                f"lr must be a positive number, got {self.lr}",
            ),
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
            (all(0 < m < 1 for m in self.step_milestones), "step_milestones are fractions in (0, 1)"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm must be > 0 when set"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (
                1 <= self.grad_accumulation_steps <= self.batch_size,
                f"grad_accumulation_steps must be in [1, batch_size={self.batch_size}], "
                f"got {self.grad_accumulation_steps}",
            ),
            (
                1 <= self.processes <= MAX_PROCESSES,
                f"processes must be in [1, {MAX_PROCESSES}], got {self.processes}",
            ),
            (
                self.processes <= self.batch_size,
                f"processes ({self.processes}) must not exceed batch_size ({self.batch_size}): "
                "every process takes a share of each batch",
            ),
            (
                self.precision in PRECISIONS,
                f"precision must be one of {PRECISIONS}, got {self.precision!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        # After the checks above: the default lr needs a known optimizer and a valid batch size.
        if not 0 <= self.min_lr <= self.peak_lr:
            lr = "lr" if self.lr is not None else f"lr (here the default {self.peak_lr:g})"
            raise ValueError(f"min_lr must be in [0, {lr}], got {self.min_lr}")

    @property
    def peak_lr(self) -> float:
        """The learning rate reached after warm-up: ``lr`` as given, else the batch-scaled default.

        The one place the effective learning rate is computed; the schedule, the optimizer and the
        run's records all read it.
        """
        return self.lr if self.lr is not None else default_lr(self.optimizer, self.batch_size)

    @property
    def rescales_gradients(self) -> bool:
        """Whether a step's gradients are summed over micro-batches, clipped or loss-scaled after backward,
        so methods that learn inside backward (LBC's scores) must defer their step to the optimizer step."""
        return self.grad_accumulation_steps > 1 or self.grad_clip_norm is not None or self.precision == "fp16"

    @property
    def lr_rule(self) -> str:
        """Where ``peak_lr`` comes from: "given", or the default rule with its numbers filled in."""
        if self.lr is not None:
            return "given"
        return (
            f"default: {default_lr_rule(self.optimizer)} = {self.peak_lr:g} at batch_size {self.batch_size}"
        )


def learning_rate(config: TrainConfig, epoch_progress: float) -> float:
    """The learning rate at fractional epoch ``epoch_progress``: linear warm-up, then the schedule.

    A pure function of progress, so a resumed run needs no scheduler state.
    """
    peak = config.peak_lr
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        return peak * (epoch_progress + 1e-12) / config.warmup_epochs
    span = max(config.epochs - config.warmup_epochs, 1e-12)
    frac = min(max((epoch_progress - config.warmup_epochs) / span, 0.0), 1.0)
    if config.lr_schedule == "cosine":
        return config.min_lr + 0.5 * (peak - config.min_lr) * (1 + math.cos(math.pi * frac))
    if config.lr_schedule == "step":
        passed = sum(1 for m in config.step_milestones if frac >= m)
        return max(peak * config.step_gamma**passed, config.min_lr)
    return peak
