"""The training loop every method shares: deterministic batches, warm-up + schedule, callbacks,
cooperative stop, and checkpoint/resume that reproduces an uninterrupted run exactly (CPU).

What a batch is, the loss and the metrics come from a Task (image classification unless given)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lbc_core.sparsity import Sparsifier
from lbc_core.tasks import Batch, ImageClassification, Task
from lbc_core.training.checkpoint import CheckpointError, TrainingState, load_checkpoint, save_checkpoint
from lbc_core.training.config import OPTIMIZERS, TrainConfig, default_lr, learning_rate
from lbc_core.training.distributed import SingleProcess

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class SupervisedData(Protocol):
    """Anything with in-memory tensors ``x`` (inputs) and ``y`` (int64 labels): image classification's data.

    Other tasks take their own in-memory sets (token blocks, tokenized texts); the task reads them.
    """

    x: torch.Tensor
    y: torch.Tensor


IMAGE_CLASSIFICATION = ImageClassification()


@dataclass(frozen=True)
class StepEvent:
    epoch: int
    step: int
    steps_per_epoch: int
    global_step: int
    total_steps: int
    loss: float
    lr: float


class TrainingCallback:
    """Override what you need. ``should_stop`` is polled every step (e.g. a cancel flag)."""

    def on_step(self, event: StepEvent) -> None:
        """After every optimizer step."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """After validation at the end of every epoch, with that epoch's metrics."""

    def on_checkpoint(self, path: Path, state: TrainingState) -> None:
        """After a checkpoint has been written completely."""

    def should_stop(self) -> bool:
        return False


@dataclass(frozen=True)
class TrainOutcome:
    status: str  # "completed" | "stopped"
    epoch: int
    step: int
    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def _batches(
    data: Any, config: TrainConfig, epoch: int, task: Task = IMAGE_CLASSIFICATION
) -> list[torch.Tensor]:
    """The index batches of one epoch: a permutation that depends only on (seed, epoch)."""
    n = task.size(data)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch)))
    batches = list(order.split(config.batch_size))
    if config.drop_last and len(batches) > 1 and batches[-1].numel() < config.batch_size:
        batches.pop()
    return batches


