"""Training loop, hyperparameters and checkpoints shared by every sparsity method."""

from lbc_core.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainingState,
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from lbc_core.training.config import LR_SCHEDULES, OPTIMIZERS, TrainConfig, learning_rate
from lbc_core.training.loop import (
    StepEvent,
    Trainer,
    TrainingCallback,
    TrainOutcome,
    build_optimizer,
    evaluate,
    resolve_device,
    steps_per_epoch,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "CheckpointError",
    "StepEvent",
    "TrainConfig",
    "TrainOutcome",
    "Trainer",
    "TrainingCallback",
    "TrainingState",
    "build_optimizer",
    "evaluate",
    "learning_rate",
    "load_checkpoint",
    "resolve_device",
    "resume_point",
    "save_checkpoint",
    "steps_per_epoch",
]
