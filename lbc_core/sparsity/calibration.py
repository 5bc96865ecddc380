"""Input-activation statistics of the sparsified layers, gathered over a calibration set.

Methods that weigh a weight by the activations it multiplies (Wanda, LBC's Wanda prior) need, per
layer, the L2 norm of every input feature over all calibration tokens, positions and samples. The
caller owns the data: it passes ``run_forward``, which runs the model over the calibration set; this
module only hooks the layers while that runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from lbc_core.sparsity.pattern import IN_OUT
from lbc_core.sparsity.selection import adapter_for

RunForward = Callable[[], None]


class CalibrationError(ValueError):
    """Calibration saw no data for a layer, or a layer this module cannot read inputs of: a property of
    the model and data as given (a ValueError, so a job reports it as input and is not retried)."""


@dataclass(frozen=True)
class InputFeatures:
    """Where a layer's input features sit in its activations and in its weight.

    ``activation_dim``: the input tensor's feature dimension (every other dimension is summed over).
    ``weight_dim``: the weight's reduction (input) dimension, along which its N:M groups run.
    """

    activation_dim: int
    weight_dim: int

    def to_weight(self, per_feature: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``per_feature`` (one value per input feature) shaped to broadcast against ``weight``."""
        shape = [1] * weight.dim()
        shape[self.weight_dim] = per_feature.numel()
        return per_feature.reshape(shape)


def input_features(module: nn.Module) -> InputFeatures:
    """How ``module``'s input norm maps onto its weight: the ONE place that knows each layer type.

    A layer type whose weight stores the reduction dimension elsewhere (a ``[in, out]`` weight, say)
    adds its case here, and every importance built on input norms follows.
    """
    if isinstance(module, nn.Conv2d):
        # Input (B, Cin, H, W); weight (out, Cin, kh, kw): channel c's norm over every position and
        # sample scales all kh * kw taps that read channel c.
        return InputFeatures(activation_dim=1, weight_dim=1)
    if isinstance(module, nn.Linear):
        # Input (..., in); weight (out, in).
        return InputFeatures(activation_dim=-1, weight_dim=1)
    adapter = adapter_for(module)
    if adapter is not None and adapter.layout == IN_OUT:
        # transformers' Conv1D (GPT-2): input (..., in); weight (in, out).
        return InputFeatures(activation_dim=-1, weight_dim=0)
    raise CalibrationError(f"no input-feature layout is known for {type(module).__name__}")


class _SquareSums:
    """Forward pre-hook accumulating the fp32 sum of squares of every input feature."""

    def __init__(self, features: InputFeatures) -> None:
        self.features = features
        self.total: torch.Tensor | None = None
        self.rows = 0

    def __call__(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach()
        # fp32 whatever the activations' dtype: sums over many tokens overflow or lose bits in bf16.
        flat = x.movedim(self.features.activation_dim, -1).reshape(-1, x.shape[self.features.activation_dim])
        sums = flat.float().square().sum(dim=0)
        self.total = sums if self.total is None else self.total + sums
        self.rows += flat.shape[0]


def input_norms(modules: Mapping[str, nn.Module], run_forward: RunForward) -> dict[str, torch.Tensor]:
    """Per layer, the fp32 L2 norm of each input feature over everything ``run_forward`` feeds it.

    Hooks are removed however ``run_forward`` ends; a layer that saw no input is an error (a
    calibration set that never reaches it would otherwise silently prune it by magnitude alone).
    """
    hooks: dict[str, _SquareSums] = {name: _SquareSums(input_features(m)) for name, m in modules.items()}
    handles = [modules[name].register_forward_pre_hook(hook) for name, hook in hooks.items()]
    try:
        run_forward()
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name, hook in hooks.items() if hook.total is None]
    if missing:
        raise CalibrationError(
            "the calibration forward never reached layer(s) "
            + ", ".join(missing[:8])
            + (" ..." if len(missing) > 8 else "")
        )
    return {name: hook.total.sqrt() for name, hook in hooks.items() if hook.total is not None}


__all__ = ["CalibrationError", "InputFeatures", "RunForward", "input_features", "input_norms"]
