"""What a task is to the training loop: how data becomes batches, how the model is called and read, the
loss, and the metrics with the one that ranks runs (the primary metric).

The loop, evaluation, calibration and the run's records go through a :class:`Task`, so image
classification, sequence classification and causal language modelling share one loop. A task's data is
an in-memory set whose batches are cut by an index tensor; the task alone knows its fields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lbc_catalog.tasks import TASKS

__all__ = ["Batch", "Metric", "Task", "TaskError", "logits_of"]


class TaskError(ValueError):
    """Data or a model output that does not fit the task; the message names what is wrong."""


@dataclass(frozen=True)
class Metric:
    """A validation metric: its name in records (``val_<name>``) and which direction is better."""

    name: str
    higher_is_better: bool

    @property
    def key(self) -> str:
        """The key the metric has in a run's per-epoch records and final metrics."""
        return f"val_{self.name}"

    @classmethod
    def primary_of(cls, task: str) -> Metric:
        """The primary metric the catalog (lbc_catalog.tasks, read by the service too) gives ``task``."""
        entry = TASKS[task]
        return cls(entry.primary_metric, entry.higher_is_better)


# eq=False: the batch holds tensors, for which field-wise equality is meaningless.
@dataclass(frozen=True, eq=False)
class Batch:
    """One batch: the model's main input, what the loss compares against, and an optional padding mask.

    ``inputs`` are images (float) or token ids (int64); ``targets`` are class labels, or the token ids
    themselves for language modelling (the task shifts them); ``attention_mask`` marks real tokens (1)
    against padding (0).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    attention_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        mask = self.attention_mask
        return Batch(
            self.inputs.to(device, non_blocking=True),
            self.targets.to(device, non_blocking=True),
            None if mask is None else mask.to(device, non_blocking=True),
        )

    def with_inputs(self, inputs: torch.Tensor) -> Batch:
        return Batch(inputs, self.targets, self.attention_mask)

    def split(self, parts: int) -> list[Batch]:
        """``parts`` consecutive micro-batches along the sample axis (some empty when there are fewer
        samples than parts), for gradient accumulation."""
        if parts == 1:
            return [self]
        mask = self.attention_mask
        masks = [None] * parts if mask is None else list(mask.tensor_split(parts))
        return [
            Batch(inputs, targets, m)
            for inputs, targets, m in zip(
                self.inputs.tensor_split(parts), self.targets.tensor_split(parts), masks, strict=True
            )
        ]


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: the tensor our catalog models return, or the ``.logits`` of a
    ``transformers`` ModelOutput (also read as a mapping, which ModelOutput is)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if not isinstance(logits, torch.Tensor):
        raise TaskError(
            f"the model returned {type(output).__name__}, which is neither a tensor of logits nor an "
            "output with a .logits tensor"
        )
    return logits


class Task(ABC):
    """Data -> batches -> model call -> loss and metrics, for one kind of problem.

    Metric sums are plain floats keyed by name (``loss`` and ``count`` always, more per task), so the
    loop can keep them in its checkpoint and a resumed run reports exactly what an uninterrupted one does.
    """

    name: ClassVar[str]
    primary_metric: ClassVar[Metric]

    # -- data -------------------------------------------------------------------------------------
    @abstractmethod
    def size(self, data: Any) -> int:
        """Number of samples in ``data``."""

    @abstractmethod
    def batch(self, data: Any, index: torch.Tensor) -> Batch:
        """The samples of ``data`` at ``index`` (a 1-D int64 tensor), on the CPU."""

    def example_batch(self, data: Any, n: int = 1) -> Batch:
        """The first ``n`` samples: what benchmarks, export and the shape probe feed the model."""
        return self.batch(data, torch.arange(min(n, self.size(data))))

    # -- the model --------------------------------------------------------------------------------
    def model_inputs(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        """Positional and keyword arguments of the model call. The default passes the input alone,
        positionally (our catalog models and ``transformers`` vision models both take it first)."""
        return (batch.inputs,), {}

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Run ``model`` on ``batch`` and return its logits, whatever form its output takes."""
        args, kwargs = self.model_inputs(batch)
        return logits_of(model(*args, **kwargs))

    # -- loss and metrics -------------------------------------------------------------------------
    @abstractmethod
    def loss(
        self, logits: torch.Tensor, batch: Batch, *, reduction: str = "mean", label_smoothing: float = 0.0
    ) -> torch.Tensor:
        """The training objective over the batch's predictions (``count`` of them): mean or sum."""

    @abstractmethod
    def count(self, batch: Batch) -> int:
        """How many predictions the loss averages over: samples, or target tokens."""

    def stats(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Sums beyond loss and count that the metrics need (e.g. correct predictions)."""
        return {}

    def zero_stats(self) -> dict[str, float]:
        """The empty sums a loop or evaluation starts from."""
        return {"loss": 0.0, "count": 0.0}

    @abstractmethod
    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Metrics from accumulated sums: ``loss`` (mean per prediction) and the task's metrics."""

    # -- what a run reports -----------------------------------------------------------------------
    def learning_warnings(
        self,
        history: Sequence[Mapping[str, Any]],
        final: Mapping[str, float],
        train: Any,
        val_data: Any,
    ) -> list[Any]:
        """Warnings for a finished run that trained but learnt nothing (see training.learning_check)."""
        return []

    def data_info(self, data: Any) -> dict[str, Any]:
        """What an export records about the data this task trained on (beyond sizes)."""
        return {}

    # -- calibration ------------------------------------------------------------------------------
    def calibration_forward(
        self,
        model: nn.Module,
        data: Any,
        num_samples: int,
        *,
        batch_size: int = 32,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> Callable[[], None]:
        """A callable that runs ``model`` on ``num_samples`` training samples (fixed by ``seed``), in eval
        mode without gradients, for one-shot methods that read activations through hooks."""
        total = self.size(data)
        if total == 0:
            raise TaskError("calibration needs at least one sample")
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        index = order[: min(num_samples, total)]

        def run_forward() -> None:
            target = device or next(model.parameters()).device
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    for chunk in index.split(batch_size):
                        self.forward(model, self.batch(data, chunk).to(target))
            finally:
                model.train(was_training)

        return run_forward
