"""Image classification as a task: batches by index, cross-entropy and accuracy by hand, logits read from
any output form, calibration on a fixed sample."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lbc_core.tasks import Batch, ImageClassification, TaskError, get_task, logits_of
from lbc_core.training import evaluate

TASK = ImageClassification()


def _data() -> SimpleNamespace:
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    return SimpleNamespace(x=x, y=torch.tensor([0, 1, 1, 0]))


def test_a_batch_is_the_rows_at_the_index() -> None:
    data = _data()
    batch = TASK.batch(data, torch.tensor([2, 0]))
    assert torch.equal(batch.inputs, data.x[[2, 0]])
    assert torch.equal(batch.targets, torch.tensor([1, 0]))
    assert batch.attention_mask is None
    assert TASK.size(data) == 4


def test_loss_and_accuracy_match_a_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    batch = Batch(torch.zeros(3, 1), torch.tensor([0, 1, 1]))
    # -log softmax of the true class, row by row.
    by_hand = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(2.0))]
    assert float(TASK.loss(logits, batch, reduction="sum")) == pytest.approx(sum(by_hand), rel=1e-6)
    assert float(TASK.loss(logits, batch)) == pytest.approx(sum(by_hand) / 3, rel=1e-6)
    sums = TASK.zero_stats()
    sums["loss"] += float(TASK.loss(logits, batch, reduction="sum"))
    for key, value in TASK.stats(logits, batch).items():
        sums[key] += value
    sums["count"] += TASK.count(batch)
    metrics = TASK.summarize(sums)
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # rows 0 and 1 are right, row 2 is wrong
    assert metrics["loss"] == pytest.approx(sum(by_hand) / 3, rel=1e-6)


def test_label_smoothing_reaches_the_loss() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    batch = Batch(torch.zeros(1, 1), torch.tensor([0]))
    smoothed = float(TASK.loss(logits, batch, label_smoothing=0.2))
    log_p = torch.log_softmax(logits, dim=1)[0]
    assert smoothed == pytest.approx(float(-(0.9 * log_p[0] + 0.1 * log_p[1])), rel=1e-6)


def test_the_primary_metric_is_validation_accuracy_higher_is_better() -> None:
    assert TASK.primary_metric.key == "val_accuracy"
    assert TASK.primary_metric.higher_is_better
    assert get_task("image-classification") is get_task(TASK.name)
    with pytest.raises(TaskError, match="unknown task 'speech'"):
        get_task("speech")


class _WithLogits(nn.Module):
    """Returns its logits as a transformers model does: in an output object's .logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> object:
        return SimpleNamespace(logits=self.linear(x))


def test_logits_are_read_from_a_tensor_or_a_model_output() -> None:
    tensor = torch.ones(2, 2)
    assert logits_of(tensor) is tensor
    assert logits_of(SimpleNamespace(logits=tensor)) is tensor
    assert logits_of({"logits": tensor}) is tensor
    with pytest.raises(TaskError, match=r"neither a tensor of logits nor an output with a \.logits"):
        logits_of((tensor,))


def test_evaluate_gives_the_same_metrics_for_a_model_returning_a_model_output() -> None:
    torch.manual_seed(0)
    wrapped = _WithLogits()
    data = _data()
    plain = evaluate(wrapped.linear, data, batch_size=3, device=torch.device("cpu"))
    assert evaluate(wrapped, data, batch_size=3, device=torch.device("cpu"), task=TASK) == plain


def test_calibration_runs_the_model_on_a_fixed_number_of_samples_in_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    seen: list[int] = []
    model[0].register_forward_hook(lambda _m, args, _out: seen.append(int(args[0].shape[0])))
    run_forward = TASK.calibration_forward(model, _data(), num_samples=3, batch_size=2, seed=1)
    model.train()
    run_forward()
    assert seen == [2, 1]
    assert model.training  # the mode is restored
    again: list[int] = []
    model[0].register_forward_hook(lambda _m, args, _out: again.append(int(args[0].sum())))
    run_forward()
    first = list(again)
    run_forward()
    assert again[len(first) :] == first  # the same samples every call
