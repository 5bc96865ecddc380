"""Linear layers rewritten so that ONNX exporters emit one ``Gemm`` per layer, whatever the input rank.

``nn.Linear`` on a 2-D input exports as ``Gemm``; on 3-D token inputs ``[batch, tokens, features]`` it
exports as ``MatMul`` against a transposed copy of the weight plus ``Add``. TensorRT picks sparse tactics
for ``Gemm`` (and ``Conv``) with constant weights far more reliably than for ``MatMul``, so every linear
layer becomes ``Reshape -> Gemm -> Reshape``: the two reshapes are free views and the numbers are those
of ``F.linear`` on the same values. The rewrite works on a copy; the caller's model is not touched.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from lbc_core.sparsity.pattern import IN_OUT, linear_view
from lbc_core.sparsity.pattern import OUT_IN as LINEAR_LAYOUT
from lbc_core.sparsity.selection import adapter_for

# How the exported initializer of each rewritten layer is laid out (the manifest records it).
OUT_IN = "[out, in]"
TRANSPOSED_CONV1D = "[out, in] (transposed from the checkpoint's Conv1D [in, out])"


class GemmLinear(nn.Module):
    """``y = x W^T + b`` on a 2-D view of ``x``: one ``Gemm`` node (``transB=1``) in the exported graph."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        y = F.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return y.reshape(*lead, y.shape[-1])


# The Gemm weight's layout per weight layout of the engine's layer adapters (lbc_core.sparsity.selection).
GEMM_LAYOUTS = {LINEAR_LAYOUT: OUT_IN, IN_OUT: TRANSPOSED_CONV1D}


def _overridden_linear(module: nn.Module) -> bool:
    # A subclass with its own forward (LoRA, quantized layers) computes something else: left as it is.
    return isinstance(module, nn.Linear) and type(module).forward is not nn.Linear.forward


def gemm_ready(model: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """A copy of ``model`` in eval mode whose linear layers are :class:`GemmLinear`, and their layouts.

    Which modules are linear and how their weight is laid out comes from the engine's layer adapters
    (``lbc_core.sparsity.selection.adapter_for``): ``nn.Linear`` and transformers' ``Conv1D``; Conv2d
    stays a ``Conv``. The copy keeps parameter names (``fc1.weight`` stays ``fc1.weight``) and tied
    weights stay shared. Conv1D weights are transposed to ``[out, in]`` so every Gemm weight has the same
    layout as an ``nn.Linear`` weight (``transB=1``), with N:M groups along its last axis.
    """
    ready = copy.deepcopy(model).eval()
    layouts: dict[str, str] = {}
    for parent_name, parent in list(ready.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            adapter = adapter_for(child)
            if adapter is None or adapter.layout not in GEMM_LAYOUTS or _overridden_linear(child):
                continue
            weight = child.weight
            assert isinstance(weight, torch.Tensor)  # adapters only take modules with a weight
            bias = child.bias if isinstance(child.bias, torch.Tensor) else None
            if adapter.layout == IN_OUT:
                # A fresh constant in the Linear layout, with the N:M groups along its last axis.
                weight = nn.Parameter(linear_view(weight.detach(), IN_OUT).contiguous(), requires_grad=False)
            setattr(parent, child_name, GemmLinear(weight, bias))
            layouts[name] = GEMM_LAYOUTS[adapter.layout]
    return ready, layouts
