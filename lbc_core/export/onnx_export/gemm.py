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


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): a linear layer whose weight is stored ``[in, out]``.

    Recognised by shape rather than imported, so exporting a catalog model never imports transformers.
    """
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and type(module).__module__.startswith("transformers")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and weight.shape[1] == getattr(module, "nf", None)
    )


def _plain_linear(module: nn.Module) -> bool:
    # A subclass with its own forward (LoRA, quantized layers) computes something else: left as it is.
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def gemm_ready(model: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """A copy of ``model`` in eval mode whose linear layers are :class:`GemmLinear`, and their layouts.

    The copy keeps parameter names (``fc1.weight`` stays ``fc1.weight``) and tied weights stay shared.
    Conv1D weights are transposed to ``[out, in]`` so every Gemm weight has the same layout as an
    ``nn.Linear`` weight, with N:M groups along its last axis.
    """
    ready = copy.deepcopy(model).eval()
    layouts: dict[str, str] = {}
    for parent_name, parent in list(ready.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if _plain_linear(child):
                assert isinstance(child, nn.Linear)
                setattr(parent, child_name, GemmLinear(child.weight, child.bias))
                layouts[name] = OUT_IN
            elif is_hf_conv1d(child):
                weight = nn.Parameter(child.weight.detach().t().contiguous(), requires_grad=False)
                bias = child.bias if isinstance(child.bias, torch.Tensor) else None
                setattr(parent, child_name, GemmLinear(weight, bias))
                layouts[name] = TRANSPOSED_CONV1D
    return ready, layouts
