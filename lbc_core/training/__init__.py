"""Training loop, hyperparameters and checkpoints shared by every sparsity method."""

from lbc_core.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainingState,
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from lbc_core.training.config import (
    LR_SCHEDULES,
    OPTIMIZERS,
    REFERENCE_BATCH_SIZE,
    REFERENCE_LR,
    TrainConfig,
    default_lr,
    default_lr_rule,
    learning_rate,
)
from lbc_core.training.learning_check import DID_NOT_LEARN, RunWarning, learning_warnings
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
    "DID_NOT_LEARN",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "REFERENCE_BATCH_SIZE",
    "REFERENCE_LR",
    "CheckpointError",
    "RunWarning",
    "StepEvent",
    "TrainConfig",
    "TrainOutcome",
    "Trainer",
    "TrainingCallback",
    "TrainingState",
    "build_optimizer",
    "default_lr",
    "default_lr_rule",
    "evaluate",
    "learning_rate",
    "learning_warnings",
    "load_checkpoint",
    "resolve_device",
    "resume_point",
    "save_checkpoint",
    "steps_per_epoch",
]
