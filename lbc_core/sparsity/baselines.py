"""Baselines in the same harness: dense, one-shot magnitude N:M (ASP style) and SR-STE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lbc_core.sparsity.base import MaskedWeight, Sparsifier
from lbc_core.sparsity.pattern import NMPattern, magnitude_mask
from lbc_core.sparsity.selection import DenseDefault, LayerPolicy, LayerSelection, SkippedLayer, select_layers


class DenseSparsifier(Sparsifier):
    """No mask: the reference every sparse method is compared with."""

    method = "dense"

    def _select(self, model: nn.Module, dense_defaults: Mapping[str, DenseDefault] | None) -> LayerSelection:
        selection = select_layers(model, self.pattern, self.policy, dense_defaults)
        dense = tuple(
            SkippedLayer(t.name, t.kind, t.shape, "dense method keeps every layer dense")
            for t in selection.targets
        )
        return LayerSelection((), dense + selection.skipped)


class MagnitudeSparsifier(Sparsifier):
    """One-shot magnitude N:M (NVIDIA ASP style): keep the N largest |w| per group once, then train
    with that mask fixed (weights and gradients masked). Normally applied to a trained dense model."""

    method = "asp"

    def _make_parametrization(self, weight: torch.Tensor, layout: str) -> nn.Module:
        return MaskedWeight(magnitude_mask(weight, self.pattern, layout), weight.dtype)


class _SRSTEFn(torch.autograd.Function):
    """Forward with the magnitude top-N mask; the dense weight gets the straight-through gradient
    plus a decay ``lambda_w * w`` on the pruned entries (Zhou et al., ICLR 2021)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, mask: torch.Tensor, decay: float) -> torch.Tensor:
        ctx.save_for_backward(weight, mask)
        ctx.decay = decay
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        weight, mask = ctx.saved_tensors
        grad = grad_out + ctx.decay * weight * (1 - mask) if ctx.decay else grad_out
        return grad, None, None


class SRSTEMask(nn.Module):
    """Parametrization recomputing the magnitude mask every forward pass."""

    mask: torch.Tensor

    def __init__(
        self, weight: torch.Tensor, pattern: NMPattern, decay: float, layout: str | None = None
    ) -> None:
        super().__init__()
        self.pattern = pattern
        self.decay = decay
        self.layout = layout
        self.register_buffer("mask", magnitude_mask(weight, pattern, layout).to(weight.dtype))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mask = magnitude_mask(weight, self.pattern, self.layout).to(weight.dtype)
        self.mask.copy_(mask)
        if self.training and torch.is_grad_enabled():
            return _SRSTEFn.apply(weight, mask, self.decay)
        return weight * mask


class SRSTESparsifier(Sparsifier):
    """SR-STE: dynamic magnitude N:M masks with sparse-refined straight-through gradients."""

    method = "srste"

    def __init__(self, pattern: NMPattern, policy: LayerPolicy | None = None, decay: float = 2e-4) -> None:
        super().__init__(pattern, policy)
        if decay < 0:
            raise ValueError(f"SR-STE lambda_w must be >= 0, got {decay}")
        self.decay = decay

    def _make_parametrization(self, weight: torch.Tensor, layout: str) -> nn.Module:
        return SRSTEMask(weight, self.pattern, self.decay, layout)


__all__ = ["DenseSparsifier", "MagnitudeSparsifier", "SRSTESparsifier"]
