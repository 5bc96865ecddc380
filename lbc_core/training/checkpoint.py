"""Self-describing training checkpoints, written atomically and loadable with ``weights_only=True``."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "lbc.train-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not belong to this run."""


@dataclass(frozen=True)
class TrainingState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int  # epoch in progress (or the next one, when ``step == 0``)
    step: int  # steps of ``epoch`` already taken
    global_step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    sparsifier: dict[str, Any]
    rng: dict[str, Any]
    history: list[dict[str, Any]]
    running: dict[str, float]  # partial statistics of the epoch in progress
    config: dict[str, Any]
    grad_scaler: dict[str, Any] | None = None  # the fp16 loss scale and its growth tracker


def save_checkpoint(state: TrainingState, path: str | os.PathLike[str]) -> Path:
    """Write to a temporary file beside ``path`` and rename: a crash never leaves half a checkpoint."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **state.__dict__}
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> TrainingState:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many kinds for a corrupt or hostile file
        raise CheckpointError(
            f"{path}: not a readable training checkpoint ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a training checkpoint of format {CHECKPOINT_FORMAT}")
    fields = TrainingState.__dataclass_fields__
    # Fields with a default came later; checkpoints written before them load with the default.
    required = [name for name, f in fields.items() if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}")
    return TrainingState(**{name: payload[name] for name in fields if name in payload})


def resume_point(epoch: int, step: int, global_step: int) -> dict[str, int]:
    """Where a resumed run continues, as ``resumed_from`` and every log line about it say it.

    ``epoch`` counts from 1, like the progress events and the metrics history (the epoch the run
    continues in); ``step`` is the number of that epoch's steps already done; ``global_step`` the number
    of all steps done. ``epoch``/``step``/``global_step`` are a checkpoint's own 0-based counters.
    """
    return {"epoch": epoch + 1, "step": step, "global_step": global_step}
