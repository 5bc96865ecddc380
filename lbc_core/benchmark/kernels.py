"""The sparse kernel a report times: PyTorch's semi-structured 2:4 tensors on GPUs that have them, the
native N:M kernel (lbc_core.kernels) on CPUs where it is built.

The report takes the kernel as a value so its decision logic can be exercised with a stand-in on
machines without sparse tensor cores; real reports use :func:`device_kernel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lbc_core.export import (
    SHAPE_RULES,
    SemiStructuredResult,
    SkippedConversion,
    semi_structured_ineligibility,
    semi_structured_support,
    to_semi_structured,
)
from lbc_core.export.semi_structured import (
    CUSPARSELT_BACKEND,
    CUTLASS_BACKEND,
    semi_structured_backend,
    semi_structured_weight,
)
from lbc_core.sparsity import NMPattern, count_violations

CUSPARSELT = "cuSPARSELt"
CUTLASS = "CUTLASS"
NO_BACKEND = "none"
CPU_NM_BACKEND = "lbc-nm"  # followed by the ISA path: "lbc-nm avx512"

# PyTorch pads the dense operand's rows to a multiple of 8 inside the semi-structured matmul (fp16/bf16,
# both backends, PyTorch 2.1x). Doing it explicitly inside the timed call makes the padding's cost part
# of the sparse time on every version, and lets the report say when it happened.
DENSE_ROW_MULTIPLE = 8


@dataclass(frozen=True)
class SparseKernel:
    """How to turn weights and models into their sparse-kernel form on one device."""

    backend: str  # CUSPARSELT | CUTLASS (or a test stand-in's name)
    description: str  # why this device has it, in words
    dtypes: tuple[torch.dtype, ...]  # dtypes the kernel serves; others are timed dense only
    # A 2-D dense ``(out, in)`` weight in a served dtype, on the device -> the operand F.linear runs sparse.
    convert_weight: Callable[[torch.Tensor], Any]
    # Converts eligible Linear layers in place (see lbc_core.export.to_semi_structured).
    convert_model: Callable[[nn.Module, torch.dtype], SemiStructuredResult]
    dense_row_multiple: int = DENSE_ROW_MULTIPLE
    label: str = "2:4 kernel"  # how sentences name it
    # (x, converted weight, bias) -> x @ W^T + bias on the kernel.
    linear: Callable[[torch.Tensor, Any, torch.Tensor | None], torch.Tensor] = F.linear
    # (layer, dtype) -> why the layer cannot run on the kernel, or None.
    ineligibility: Callable[[nn.Module, torch.dtype], str | None] = semi_structured_ineligibility


_DISPLAY_NAMES = {CUSPARSELT_BACKEND: CUSPARSELT, CUTLASS_BACKEND: CUTLASS}


def backend_name(device: torch.device | str) -> str:
    """The backend ``to_semi_structured`` picks on ``device`` (a CUDA device with 2:4 kernels), for people."""
    backend = semi_structured_backend(torch.cuda.get_device_capability(torch.device(device)))
    return NO_BACKEND if backend is None else _DISPLAY_NAMES[backend]


def convert_weight(backend: str, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (2-D, 2:4-sparse, fp16/bf16, on the GPU) in the semi-structured form of ``backend``
    (CUSPARSELT or CUTLASS), converted as :func:`lbc_core.export.to_semi_structured` converts it."""
    ids = {display: backend_id for backend_id, display in _DISPLAY_NAMES.items()}
    return semi_structured_weight(weight, ids[backend])


def _convert_model(model: nn.Module, dtype: torch.dtype) -> SemiStructuredResult:
    return to_semi_structured(model, dtype=dtype)


def semi_structured_kernel(device: torch.device | str) -> tuple[SparseKernel | None, str]:
    """The semi-structured kernel of ``device``, or None, with a sentence saying why (not).

    Never calls ``to_sparse_semi_structured`` where it cannot work (on CPU it raises).
    """
    supported, reason = semi_structured_support(device)
    if not supported:
        return None, reason
    backend = backend_name(device)
    return (
        SparseKernel(
            backend=backend,
            description=reason,
            dtypes=tuple(SHAPE_RULES),
            convert_weight=lambda weight: convert_weight(backend, weight),
            convert_model=_convert_model,
        ),
        reason,
    )


def cpu_nm_kernel(device: torch.device | str, pattern: NMPattern) -> tuple[SparseKernel | None, str]:
    """The native N:M CPU kernel (lbc_core.kernels) for ``pattern``, or None with a sentence saying why."""
    from lbc_core.kernels.native import native_status, nm_linear
    from lbc_core.kernels.packing import DTYPES, pack_weight
    from lbc_core.kernels.registry import CpuNMKernel
    from lbc_core.kernels.swap import reduction_weight, swap_to_nm_kernel

    device = torch.device(device)
    reason = CpuNMKernel().unavailable_reason(device, torch.float32, pattern)
    if reason is not None:
        return None, f"no sparse kernel on this device ({device.type}): {reason}"
    status = native_status()
    backend = f"{CPU_NM_BACKEND} {status.selected}"
    description = (
        f"native N:M CPU kernel, {status.selected} path, {torch.get_num_threads()} threads "
        f"(kept values plus packed positions, read once per call)"
    )

    def ineligibility(module: nn.Module, dtype: torch.dtype) -> str | None:
        weight = reduction_weight(module)
        if weight is None:
            return f"{type(module).__name__} is not a layer the N:M CPU kernel serves"
        if weight.shape[1] % pattern.m or count_violations(weight, pattern):
            return f"weight is not {pattern} sparse along its input dimension"
        return None

    def convert_model(model: nn.Module, dtype: torch.dtype) -> SemiStructuredResult:
        result = swap_to_nm_kernel(model, pattern, measure=False)
        return SemiStructuredResult(
            device=str(device),
            dtype=str(dtype),
            backend=backend,
            converted=result.swapped,
            eligible=result.swapped,
            skipped=tuple(SkippedConversion(d.name, d.reason) for d in result.kept_dense),
            unavailable_reason=None,
        )

    kernel = SparseKernel(
        backend=backend,
        description=description,
        dtypes=DTYPES,
        convert_weight=lambda weight: pack_weight(weight, pattern),
        convert_model=convert_model,
        dense_row_multiple=1,
        label="N:M CPU kernel",
        linear=nm_linear,
        ineligibility=ineligibility,
    )
    return kernel, description


def device_kernel(device: torch.device | str, pattern: NMPattern) -> tuple[SparseKernel | None, str]:
    """The sparse kernel a report times on ``device``: 2:4 semi-structured on capable GPUs, the native
    N:M kernel on CPUs; None with both reasons elsewhere."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_nm_kernel(device, pattern)
    return semi_structured_kernel(device)
