"""Convert eligible Linear weights to PyTorch's semi-structured 2:4 form for sparse tensor cores.

Only NVIDIA GPUs of compute capability 8.0 (Ampere) or newer have the kernels. Everywhere else this
module reports why nothing was converted instead of calling ``to_sparse_semi_structured``, which on CPU
raises "Only CUDA tensors are currently supported".
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.sparsity import NMPattern, count_violations

MIN_COMPUTE_CAPABILITY = (8, 0)
# PyTorch's CUTLASS 2:4 kernels are built for Ampere-class GPUs only: on a Hopper GPU (9.0) they raise
# "Supported only on GPUs with compute capability 8.x" (measured on an H200), so there only cuSPARSELt
# serves 2:4.
CUTLASS_MAJOR = 8
CUSPARSELT_BACKEND = "cusparselt"
CUTLASS_BACKEND = "cutlass"


@dataclass(frozen=True)
class ShapeRule:
    """Both weight dimensions must be positive multiples of these (``out`` rows, ``in`` columns)."""

    row_multiple: int
    col_multiple: int


# Minimum sparse-operand multiples per dtype, taken from PyTorch 2.13's tables and chosen to satisfy
# both backends it may use: CUTLASS needs (32, 64) for fp16/bf16, cuSPARSELt (16, 16). float32 is
# left out (tensor cores accelerate 1:2, not 2:4, for fp32/tf32, and cuSPARSELt has no fp32 2:4), as
# is int8 (it needs a quantized model, not a cast).
SHAPE_RULES: MappingProxyType[torch.dtype, ShapeRule] = MappingProxyType(
    {
        torch.float16: ShapeRule(row_multiple=32, col_multiple=64),
        torch.bfloat16: ShapeRule(row_multiple=32, col_multiple=64),
    }
)


@dataclass(frozen=True)
class SkippedConversion:
    name: str
    reason: str


@dataclass(frozen=True)
class SemiStructuredResult:
    """What :func:`to_semi_structured` did. ``converted`` is empty whenever ``unavailable_reason`` is set;
    ``eligible`` still lists the layers that would convert on a supported GPU."""

    device: str
    dtype: str
    backend: str | None
    converted: tuple[str, ...]
    eligible: tuple[str, ...]
    skipped: tuple[SkippedConversion, ...]
    unavailable_reason: str | None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None


def semi_structured_support(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` has semi-structured sparse kernels, and a sentence saying why (not)."""
    device = torch.device(device)
    needs = "needs an NVIDIA GPU with compute capability >= {}.{}".format(*MIN_COMPUTE_CAPABILITY)
    if device.type != "cuda":
        return False, f"no semi-structured sparse kernel on this device ({device.type}): {needs}"
    if not torch.cuda.is_available():
        return False, f"no semi-structured sparse kernel on this device (cuda unavailable): {needs}"
    if torch.version.hip is not None:
        return False, f"no semi-structured sparse kernel on this device (ROCm build): {needs}"
    capability = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if capability < MIN_COMPUTE_CAPABILITY:
        return False, (
            f"no semi-structured sparse kernel on this device ({name}, compute capability "
            f"{capability[0]}.{capability[1]}): {needs}"
        )
    if semi_structured_backend(capability) is None:
        return False, (
            f"no semi-structured sparse kernel on this device ({name}, compute capability "
            f"{capability[0]}.{capability[1]}): this PyTorch build has no cuSPARSELt, and its CUTLASS 2:4 "
            f"kernels run on compute capability {CUTLASS_MAJOR}.x only"
        )
    return True, f"{name} (compute capability {capability[0]}.{capability[1]}) has 2:4 sparse tensor cores"


