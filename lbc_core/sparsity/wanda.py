"""Wanda N:M (Sun et al., ICLR 2024): one-shot pruning by |weight| x input-activation norm.

A weight's importance is ``|W_ij| * ||X_j||_2``, the norm of input feature ``j`` taken over every
token, position and sample of a calibration set; each N:M group keeps its N most important weights.
The mask is fixed after calibration and the weights fine-tune under it, as for the one-shot
magnitude baseline (``asp``), which is the special case of equal input norms.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lbc_core.sparsity.base import MaskedWeight, Sparsifier, SparsifierStateError
from lbc_core.sparsity.calibration import RunForward, input_features, input_norms
from lbc_core.sparsity.pattern import NMPattern, magnitude_mask
from lbc_core.sparsity.selection import LayerPolicy, adapter_for


def wanda_importance(module: nn.Module, weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """``|W| * ||X_j||`` in fp32, the norm broadcast along ``module``'s reduction dimension."""
    scale = input_features(module).to_weight(input_norm.to(weight.device, torch.float32), weight)
    return weight.detach().float().abs() * scale


def wanda_mask(
    module: nn.Module, weight: torch.Tensor, input_norm: torch.Tensor, pattern: NMPattern
) -> torch.Tensor:
    """Boolean mask keeping the ``n`` most important weights of every group (ties: lowest index)."""
    # magnitude_mask ranks |x| per group, and the importance is already non-negative.
    adapter = adapter_for(module)
    layout = adapter.layout if adapter is not None else None
    return magnitude_mask(wanda_importance(module, weight, input_norm), pattern, layout)


def original_weight(module: nn.Module) -> torch.Tensor:
    """The unmasked weight of a layer carrying a mask parametrization."""
    return module.parametrizations["weight"].original  # type: ignore[index,union-attr]


class WandaSparsifier(Sparsifier):
    """One-shot Wanda N:M masks from a calibration pass, then fine-tuning with the masks fixed.

    Until :meth:`calibrate` runs, layers compute densely (the calibration must see the dense model);
    training or finalizing before that is an error. The masks are buffers saved with the model, so a
    resumed run keeps them and is not recalibrated on weights that have since moved.
    """

    method = "wanda"

    def __init__(self, pattern: NMPattern, policy: LayerPolicy | None = None) -> None:
        super().__init__(pattern, policy)
        self.calibrated = False

    @property
    def needs_calibration(self) -> bool:
        return not self.calibrated

    def _make_parametrization(self, weight: torch.Tensor, layout: str) -> nn.Module:
        return MaskedWeight(torch.ones_like(weight, dtype=torch.bool), weight.dtype)

    @torch.no_grad()
    def calibrate(self, run_forward: RunForward) -> None:
        modules = self._require_prepared().modules
        if self.calibrated:
            raise SparsifierStateError("Wanda masks are already calibrated; they stay fixed")
        norms = input_norms(modules, run_forward)
        for name, module in modules.items():
            mask = wanda_mask(module, original_weight(module), norms[name], self.pattern)
            self._parametrization(module).mask.copy_(mask)
        self.calibrated = True

    def on_step_start(self, epoch: int, step: int, steps_per_epoch: int, lr: float) -> None:
        self._require_calibrated()

    def _before_finalize(self) -> None:
        self._require_calibrated()

    def _require_calibrated(self) -> None:
        if not self.calibrated:
            raise SparsifierStateError("Wanda needs calibrate(run_forward) before training or finalize")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["calibrated"] = self.calibrated
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.calibrated = bool(state.get("calibrated", False))


__all__ = ["WandaSparsifier", "original_weight", "wanda_importance", "wanda_mask"]
