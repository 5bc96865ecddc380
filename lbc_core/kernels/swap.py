"""Run a finalized N:M model's linear layers on the CPU N:M kernel: :class:`NMLinear` and the model swap.

A layer is swapped only when the native kernel is loaded and, when asked to measure, the kernel was
faster than PyTorch's dense linear for that layer at every requested batch size; otherwise it stays
dense and the result says why. Swapped layers are inference-only (no gradients).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.export.compressed import load_compressed_layers, rebuild_model
from lbc_core.export.errors import ExportError
from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import DTYPES, PackedNM, pack_compressed, pack_weight, reference_linear
from lbc_core.kernels.settings import KernelSettings
from lbc_core.sparsity import NMPattern, count_violations
from lbc_core.sparsity.pattern import IN_OUT, OUT_IN, linear_shape, linear_view
from lbc_core.sparsity.selection import LayerAdapter, adapter_for

# (fn) -> milliseconds per call; the default is lbc_core.benchmark.timing.time_callable's median.
TimeMs = Callable[[Callable[[], object]], float]


def reduction_weight(module: nn.Module) -> torch.Tensor | None:
    """The ``[out, reduction]`` view of a layer the N:M kernel can replace, or None.

    The layout comes from the sparsity selection's layer adapters and the view from
    :func:`lbc_core.sparsity.pattern.linear_view`: ``nn.Linear`` stores ``[out, in]``; GPT-2's ``Conv1D``
    stores ``[in, out]`` and computes ``x @ W + b``, the same function as a Linear holding ``W^T``, so its
    view is ``weight.t()``.
    Conv2d and layers still carrying a mask parametrization are not replaced.
    """
    adapter = _linear_adapter(module)
    if adapter is None or parametrize.is_parametrized(module):
        return None
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        return None
    return linear_view(weight, adapter.layout)


def _linear_adapter(module: nn.Module) -> LayerAdapter | None:
    # The layer adapters whose weight is a 2-D [out, in] or [in, out] matrix; Conv2d is not one.
    adapter = adapter_for(module)
    return adapter if adapter is not None and adapter.layout in (OUT_IN, IN_OUT) else None


class NMLinear(nn.Module):
    """``y = x @ W^T + b`` with ``W`` packed for the CPU N:M kernel (lbc_core/kernels/packing.py)."""

    def __init__(self, packed: PackedNM, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.pattern = packed.pattern
        self.code = packed.code
        self.values: torch.Tensor
        self.codes: torch.Tensor
        self.bias: torch.Tensor | None
        self.register_buffer("values", packed.values)
        self.register_buffer("codes", packed.codes)
        self.register_buffer("bias", None if bias is None else bias.detach().to(packed.dtype).clone())
        # Decided once, so forward is a single operator call that torch.compile traces through.
        settings = KernelSettings.from_env()
        self.native = native_status(settings).available
        self.isa = settings.isa

    @classmethod
    def from_linear(cls, linear: nn.Linear, pattern: NMPattern) -> NMLinear:
        return cls(pack_weight(linear.weight.detach(), pattern), linear.bias)

    def packed(self) -> PackedNM:
        return PackedNM(self.values, self.codes, self.out_features, self.in_features, self.pattern, self.code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.native:
            return reference_linear(x, self.packed(), self.bias)
        return torch.ops.lbc_nm.nm_linear(
            x,
            self.values,
            self.codes,
            self.bias,
            self.out_features,
            self.pattern.n,
            self.pattern.m,
            self.code.bits,
            self.code.bitmask,
            self.isa,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, pattern={self.pattern}, "
            f"dtype={self.values.dtype}, bias={self.bias is not None}"
        )


@dataclass(frozen=True)
class LayerDecision:
    name: str
    swapped: bool
    reason: str
    dense_ms: tuple[float, ...] = ()  # per batch size, when measured
    kernel_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class SwapResult:
    path: str  # lbc_core.kernels.native.NativeStatus.describe()
    batch_sizes: tuple[int, ...]
    decisions: tuple[LayerDecision, ...]

    @property
    def swapped(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decisions if d.swapped)

    @property
    def kept_dense(self) -> tuple[LayerDecision, ...]:
        return tuple(d for d in self.decisions if not d.swapped)


def _default_time_ms(fn: Callable[[], object]) -> float:
    from lbc_core.benchmark.timing import time_callable  # lazy: the benchmark package imports this one

    return time_callable(fn, device="cpu", warmup=2, repeats=7, min_repeat_ms=2.0).median_ms


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def _measure(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    packed: PackedNM,
    batch_sizes: Sequence[int],
    time_ms: TimeMs,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    dense, kernel = [], []
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        x = torch.randn(batch, weight.shape[1], generator=generator).to(weight.dtype)
        dense.append(time_ms(functools.partial(F.linear, x, weight, bias)))
        kernel.append(time_ms(functools.partial(nm_linear, x, packed, bias)))
    return tuple(dense), tuple(kernel)


def _decide(
    name: str,
    module: nn.Module,
    pattern: NMPattern,
    packed_by_name: Mapping[str, PackedNM],
    batch_sizes: Sequence[int],
    time_ms: TimeMs | None,
) -> tuple[LayerDecision, NMLinear | None]:
    weight = reduction_weight(module)
    if weight is None:
        return LayerDecision(
            name, False, f"{type(module).__name__} is not a layer the N:M kernel replaces"
        ), None
    if not name:
        return LayerDecision(name, False, "the model itself is the layer; swap its parent instead"), None
    if weight.dtype not in DTYPES:
        return LayerDecision(
            name, False, f"weight dtype {weight.dtype}: the kernel takes float32/bfloat16"
        ), None
    if weight.device.type != "cpu":
        return LayerDecision(name, False, f"on {weight.device}: the N:M kernel runs on the CPU"), None
    bias = getattr(module, "bias", None)
    packed = packed_by_name.get(name)
    if packed is None:
        if weight.shape[1] % pattern.m or count_violations(weight, pattern):
            return LayerDecision(
                name, False, f"weight is not {pattern} sparse along its input dimension"
            ), None
        packed = pack_weight(weight.detach().contiguous(), pattern, name)
    elif packed.dtype != weight.dtype:
        packed = pack_weight(weight.detach().contiguous(), pattern, name)
    if time_ms is None:
        return LayerDecision(name, True, "swapped without measuring"), NMLinear(packed, bias)
    with torch.no_grad():
        dense_ms, kernel_ms = _measure(weight.detach(), bias, packed, batch_sizes, time_ms)
    slower = [b for b, d, k in zip(batch_sizes, dense_ms, kernel_ms, strict=True) if k >= d]
    if slower:
        reason = f"the N:M kernel was not faster than dense at batch size(s) {', '.join(map(str, slower))}"
        return LayerDecision(name, False, reason, dense_ms, kernel_ms), None
    speedups = ", ".join(f"{d / k:.2f}x" for d, k in zip(dense_ms, kernel_ms, strict=True))
    return LayerDecision(name, True, f"faster than dense ({speedups})", dense_ms, kernel_ms), NMLinear(
        packed, bias
    )


def swap_to_nm_kernel(
    model: nn.Module,
    pattern: NMPattern,
    *,
    layer_names: Iterable[str] | None = None,
    batch_sizes: Sequence[int] = (1,),
    measure: bool = True,
    time_ms: TimeMs | None = None,
    packed: Mapping[str, PackedNM] | None = None,
) -> SwapResult:
    """Replace the model's eligible N:M layers (all layers, or ``layer_names``) by :class:`NMLinear` in place.

    With ``measure`` each layer is timed dense and on the kernel at ``batch_sizes`` (random inputs, the
    layer's dtype) and swapped only where the kernel wins at every one. ``packed`` supplies operands
    already packed (from the compressed export) by layer name. Without the native kernel nothing is
    swapped: the pure-PyTorch path is correct but slower than dense.
    """
    status = native_status()
    names = None if layer_names is None else set(layer_names)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if (names is None and reduction_weight(module) is not None) or (names is not None and name in names)
    ]
    if names is not None:
        missing = names - {name for name, _ in candidates}
        if missing:
            raise ValueError(f"no layer(s) {', '.join(sorted(map(repr, missing)))} in the model")
    decisions = []
    if not status.available:
        reason = f"kept dense: {status.describe()}"
        decisions = [LayerDecision(name, False, reason) for name, _ in candidates]
        return SwapResult(status.describe(), tuple(batch_sizes), tuple(decisions))
    if measure and any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    timer = (time_ms or _default_time_ms) if measure else None
    for name, module in candidates:
        decision, replacement = _decide(name, module, pattern, packed or {}, batch_sizes, timer)
        decisions.append(decision)
        if replacement is not None:
            _set_submodule(model, name, replacement)
    return SwapResult(status.describe(), tuple(batch_sizes), tuple(decisions))


def nm_model_from_export(
    manifest_path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
    compressed_path: str | os.PathLike[str],
    **swap_options: Any,
) -> tuple[nn.Module, SwapResult]:
    """Rebuild an exported model and run its compressed layers on the N:M kernel, packed straight from the
    stored values and positions (so the kernel runs exactly what was exported). Eval mode.

    Every compressed layer of a 2-D layout is packed: ``nn.Linear`` ``[out, in]`` and transformers'
    ``Conv1D`` ``[in, out]`` alike, since the export groups both along rows of their ``[out, in]`` view,
    the order the kernel packs (no dense weight is made). Conv2d layers stay dense.
    """
    model = rebuild_model(manifest_path_or_dict, compressed_path)
    layers, pattern = load_compressed_layers(compressed_path)
    packed = {}
    for name, layer in layers.items():
        adapter = _linear_adapter(model.get_submodule(name))
        if adapter is None:
            continue
        if layer.layout != adapter.layout:
            raise ExportError(
                f"{compressed_path}: layer {name!r} was compressed in layout {layer.layout!r} but the rebuilt "
                f"model's {adapter.kind} stores {adapter.layout!r}"
            )
        out_features, in_features = linear_shape(layer.shape, layer.layout)
        packed[name] = pack_compressed(layer.values, layer.indices, out_features, in_features, pattern)
    result = swap_to_nm_kernel(model, pattern, layer_names=list(packed), packed=packed, **swap_options)
    return model.eval(), result
