"""Finalized models for the export tests: real sparsifier runs (one-shot magnitude 2:4), no training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, SparsityReport, build_sparsifier

LENET_ARGS = {"num_classes": 10, "in_channels": 1}


@dataclass(frozen=True)
class Finalized:
    model: nn.Module
    report: SparsityReport
    masks: dict[str, torch.Tensor]  # the sparsifier's masks just before finalize
    pattern: NMPattern


def finalize(model: nn.Module, pattern: NMPattern) -> Finalized:
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=pattern))
    sparsifier.prepare(model)
    masks = sparsifier.masks()
    report = sparsifier.finalize()
    return Finalized(model.eval(), report, masks, pattern)


@pytest.fixture
def lenet() -> Finalized:
    torch.manual_seed(0)
    return finalize(build_model("lenet5", **LENET_ARGS), NMPattern(2, 4))


@pytest.fixture
def make_finalized() -> Callable[[nn.Module, NMPattern], Finalized]:
    return finalize


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


@pytest.fixture
def assert_bits_equal() -> Callable[[torch.Tensor, torch.Tensor], None]:
    """Bit-for-bit equality (torch.equal would also accept -0.0 for 0.0)."""

    def check(actual: torch.Tensor, expected: torch.Tensor) -> None:
        assert actual.dtype == expected.dtype
        assert actual.shape == expected.shape
        assert torch.equal(_bits(actual), _bits(expected))

    return check
