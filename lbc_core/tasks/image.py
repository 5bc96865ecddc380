"""Image (and flat-feature) classification: ``(x, y)`` tensors in, cross-entropy, top-1 accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lbc_core.tasks.base import Batch, Metric, Task

__all__ = ["ClassificationMetrics", "ImageClassification"]


class ClassificationMetrics(Task):
    """Cross-entropy over one prediction per sample, and top-1 accuracy (shared by every classifier)."""

    def loss(
        self, logits: torch.Tensor, batch: Batch, *, reduction: str = "mean", label_smoothing: float = 0.0
    ) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits, batch.targets, reduction=reduction, label_smoothing=label_smoothing
        )

    def count(self, batch: Batch) -> int:
        return int(batch.targets.shape[0])

    def stats(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"correct": int((logits.argmax(dim=1) == batch.targets).sum())}

    def zero_stats(self) -> dict[str, float]:
        return {"loss": 0.0, "correct": 0.0, "count": 0.0}

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        count = max(sums["count"], 1)
        return {"loss": sums["loss"] / count, "accuracy": sums["correct"] / count}

    def learning_warnings(
        self,
        history: Sequence[Mapping[str, Any]],
        final: Mapping[str, float],
        train: Any,
        val_data: Any,
    ) -> list[Any]:
        # Imported here: the training package imports the tasks, so a module-level import would be a cycle.
        from lbc_core.training.learning_check import learning_warnings

        labels = self.labels_of(val_data)
        majority = float(torch.bincount(labels.long()).max()) / labels.numel() if labels.numel() else None
        return learning_warnings(
            history,
            num_classes=len(val_data.classes),
            train=train,
            val_accuracy=final.get("accuracy"),
            majority_share=majority,
        )

    def labels_of(self, data: Any) -> torch.Tensor:
        """Every sample's class id (the learning check's chance level comes from the commonest one)."""
        labels: torch.Tensor = data.y
        return labels


class ImageClassification(ClassificationMetrics):
    """Data with a float tensor ``x`` (N x C x H x W or N x F) and int64 labels ``y`` (an ArrayDataset)."""

    name: ClassVar[str] = "image-classification"
    primary_metric: ClassVar[Metric] = Metric.primary_of(name)

    def size(self, data: Any) -> int:
        return int(data.y.shape[0])

    def batch(self, data: Any, index: torch.Tensor) -> Batch:
        return Batch(data.x[index], data.y[index])
