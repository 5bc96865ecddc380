"""The linear kernels a sparse layer can run on, keyed by device, dtype and N:M pattern.

Every kernel turns a ``[out, in]`` weight into its own operand with ``pack`` and computes
``x @ W^T + b`` with ``linear``: dense (PyTorch's ``F.linear``, everywhere), the CPU N:M kernel (any
pattern, float32/bfloat16) and PyTorch's semi-structured 2:4 tensors (NVIDIA GPUs with sparse tensor
cores, float16/bfloat16, 2:4-compliant patterns) sit side by side; :func:`sparse_kernel_for` says which
sparse one serves a case, or why none does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from lbc_core.export.semi_structured import (
    SHAPE_RULES,
    semi_structured_backend,
    semi_structured_support,
    semi_structured_weight,
)
from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import DTYPES, PackedNM, pack_weight
from lbc_core.sparsity import NMPattern


class LinearKernel(Protocol):
    @property
    def name(self) -> str: ...

    def unavailable_reason(self, device: torch.device, dtype: torch.dtype, pattern: NMPattern) -> str | None:
        """None when this kernel serves the case, else a sentence saying why not."""

    def pack(self, weight: torch.Tensor, pattern: NMPattern) -> Any:
        """The kernel's operand for an N:M ``[out, in]`` weight (already on the device, in the dtype)."""

    def linear(self, x: torch.Tensor, packed: Any, bias: torch.Tensor | None) -> torch.Tensor: ...


@dataclass(frozen=True)
class DenseKernel:
    name: str = "dense"

    def unavailable_reason(self, device: torch.device, dtype: torch.dtype, pattern: NMPattern) -> str | None:
        return None

    def pack(self, weight: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
        return weight

    def linear(self, x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, packed, bias)


@dataclass(frozen=True)
class CpuNMKernel:
    """The native CPU N:M kernel (lbc_core/kernels/native); its pure-PyTorch fallback is not offered as a
    sparse kernel, since it is slower than dense."""

    name: str = "cpu-nm"

    def unavailable_reason(self, device: torch.device, dtype: torch.dtype, pattern: NMPattern) -> str | None:
        if device.type != "cpu":
            return f"the N:M CPU kernel runs on the CPU, not {device.type}"
        if dtype not in DTYPES:
            return f"the N:M CPU kernel takes float32 or bfloat16, not {dtype}"
        status = native_status()
        if not status.available:
            return f"the native N:M CPU kernel is not available here ({status.reason})"
        return None

    def pack(self, weight: torch.Tensor, pattern: NMPattern) -> PackedNM:
        return pack_weight(weight, pattern)

    def linear(self, x: torch.Tensor, packed: PackedNM, bias: torch.Tensor | None) -> torch.Tensor:
        return nm_linear(x, packed, bias)


@dataclass(frozen=True)
class SemiStructuredKernel:
    """PyTorch's semi-structured 2:4 tensors (cuSPARSELt or CUTLASS); see lbc_core.export.semi_structured."""

    name: str = "semi-structured-2:4"

    def unavailable_reason(self, device: torch.device, dtype: torch.dtype, pattern: NMPattern) -> str | None:
        supported, reason = semi_structured_support(device)
        if not supported:
            return reason
        if dtype not in SHAPE_RULES:
            return f"semi-structured 2:4 kernels take {', '.join(map(str, SHAPE_RULES))}, not {dtype}"
        if not pattern.is_24_compliant:
            return f"{pattern} does not guarantee at most 2 non-zeros in every aligned block of 4"
        return None

    def pack(self, weight: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
        backend = semi_structured_backend(torch.cuda.get_device_capability(weight.device))
        if backend is None:
            raise RuntimeError(f"no semi-structured backend on {weight.device}")
        return semi_structured_weight(weight.contiguous(), backend)

    def linear(self, x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, packed, bias)


# Sparse kernels in order of preference; each serves a disjoint set of devices today.
SPARSE_KERNELS: tuple[LinearKernel, ...] = (SemiStructuredKernel(), CpuNMKernel())
DENSE = DenseKernel()


def sparse_kernel_for(
    device: torch.device | str, dtype: torch.dtype, pattern: NMPattern
) -> tuple[LinearKernel | None, str]:
    """The sparse kernel serving ``(device, dtype, pattern)`` and a sentence why, or None and why not."""
    device = torch.device(device)
    reasons = []
    for kernel in SPARSE_KERNELS:
        reason = kernel.unavailable_reason(device, dtype, pattern)
        if reason is None:
            return kernel, f"{kernel.name} serves {pattern} {dtype} on {device.type}"
        reasons.append(f"{kernel.name}: {reason}")
    return None, "; ".join(reasons)


def kernels_for(
    device: torch.device | str, dtype: torch.dtype, pattern: NMPattern
) -> tuple[LinearKernel, ...]:
    """Every kernel serving the case, sparse ones first; dense always serves."""
    device = torch.device(device)
    served = [k for k in SPARSE_KERNELS if k.unavailable_reason(device, dtype, pattern) is None]
    return (*served, DENSE)
