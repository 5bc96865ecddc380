"""The sparse kernel a report times: PyTorch's semi-structured 2:4 tensors where the device has them.

The report takes the kernel as a value so its decision logic can be exercised with a stand-in on
machines without sparse tensor cores; real reports always use :func:`semi_structured_kernel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lbc_core.export import SHAPE_RULES, SemiStructuredResult, semi_structured_support, to_semi_structured
from lbc_core.export.semi_structured import (
    CUSPARSELT_BACKEND,
    CUTLASS_BACKEND,
    semi_structured_backend,
    semi_structured_weight,
)

CUSPARSELT = "cuSPARSELt"
CUTLASS = "CUTLASS"
NO_BACKEND = "none"

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
    convert_weight: Callable[[torch.Tensor], torch.Tensor]
    # Converts eligible Linear layers in place (see lbc_core.export.to_semi_structured).
    convert_model: Callable[[nn.Module, torch.dtype], SemiStructuredResult]
    dense_row_multiple: int = DENSE_ROW_MULTIPLE


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
