"""Text tasks: sequence classification (tokenized texts with an attention mask and a label each) and
causal language modelling (blocks of token ids; the task shifts them into next-token targets, so any
model that maps ids to per-position logits works, ours or a ``transformers`` one)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from lbc_core.tasks.base import Batch, Metric, Task, TaskError
from lbc_core.tasks.image import ClassificationMetrics

__all__ = ["CausalLM", "SequenceClassification"]


class SequenceClassification(ClassificationMetrics):
    """Data with ``input_ids``, ``attention_mask`` (N x max_length) and ``labels`` (TokenizedTexts).

    The model is called with ``input_ids`` and ``attention_mask`` as keywords, as ``transformers``
    sequence classifiers take them, and returns one row of class logits per text.
    """

    name: ClassVar[str] = "sequence-classification"
    primary_metric: ClassVar[Metric] = Metric.primary_of(name)

    def size(self, data: Any) -> int:
        return int(data.labels.shape[0])

    def batch(self, data: Any, index: torch.Tensor) -> Batch:
        return Batch(data.input_ids[index], data.labels[index], data.attention_mask[index])

    def model_inputs(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        assert batch.attention_mask is not None  # batch() always sets it
        return (), {"input_ids": batch.inputs, "attention_mask": batch.attention_mask}

    def labels_of(self, data: Any) -> torch.Tensor:
        labels: torch.Tensor = data.labels
        return labels

    def data_info(self, data: Any) -> dict[str, Any]:
        # The label mapping: id i stands for classes[i] (string labels are mapped in sorted order).
        return {"classes": list(data.classes)}


class CausalLM(Task):
    """Data with ``ids`` (N x block_size token ids: TokenBlocks). Position t predicts token t + 1, so a
    block of T tokens gives T - 1 predictions; the metric is perplexity, exp(mean token NLL)."""

    name: ClassVar[str] = "causal-lm"
    primary_metric: ClassVar[Metric] = Metric.primary_of(name)

    def size(self, data: Any) -> int:
        return int(data.ids.shape[0])

    def batch(self, data: Any, index: torch.Tensor) -> Batch:
        ids = data.ids[index]
        return Batch(ids, ids)

    def model_inputs(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        # Packed blocks have no padding, so no attention mask; no labels either: the shift happens here.
        return (), {"input_ids": batch.inputs}

    def loss(
        self, logits: torch.Tensor, batch: Batch, *, reduction: str = "mean", label_smoothing: float = 0.0
    ) -> torch.Tensor:
        if logits.dim() != 3 or logits.shape[:2] != batch.targets.shape:
            raise TaskError(
                f"a causal LM must return logits of shape [batch, tokens, vocabulary]; got {list(logits.shape)} "
                f"for {list(batch.targets.shape)} token ids"
            )
        predicted = logits[:, :-1, :]
        targets = batch.targets[:, 1:]
        return nn.functional.cross_entropy(
            predicted.reshape(-1, predicted.shape[-1]),
            targets.reshape(-1),
            reduction=reduction,
            label_smoothing=label_smoothing,
        )

    def count(self, batch: Batch) -> int:
        return int(batch.targets.shape[0]) * max(int(batch.targets.shape[1]) - 1, 0)

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        loss = sums["loss"] / max(sums["count"], 1)
        # A diverged mean NLL above ~709 overflows exp(); infinity says the same and stays a float.
        return {"loss": loss, "perplexity": math.exp(loss) if loss < 709 else math.inf}

    def learning_warnings(
        self, history: Any, final: Mapping[str, float], train: Any, val_data: Any
    ) -> list[Any]:
        from lbc_core.training.learning_check import language_model_warnings  # see ClassificationMetrics

        return language_model_warnings(
            vocab_size=int(val_data.vocab_size), train=train, val_perplexity=final.get("perplexity")
        )

    def data_info(self, data: Any) -> dict[str, Any]:
        return {"block_size": int(data.ids.shape[1])}
