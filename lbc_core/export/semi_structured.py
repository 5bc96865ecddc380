"""Convert eligible linear weights to PyTorch's semi-structured 2:4 form for sparse tensor cores.

Only NVIDIA GPUs of compute capability 8.0 (Ampere) or newer have the kernels. Everywhere else this
module reports why nothing was converted instead of calling ``to_sparse_semi_structured``, which on CPU
raises "Only CUDA tensors are currently supported".

Layers are read through the engine's layer adapters (``lbc_core.sparsity.selection``): ``nn.Linear``
stores ``[out, in]``, transformers' ``Conv1D`` (GPT-2) ``[in, out]``. The semi-structured operand is
always the ``[out, in]`` view, 2:4 along ``in``, the reduction dimension of ``x @ W^T``: a Linear holds it
as its weight (``F.linear(x, S)``), a Conv1D holds its transpose ``S.t()``, so its own
``addmm(bias, x, weight)`` is PyTorch's semi-structured ``addmm`` with a transposed sparse operand, the
same call ``F.linear`` makes on ``S``. Conv2d is not converted (no semi-structured convolution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.sparsity import NMPattern, count_violations
from lbc_core.sparsity.pattern import IN_OUT, OUT_IN, linear_shape, linear_view
from lbc_core.sparsity.selection import adapter_for

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


def linear_layout(module: nn.Module) -> str | None:
    """The weight layout of a layer semi-structured kernels can serve (``out_in`` for ``nn.Linear``,
    ``in_out`` for transformers' ``Conv1D``), or None (Conv2d and every other module)."""
    adapter = adapter_for(module)
    return adapter.layout if adapter is not None and adapter.layout in (OUT_IN, IN_OUT) else None


def semi_structured_ineligibility(module: nn.Module, dtype: torch.dtype) -> str | None:
    """Why this layer cannot be converted, or None when it can (device aside)."""
    layout = linear_layout(module)
    if layout is None:
        return (
            f"{type(module).__name__} is not nn.Linear or transformers' Conv1D; semi-structured kernels "
            "serve linear/mm only"
        )
    if parametrize.is_parametrized(module):
        return "still has an N:M parametrization; finalize the sparsifier first"
    weight = module.weight
    if isinstance(weight, torch.sparse.SparseSemiStructuredTensor):
        return "already semi-structured"
    assert isinstance(weight, torch.Tensor)  # adapters only take modules with a weight
    rule = SHAPE_RULES[dtype]
    rows, cols = linear_shape(weight.shape, layout)
    if rows % rule.row_multiple or cols % rule.col_multiple:
        stored = "" if layout == OUT_IN else f", stored {tuple(weight.shape)} as [in, out]"
        return (
            f"weight shape ({rows}, {cols}) [out, in]{stored} unsupported for {dtype}: out features must "
            f"be a multiple of {rule.row_multiple} and in features a multiple of {rule.col_multiple}"
        )
    violations = count_violations(weight, NMPattern(2, 4), layout)
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


def replace_with_semi_structured(
    module: nn.Module, dtype: torch.dtype, convert: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """Give an eligible Linear or Conv1D ``convert`` of its ``[out, in]`` weight view (in ``dtype``,
    contiguous), stored so that the module's own forward runs it: as the weight of a Linear, transposed
    for a Conv1D (see the module docstring). Frozen: semi-structured tensors are an inference format."""
    layout = linear_layout(module)
    weight = getattr(module, "weight", None)
    if layout is None or not isinstance(weight, torch.Tensor):
        raise ValueError(f"{type(module).__name__} is not nn.Linear or transformers' Conv1D")
    operand = convert(linear_view(weight.detach(), layout).to(dtype).contiguous())
    stored = operand if layout == OUT_IN else operand.t()
    module.weight = nn.Parameter(stored, requires_grad=False)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        module.bias = nn.Parameter(bias.detach().to(dtype), requires_grad=False)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def to_semi_structured(model: nn.Module, *, dtype: torch.dtype = torch.float16) -> SemiStructuredResult:
    """Replace each eligible Linear or Conv1D weight (and bias) in place by its ``dtype`` semi-structured
    2:4 form.

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
        if linear_layout(module) is None:
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
        replace_with_semi_structured(
            model.get_submodule(name), dtype, lambda dense: semi_structured_weight(dense, backend)
        )
    return SemiStructuredResult(
        device=str(device),
        dtype=str(dtype),
        backend=backend,
        converted=tuple(eligible),
        eligible=tuple(eligible),
        skipped=tuple(skipped),
        unavailable_reason=None,
    )