def steps_per_epoch(data: Any, config: TrainConfig, task: Task = IMAGE_CLASSIFICATION) -> int:
    return len(_batches(data, config, 0, task))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=config.peak_lr, betas=config.betas, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        params,
        lr=config.peak_lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    batch_size: int = 512,
    device: torch.device | None = None,
    task: Task = IMAGE_CLASSIFICATION,
) -> dict[str, float]:
    """The task's metrics (mean loss and e.g. top-1 accuracy) with the model's current weights and masks."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = task.zero_stats()
    for index in torch.arange(task.size(data)).split(batch_size):
        batch = task.batch(data, index).to(device)
        logits = task.forward(model, batch)
        sums["loss"] += float(task.loss(logits, batch, reduction="sum"))
        for key, value in task.stats(logits, batch).items():
            sums[key] += value
        sums["count"] += task.count(batch)
    model.train(was_training)
    return task.summarize(sums)


# ``processes``: the global batch and its order do not depend on how many processes share it.
RESUME_MAY_CHANGE = frozenset({"device", "eval_batch_size", "processes", "sync_batchnorm"})


def _jsonable_config(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """Field values comparable across a checkpoint round trip (tuples come back as tuples or lists).

    ``lr`` is compared as the rate actually used, so a run that gave the default explicitly, or one saved
    before the default was derived from the batch size, resumes when the rate is the same.
    """
    # A setting added after a checkpoint was written compares as its default (the run used it implicitly).
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    values = asdict(config) if isinstance(config, TrainConfig) else {**defaults, **config}
    if values.get("lr") is None and values.get("optimizer") in OPTIMIZERS and "batch_size" in values:
        values["lr"] = default_lr(values["optimizer"], values["batch_size"])
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in values.items()}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """Trains a prepared model. The sparsifier must already be prepared on ``model``."""

    def __init__(
        self,
        model: nn.Module,
        sparsifier: Sparsifier,
        config: TrainConfig,
        train_data: Any,  # what the task reads: SupervisedData for image classification
        val_data: Any | None = None,
        *,
        callbacks: Sequence[TrainingCallback] = (),
        augment: Augment | None = None,
        checkpoint_path: str | Path | None = None,
        task: Task = IMAGE_CLASSIFICATION,
        parallel: SingleProcess | None = None,
    ) -> None:
        self.config = config
        self.task = task
        # One process, or this rank of a multi-process job (lbc_core.training.distributed).
        self.parallel = parallel or SingleProcess()
        self.device = self.parallel.device(resolve_device(config.device))
        self.model = model.to(self.device)
        self.forward = self.parallel.wrap(self.model)
        self.sparsifier = sparsifier
        self.train_data = train_data
        self.val_data = val_data
        self.callbacks = list(callbacks)
        self.augment = augment
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.optimizer = build_optimizer(self.model, config)
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none.
        self.scaler = torch.amp.GradScaler(self.device.type) if config.precision == "fp16" else None
        if config.rescales_gradients:
            sparsifier.defer_score_steps()
        self.history: list[dict[str, Any]] = []
        self.running: dict[str, float] = self._zero_running()
        self.epoch, self.step, self.global_step = 0, 0, 0

    def _zero_running(self) -> dict[str, float]:
        return {**self.task.zero_stats(), "seconds": 0.0}

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> TrainingState:
        return TrainingState(
            epoch=self.epoch,
            step=self.step,
            global_step=self.global_step,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            sparsifier=self.sparsifier.state_dict(),
            rng=_rng_state(self.device),
            history=list(self.history),
            running=dict(self.running),
            config=asdict(self.config),
            grad_scaler=self.scaler.state_dict() if self.scaler is not None else None,
        )

    def save(self) -> Path | None:
        if self.checkpoint_path is None or not self.parallel.rank.is_writer:
            return None
        state = self.state()
        path = save_checkpoint(state, self.checkpoint_path)
        for callback in self.callbacks:
            callback.on_checkpoint(path, state)
        return path

    def resume(self, path: str | Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        # Continuing under other hyperparameters would silently train a different run (the LR
        # schedule depends on the epoch count, the batches on seed and batch size). Only where the
        # run executes may change.
        current = _jsonable_config(self.config)
        saved = _jsonable_config(state.config)
        changed = sorted(k for k in current if k not in RESUME_MAY_CHANGE and saved.get(k) != current[k])
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
            raise CheckpointError(f"{path}: written by a run with different training settings ({details})")
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.sparsifier.load_state_dict(state.sparsifier)
        if self.scaler is not None and state.grad_scaler:
            self.scaler.load_state_dict(state.grad_scaler)
        _set_rng_state(state.rng, self.device)
        if not self.parallel.rank.is_writer:  # the checkpoint holds rank 0's generator
            torch.manual_seed(self.parallel.seed(self.config.seed + state.global_step))
        self.history = list(state.history)
        self.running = dict(state.running)
        if not self.parallel.rank.is_writer:  # rank 0 carries the saved partial sums of every rank
            self.running.update(self.task.zero_stats())
        self.epoch, self.step, self.global_step = state.epoch, state.step, state.global_step

    # -- training --------------------------------------------------------------------------------
    def fit(self) -> TrainOutcome:
        config = self.config
        spe = steps_per_epoch(self.train_data, config, self.task)
        total_steps = spe * config.epochs
        self.model.train()
        while self.epoch < config.epochs:
            epoch = self.epoch
            batches = _batches(self.train_data, config, epoch, self.task)
            if self.step == 0:
                self.running = self._zero_running()
            started = time.perf_counter()
            for step in range(self.step, len(batches)):
                if self.parallel.any(any(cb.should_stop() for cb in self.callbacks)):
                    self.running["seconds"] += time.perf_counter() - started
                    self.running = self._global_running()  # the checkpoint holds all ranks' samples
                    self.save()
                    return TrainOutcome(
                        "stopped", self.epoch, self.step, self.global_step, list(self.history)
                    )
                loss, lr = self._train_step(epoch, step, spe, batches[step])
                self.step, self.global_step = step + 1, self.global_step + 1
                event = StepEvent(epoch, step, spe, self.global_step, total_steps, loss, lr)
                for callback in self.callbacks:
                    callback.on_step(event)
            self.running["seconds"] += time.perf_counter() - started
            self._end_epoch(epoch, learning_rate(config, epoch + (spe - 1) / spe))
            self.epoch, self.step = epoch + 1, 0
            self.save()
        return TrainOutcome("completed", self.epoch, self.step, self.global_step, list(self.history))

    def _train_step(self, epoch: int, step: int, spe: int, index: torch.Tensor) -> tuple[float, float]:
        config = self.config
        lr = learning_rate(config, epoch + step / spe)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.sparsifier.on_step_start(epoch, step, spe, lr)
        task = self.task
        total = int(index.numel())
        index = self.parallel.local_batch(index)
        batch: Batch = task.batch(self.train_data, index).to(self.device)
        if self.augment is not None:
            # Seeded by position, so a resumed run augments exactly like an uninterrupted one.
            seed = self.parallel.seed(_epoch_seed(config.seed, epoch) + step + 1)
            generator = torch.Generator().manual_seed(seed)
            batch = batch.with_inputs(self.augment(batch.inputs, generator))
        local = int(index.numel())
        self.optimizer.zero_grad(set_to_none=True)
        value = 0.0
        # The rank's weight of its share in the ranks' average (1.0 with one process).
        rank_weight = self.parallel.loss_weight(local, total)
        alone = self.parallel.rank.world_size == 1
        micros = batch.split(config.grad_accumulation_steps)
        for position, micro in enumerate(micros):
            rows = int(micro.inputs.shape[0])
            # A last batch smaller than grad_accumulation_steps leaves empty micro-batches: one process
            # skips them; a rank still runs them, since the step's last backward is the ranks' all-reduce.
            if rows == 0 and alone:
                continue
            # Every rank splits into the same grad_accumulation_steps parts, so all agree on which is the
            # last: the earlier ones only add to each rank's own gradients (no all-reduce), and the last
            # backward all-reduces their sum once per optimizer step.
            last = position == len(micros) - 1
            with contextlib.nullcontext() if last else self.parallel.accumulating():
                with self._autocast():
                    logits = task.forward(self.forward, micro)
                    if rows:
                        loss = task.loss(logits, micro, label_smoothing=config.label_smoothing)
                    else:
                        loss = logits.sum() * 0.0
                micro_value = float(loss.detach())  # this process's samples (all of them with one process)
                if not math.isfinite(micro_value):
                    raise FloatingPointError(
                        f"loss became {micro_value} at epoch {epoch + 1}, step {step}; try a lower lr"
                    )
                # Each micro-batch weighs its share of the rank's batch: the summed gradients are its mean's.
                share = rows / local if local else 1.0
                weighted = loss * (share * rank_weight) if share * rank_weight != 1.0 else loss
                (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
            value += micro_value * share
            for key, stat in task.stats(logits.detach(), micro).items():
                self.running[key] += stat
        # Multi-process: gradients are the ranks' average now; LBC forms its signal from them and masks them.
        self.parallel.after_backward(self.model)
        self._optimizer_step()
        count = task.count(batch)
        self.running["loss"] += value * count
        self.running["count"] += count
        return value, lr

    def _optimizer_step(self) -> None:
        """Unscale and clip the gradients, step the sparsifier's deferred scores by the same factor, step."""
        config, scaler = self.config, self.scaler
        grad_scale, finite = 1.0, True
        if scaler is not None:
            scaler.unscale_(self.optimizer)
            grad_scale = 1.0 / scaler.get_scale()
        if config.grad_clip_norm:
            total = float(nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip_norm))
            # clip_grad_norm_'s own factor, so scores and weights are scaled alike.
            grad_scale *= min(1.0, config.grad_clip_norm / (total + 1e-6))
            finite = math.isfinite(total)
        elif scaler is not None:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            finite = math.isfinite(float(nn.utils.get_total_norm(grads)))
        # Without a scaler a non-finite gradient still steps the weights, so the scores step too; with one,
        # GradScaler skips the step on an overflow and the scores drop theirs.
        self.sparsifier.step_scores(grad_scale, skip=scaler is not None and not finite)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        if self.config.precision == "fp16":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def _global_running(self) -> dict[str, float]:
        """The epoch's running statistics summed over the ranks (each one counts its own samples)."""
        running = dict(self.running)
        keys = tuple(self.task.zero_stats())
        running.update(zip(keys, self.parallel.sum([running[k] for k in keys]), strict=True))
        return running

    def _end_epoch(self, epoch: int, lr: float) -> None:
        running = self._global_running()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            **{f"train_{key}": value for key, value in self.task.summarize(running).items()},
            "lr": lr,
            "seconds": running["seconds"],
        }
        if self.val_data is not None and self.parallel.rank.is_writer:
            val = evaluate(self.model, self.val_data, self.config.eval_batch_size, self.device, self.task)
            record.update({f"val_{key}": value for key, value in val.items()})
        # Metrics always say which mask they were measured with.
        record.update(self.sparsifier.metrics())
        self.history.append(record)
        for callback in self.callbacks:
            callback.on_epoch_end(record)
