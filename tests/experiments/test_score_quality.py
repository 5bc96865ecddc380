"""The oracle and agreement logic of experiments/score_quality.py on tiny layers with known answers.

Constructed case: a Linear layer with 4 inputs and 3 outputs at 2:4, so each output row is exactly
one group and rows do not interact. The target is the layer's output under a known "true" mask and
the loss is the squared error, so for every group the loss is (error of the other rows, the same for
every candidate) + ``|x (w_g * (T[c] - T[true_g]))|^2``: zero only at the true combination.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lbc_core.sparsity import NMPattern

REPO = Path(__file__).resolve().parents[2]
PATTERN = NMPattern(2, 4)  # combinations: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)


def _module():  # type: ignore[no-untyped-def]
    name = "experiments_score_quality"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / "score_quality.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets.unsqueeze(0)) ** 2).sum(dim=2).mean(dim=1)


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    weight = torch.tensor(
        [[1.0, -2.0, 0.5, 3.0], [2.0, 1.5, -1.0, 0.7], [-0.4, 2.5, 1.2, -1.8]], dtype=torch.float64
    )
    bias = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    true = torch.tensor([5, 0, 3])
    table = PATTERN.combination_table().to(torch.float64)
    targets = x @ (weight * table[true]).T + bias
    return x, weight, bias, true, targets


@pytest.mark.parametrize("base", [[0, 0, 0], [5, 0, 3], [4, 1, 2]], ids=str)
def test_greedy_oracle_finds_the_known_best_combination_from_any_base(base: list[int]) -> None:
    sq = _module()
    x, weight, bias, true, targets = _case()
    choice, losses = sq.greedy_oracle(
        x, weight, bias, torch.tensor(base), PATTERN, nn.Identity(), targets, loss_fn=_squared_error
    )
    assert choice.tolist() == true.tolist()
    assert losses.shape == (3, PATTERN.num_combinations)
    # Each candidate's loss is that of the network with only this group changed: check one directly.
    table = PATTERN.combination_table().to(torch.float64)
    combos = torch.tensor(base)
    combos[1] = 4
    direct = ((x @ (weight * table[combos]).T + bias - targets) ** 2).sum(dim=1).mean()
    torch.testing.assert_close(losses[1, 4], direct)
    seq = sq.sequential_oracle(
        x, weight, bias, torch.tensor(base), PATTERN, nn.Identity(), targets, _squared_error
    )
    assert seq.tolist() == true.tolist()


def test_greedy_oracle_uses_the_rest_of_the_network_and_cross_entropy_by_default() -> None:
    sq = _module()
    # One group per row; class r is right iff output r is the largest. Row 0 keeps positions
    # (0, 1), which see the +x features; the alternatives are worse for the targets below.
    x = torch.tensor([[3.0, 3.0, -3.0, -3.0]] * 4)
    weight = torch.ones(2, 4)
    targets = torch.zeros(4, dtype=torch.long)  # class 0 everywhere: output 0 high, output 1 low
    choice, _ = sq.greedy_oracle(x, weight, None, torch.tensor([5, 5]), PATTERN, nn.Identity(), targets)
    assert choice.tolist() == [0, 5]  # row 0 keeps the +3 inputs, row 1 the -3 inputs


def test_combination_index_and_agreement() -> None:
    sq = _module()
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]])
    assert sq.combination_index(masks, PATTERN).tolist() == [0, 5, 4]
    with pytest.raises(ValueError, match="group 1 keeps 3 of 4, not exactly 2"):
        sq.combination_index(torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]), PATTERN)
    a, b = torch.tensor([0, 1, 2, 5]), torch.tensor([0, 1, 3, 4])
    result = sq.agreement(a, b, PATTERN)
    assert result["exact_match"] == 0.5
    # overlaps: 2/2, 2/2, (0,3) vs (1,2): 0, (2,3) vs (1,3): 1/2
    assert result["mean_overlap"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