def semi_structured_ineligibility(module: nn.Module, dtype: torch.dtype) -> str | None:
    """Why this layer cannot be converted, or None when it can (device aside)."""
    if not isinstance(module, nn.Linear):
        return f"{type(module).__name__} is not nn.Linear; semi-structured kernels serve linear/mm only"
    if parametrize.is_parametrized(module):
        return "still has an N:M parametrization; finalize the sparsifier first"
    weight = module.weight
    if isinstance(weight, torch.sparse.SparseSemiStructuredTensor):
        return "already semi-structured"
    rule = SHAPE_RULES[dtype]
    rows, cols = weight.shape
    if rows % rule.row_multiple or cols % rule.col_multiple:
        return (
            f"weight shape ({rows}, {cols}) unsupported for {dtype}: out features must be a multiple of "
            f"{rule.row_multiple} and in features a multiple of {rule.col_multiple}"
        )
    violations = count_violations(weight, NMPattern(2, 4))
    if violations:
        return (
            f"not 2:4-compliant: {violations} of {weight.numel() // 4} aligned blocks of 4 inputs "
            "hold more than 2 non-zeros"
        )
    return None


def semi_structured_backend(capability: tuple[int, int]) -> str | None:
    """The backend ``to_semi_structured`` uses on a GPU of ``capability``: cuSPARSELt when PyTorch was
    built with it, else CUTLASS on compute capability 8.x; None when neither can run there."""
    if torch.backends.cusparselt.is_available():
        return CUSPARSELT_BACKEND
    return CUTLASS_BACKEND if capability[0] == CUTLASS_MAJOR else None


def semi_structured_weight(weight: torch.Tensor, backend: str) -> torch.Tensor:
    """``weight`` (2-D, 2:4-sparse, fp16/bf16, on the GPU) as ``backend``'s semi-structured tensor."""
    if backend == CUSPARSELT_BACKEND:
        return torch.sparse.to_sparse_semi_structured(weight)
    # to_sparse_semi_structured always picks cuSPARSELt unless a global flag forces CUTLASS; calling the
    # CUTLASS class directly avoids changing process-wide state.
    return torch.sparse.SparseSemiStructuredTensorCUTLASS.from_dense(weight)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def to_semi_structured(model: nn.Module, *, dtype: torch.dtype = torch.float16) -> SemiStructuredResult:
    """Replace each eligible Linear weight (and bias) in place by its ``dtype`` semi-structured 2:4 form.

    The model must already be on the GPU; converted layers compute in ``dtype``, so feed them inputs of
    that dtype (e.g. ``model.to(dtype)`` first). Ineligible layers stay as they are, listed with a reason.
    """
    if dtype not in SHAPE_RULES:
        dtypes = ", ".join(str(d) for d in SHAPE_RULES)
        raise ValueError(f"semi-structured 2:4 conversion supports {dtypes}, not {dtype}")
    device = _model_device(model)
    eligible: list[str] = []
    skipped: list[SkippedConversion] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        reason = semi_structured_ineligibility(module, dtype)
        if reason is None:
            eligible.append(name)
        else:
            skipped.append(SkippedConversion(name, reason))

    supported, reason = semi_structured_support(device)
    if not supported:
        return SemiStructuredResult(
            device=str(device),
            dtype=str(dtype),
            backend=None,
            converted=(),
            eligible=tuple(eligible),
            skipped=tuple(skipped),
            unavailable_reason=reason,
        )
    backend = semi_structured_backend(torch.cuda.get_device_capability(device))
    assert backend is not None  # semi_structured_support said the device has a kernel
    for name in eligible:
        module = model.get_submodule(name)
        assert isinstance(module, nn.Linear)  # only Linear layers are ever eligible
        dense = module.weight.detach().to(dtype).contiguous()
        # Frozen: semi-structured tensors are an inference format.
        module.weight = nn.Parameter(semi_structured_weight(dense, backend), requires_grad=False)
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias.detach().to(dtype), requires_grad=False)
    return SemiStructuredResult(
        device=str(device),
        dtype=str(dtype),
        backend=backend,
        converted=tuple(eligible),
        eligible=tuple(eligible),
        skipped=tuple(skipped),
        unavailable_reason=None,
    )
