"""Speedup report: dense versus sparse-kernel timings per layer and end to end, measured where it runs.

The report never presents masked-dense timings as a speedup. Sparse timings exist only where a real
sparse kernel ran (PyTorch's semi-structured 2:4 tensors on NVIDIA GPUs of compute capability >= 8.0,
fp16/bf16, Linear layers; the native N:M CPU kernel of lbc_core.kernels, any pattern, fp32/bf16, Linear
layers); everywhere else the sparse fields are null and the report says why.

Schema ``lbc.speedup-report/3`` (:data:`REPORT_SCHEMA` is the same as a JSON Schema). Times are
milliseconds per call; a *Timing* is ``{median_ms, p10_ms, p90_ms, repeats, inner, timer}`` where
``inner`` calls ran per repeat and ``timer`` is ``"cuda-event"``, ``"cuda-graph"`` or ``"perf_counter"``.

- ``schema``: ``"lbc.speedup-report/3"``; ``created_at``: ISO-8601 UTC.
- ``model``: ``name`` (or null), ``class``, ``pattern`` ("N:M"), ``input_shape`` (one sample, no batch).
- ``environment``: ``device``, ``device_name``, ``compute_capability`` / ``driver_version`` /
  ``cuda_version`` / ``cusparselt_version`` (null when absent), ``torch_version``, ``python_version``,
  ``platform``, ``backend`` ("cuSPARSELt" | "CUTLASS" | "lbc-nm <isa path>" | "none"), ``sparse_kernels`` (bool),
  ``sparse_kernel_reason``, ``cpu_model``, ``cpu_threads``.
- ``method``: ``timer`` (words), ``warmup``, ``repeats``, ``min_repeat_ms``, ``statistic``,
  ``batch_sizes``, ``dtypes``, ``min_speedup`` (the keep-sparse threshold), ``correctness_rtol``,
  ``launch`` ("eager" | "cuda-graph": calls launched one by one, or replayed from a captured CUDA graph).
- ``layers[]`` (the sparsified layers): ``name``, ``kind`` ("Linear" | "Conv2d"), ``weight_shape``,
  ``params``, ``nonzeros``, ``density``, ``compliance`` {``compliant``, ``blocks``, ``violating_blocks``,
  ``pattern_guarantees``, ``explanation``}, ``flops_per_sample`` {``dense``, ``nm``},
  ``measurements[]`` {``batch_size``, ``dtype``, ``gemm`` {``m``, ``n``, ``k``, ``groups``},
  ``padded_m`` (rows after padding for the sparse kernel, or null), ``dense`` (Timing or null),
  ``sparse`` (Timing or null), ``speedup`` (dense/sparse median, or null), ``recommendation``
  ("sparse" | "dense" | "n/a"), ``reason``}, and the layer's overall ``recommendation`` / ``reason``.
- ``end_to_end``: ``measurements[]`` {``batch_size``, ``dtype``, ``dense``, ``dense_throughput``
  (samples/s), ``sparse``, ``sparse_throughput``, ``speedup``, ``reason`` (why sparse is null, or null)},
  ``conversions[]`` {``dtype``, ``converted``, ``skipped[]`` {``name``, ``reason``}},
  ``accuracy_given`` (as passed by the caller, for the model passed in), ``accuracy[]`` {``variant``
  ("dense" | "sparse"), ``dtype``, ``accuracy``, ``loss``, ``samples``} measured on the timed models.
- ``savings``: ``params_dense``, ``params_nonzero``, ``sparsified_params``, ``sparsified_nonzeros``,
  ``flops_dense_per_sample``, ``flops_nm_per_sample``, ``flops_ratio``, ``checkpoint_dense_bytes``,
  ``checkpoint_compressed_bytes``, ``checkpoint_ratio`` (null with ``checkpoint_note`` when the
  compressed form cannot be built), ``files[]`` {``name``, ``bytes``} of an export directory.
- ``summary``: ``median_layer_speedup`` (over every measured layer x batch x dtype; null without a
  sparse kernel), ``end_to_end_speedup`` (median over batch x dtype; null likewise),
  ``layers_recommended_sparse``, ``layers_recommended_dense``, ``layers_not_applicable``, ``verdict``.
- ``notes``: plain sentences; always the timing method, and on devices without a sparse kernel the
  statement that none exists there and that the timings are dense.

Recommendation per measurement: "sparse" when dense/sparse >= ``min_speedup`` (1.05 by default),
"dense" otherwise, "n/a" when no sparse kernel could run. A layer is "sparse" only when every measured
batch size and dtype says so, "dense" when any says dense (its reason lists where sparse loses and
wins), "n/a" when none could be measured.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from lbc_catalog.timing import MAX_TIMING_WEIGHT_COPIES, TIMING_ROTATION_BYTES
from lbc_core.benchmark.compliance import Compliance, check_24_compliance, pattern_explanation
from lbc_core.benchmark.environment import Environment, capture_environment
from lbc_core.benchmark.gemm import GemmShape, LayerGemm, gemm_layers, layer_gemms
from lbc_core.benchmark.kernels import CPU_NM_BACKEND, SparseKernel, device_kernel
from lbc_core.benchmark.timing import TIMERS, Timing, time_callable
from lbc_core.export import (
    CHECKPOINT_FILE,
    COMPRESSED_FILE,
    MANIFEST_FILE,
    MASKS_FILE,
    ExportError,
    compressed_size_report,
)
from lbc_core.export.manifest import to_json_safe
from lbc_core.sparsity import NMPattern, PatternError, count_violations
from lbc_core.sparsity.selection import adapter_for
from lbc_core.training.loop import SupervisedData, evaluate

REPORT_SCHEMA_VERSION = "lbc.speedup-report/3"

SPARSE = "sparse"
DENSE = "dense"
NOT_APPLICABLE = "n/a"
RECOMMENDATIONS = (SPARSE, DENSE, NOT_APPLICABLE)

DEFAULT_MIN_SPEEDUP = 1.05
# How each timed call is launched: one by one from Python (what eager PyTorch serving sees, host overhead
# included), or replayed from a captured CUDA graph (what graph-captured or compiled deployments see).
EAGER = "eager"
CUDA_GRAPH = "cuda-graph"
LAUNCHES = (EAGER, CUDA_GRAPH)
# Relative tolerance between sparse-kernel and dense outputs (both fp16/bf16 with fp32 accumulation).
CORRECTNESS_RTOL = 2e-2

CONV_NOT_SUPPORTED = "no semi-structured conv kernel in PyTorch; timed as dense"
SLOWER = "sparse kernel slower (or no faster) at this shape/batch"
HARDWARE_ADVICE = (
    "Speedups need an NVIDIA GPU with sparse tensor cores (Ampere / compute capability 8.0 or newer) "
    "running 2:4 fp16/bf16."
)

_DTYPE_NAMES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


class SpeedupReportError(ValueError):
    """Arguments or a model the report cannot be built from (the message says which and why)."""


# -- what gets timed -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimingRequest:
    """Identifies one timing, so an injected timer can answer deterministically (tests)."""

    scope: str  # "layer" | "model"
    name: str  # the layer's name; "" for the whole model
    variant: str  # "dense" | "sparse"
    batch_size: int
    dtype: str
    launch: str = EAGER  # EAGER | CUDA_GRAPH


Timer = Callable[[TimingRequest, Callable[[], object]], Timing]


def make_timer(device: torch.device, *, warmup: int, repeats: int, min_repeat_ms: float) -> Timer:
    """The real timer: :func:`time_callable` on ``device``, launched as each request says."""

    def timer(request: TimingRequest, fn: Callable[[], object]) -> Timing:
        return time_callable(
            fn,
            device=device,
            warmup=warmup,
            repeats=repeats,
            min_repeat_ms=min_repeat_ms,
            cuda_graph=request.launch == CUDA_GRAPH,
        )

    return timer


# -- report sections ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    name: str | None
    class_name: str
    pattern: str
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class Method:
    timer: str
    warmup: int
    repeats: int
    min_repeat_ms: float
    statistic: str
    batch_sizes: tuple[int, ...]
    dtypes: tuple[str, ...]
    min_speedup: float
    correctness_rtol: float
    launch: str


@dataclass(frozen=True)
class Measurement:
    batch_size: int
    dtype: str
    gemm: GemmShape
    padded_m: int | None
    dense: Timing | None
    sparse: Timing | None
    speedup: float | None
    recommendation: str
    reason: str


@dataclass(frozen=True)
class LayerReport:
    name: str
    kind: str
    weight_shape: tuple[int, ...]
    params: int
    nonzeros: int
    density: float
    compliance: Compliance
    flops_dense: int  # per sample
    flops_nm: float  # per sample, ideal N:M kernel
    measurements: tuple[Measurement, ...]
    recommendation: str
    reason: str


@dataclass(frozen=True)
class EndToEndMeasurement:
    batch_size: int
    dtype: str
    dense: Timing | None
    dense_throughput: float | None  # samples per second
    sparse: Timing | None
    sparse_throughput: float | None
    speedup: float | None
    reason: str | None  # why there is no sparse timing


@dataclass(frozen=True)
class SkippedLayer:
    name: str
    reason: str


@dataclass(frozen=True)
class Conversion:
    dtype: str
    converted: tuple[str, ...]
    skipped: tuple[SkippedLayer, ...]


@dataclass(frozen=True)
class AccuracyResult:
    variant: str  # "dense" | "sparse"
    dtype: str
    accuracy: float
    loss: float
    samples: int


@dataclass(frozen=True)
class EndToEnd:
    measurements: tuple[EndToEndMeasurement, ...]
    conversions: tuple[Conversion, ...]
    accuracy_given: float | None
    accuracy: tuple[AccuracyResult, ...]


@dataclass(frozen=True)
class FileSize:
    name: str
    bytes: int


@dataclass(frozen=True)
class Savings:
    params_dense: int
    params_nonzero: int
    sparsified_params: int
    sparsified_nonzeros: int
    flops_dense_per_sample: int
    flops_nm_per_sample: float
    flops_ratio: float
    checkpoint_dense_bytes: int | None
    checkpoint_compressed_bytes: int | None
    checkpoint_ratio: float | None
    checkpoint_note: str | None
    files: tuple[FileSize, ...]


@dataclass(frozen=True)
class Summary:
    median_layer_speedup: float | None
    end_to_end_speedup: float | None
    layers_recommended_sparse: tuple[str, ...]
    layers_recommended_dense: tuple[str, ...]
    layers_not_applicable: tuple[str, ...]
    verdict: str


@dataclass(frozen=True)
class SpeedupReport:
    created_at: str
    model: ModelInfo
    environment: Environment
    method: Method
    layers: tuple[LayerReport, ...]
    end_to_end: EndToEnd
    savings: Savings
    summary: Summary
    notes: tuple[str, ...]
    schema: str = field(default=REPORT_SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (non-finite floats become null); the layout of :data:`REPORT_SCHEMA`."""
        data = to_json_safe(
            {
                "schema": self.schema,
                "created_at": self.created_at,
                "model": {
                    "name": self.model.name,
                    "class": self.model.class_name,
                    "pattern": self.model.pattern,
                    "input_shape": self.model.input_shape,
                },
                "environment": self.environment,
                "method": self.method,
                "layers": [_layer_dict(layer) for layer in self.layers],
                "end_to_end": self.end_to_end,
                "savings": self.savings,
                "summary": self.summary,
                "notes": self.notes,
            },
            "speedup report",
        )
        assert isinstance(data, dict)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _layer_dict(layer: LayerReport) -> dict[str, Any]:
    return {
        "name": layer.name,
        "kind": layer.kind,
        "weight_shape": layer.weight_shape,
        "params": layer.params,
        "nonzeros": layer.nonzeros,
        "density": layer.density,
        "compliance": layer.compliance,
        "flops_per_sample": {"dense": layer.flops_dense, "nm": layer.flops_nm},
        "measurements": layer.measurements,
        "recommendation": layer.recommendation,
        "reason": layer.reason,
    }


# -- pure decision logic -----------------------------------------------------------------------------
def speedup_of(dense: Timing | None, sparse: Timing | None) -> float | None:
    """Dense median over sparse median; None unless both exist and are positive."""
    if dense is None or sparse is None or sparse.median_ms <= 0 or dense.median_ms <= 0:
        return None
    return dense.median_ms / sparse.median_ms


def recommend(
    dense: Timing | None,
    sparse: Timing | None,
    *,
    min_speedup: float = DEFAULT_MIN_SPEEDUP,
    unavailable_reason: str | None = None,
) -> tuple[float | None, str, str]:
    """``(speedup, recommendation, reason)`` for one measurement.

    Below the threshold (not just below 1.0) means dense: a 2 % win is within run-to-run noise and not
    worth a second weight format.
    """
    speedup = speedup_of(dense, sparse)
    if speedup is None:
        return None, NOT_APPLICABLE, unavailable_reason or "no sparse timing"
    if speedup >= min_speedup:
        return (
            speedup,
            SPARSE,
            f"sparse kernel {speedup:.2f}x faster (keep-sparse threshold {min_speedup:.2f}x)",
        )
    return speedup, DENSE, f"{SLOWER}: {speedup:.2f}x < {min_speedup:.2f}x"


def combine_recommendations(measurements: Sequence[Measurement]) -> tuple[str, str]:
    """A layer's overall recommendation from its measurements (see the module docstring's rule)."""
    measured = [m for m in measurements if m.recommendation != NOT_APPLICABLE]
    if not measured:
        reasons = list(dict.fromkeys(m.reason for m in measurements))
        return NOT_APPLICABLE, "; ".join(reasons) or "not measured"

    def where(items: Iterable[Measurement]) -> str:
        return ", ".join(f"batch {m.batch_size} {m.dtype} ({m.speedup:.2f}x)" for m in items)

    losing = [m for m in measured if m.recommendation == DENSE]
    winning = [m for m in measured if m.recommendation == SPARSE]
    if not losing:
        return SPARSE, f"sparse kernel faster at every measured batch size and dtype: {where(winning)}"
    reason = f"{SLOWER}: {where(losing)}"
    if winning:
        reason += f"; faster at {where(winning)}: keep sparse only if you serve those"
    return DENSE, reason


def median_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# -- argument handling ------------------------------------------------------------------------------
def as_dtype(value: torch.dtype | str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    key = str(value).strip().lower().removeprefix("torch.")
    if key not in _DTYPE_NAMES:
        raise SpeedupReportError(f"unknown dtype {value!r}; use float16, bfloat16 or float32")
    return _DTYPE_NAMES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def sparsified_layer_names(model: nn.Module, pattern: NMPattern) -> list[str]:
    """Linear/Conv2d layers whose weight is exactly ``pattern``-sparse (and has zeros at all)."""
    names = []
    for name, module in gemm_layers(model):
        weight = module.weight.detach()
        try:
            exact = count_violations(weight, pattern, _layout_of(module)) == 0
        except PatternError:  # input dimension not divisible by M: cannot be N:M
            continue
        if exact and bool((weight == 0).any()):
            names.append(name)
    return names


def _as_pattern(pattern: NMPattern | str) -> NMPattern:
    if isinstance(pattern, NMPattern):
        return pattern
    try:
        return NMPattern.parse(pattern)
    except PatternError as exc:
        raise SpeedupReportError(str(exc)) from exc


def _check_args(
    batch_sizes: Sequence[int], warmup: int, repeats: int, min_repeat_ms: float, min_speedup: float
) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise SpeedupReportError(
            f"batch_sizes must be a non-empty list of positive integers, got {list(sizes)}"
        )
    if warmup < 0 or repeats < 1 or min_repeat_ms < 0:
        raise SpeedupReportError(
            f"need warmup >= 0, repeats >= 1 and min_repeat_ms >= 0, got {warmup}, {repeats}, {min_repeat_ms}"
        )
    if not min_speedup > 0:
        raise SpeedupReportError(f"min_speedup must be positive, got {min_speedup}")
    return tuple(dict.fromkeys(sizes))


def _random(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # A private generator: benchmarking must not advance the caller's global RNG.
    generator = torch.Generator(device=device).manual_seed(0)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


# -- per-layer measurement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    device: torch.device
    kernel: SparseKernel | None
    no_kernel_reason: str
    timer: Timer
    min_speedup: float
    launch: str = EAGER
    model_weight_elements: int = 0  # every parameter of the model: what a forward pass streams

    def weight_copies(self, weight: torch.Tensor) -> int:
        """How many copies of one layer's weight a CPU timing cycles through (1 on GPUs).

        Called again and again on one weight, a layer runs from the CPU's last-level cache as soon as its
        weight (or its packed N:M form, half the bytes) fits there; inside a model, every other layer's
        weights stream through the cache between two of its calls. A 4096x4096 layer timed alone read its
        packed 2:4 weight mostly from a 32 MiB L3 and measured 6x where the whole model measured 2x.
        Cycling through copies that together hold as many elements as the model (up to
        ``TIMING_ROTATION_BYTES``, far beyond any L3) gives each call the cache the model leaves it: cold for a
        model larger than the cache, warm for one that fits.
        """
        if self.device.type != "cpu" or weight.numel() == 0:
            return 1
        elements = min(self.model_weight_elements, TIMING_ROTATION_BYTES // weight.element_size())
        return max(1, min(MAX_TIMING_WEIGHT_COPIES, math.ceil(elements / weight.numel())))

    def request(self, scope: str, name: str, variant: str, batch: int, dtype: str) -> TimingRequest:
        return TimingRequest(scope, name, variant, batch, dtype, self.launch)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = float(expected.float().abs().max()) or 1.0
    return float((actual.float() - expected.float()).abs().max()) / scale


def _sparse_blocker(module: nn.Module, dtype: torch.dtype, ctx: _Context) -> str | None:
    """Why this layer gets no sparse timing at ``dtype``, or None when it does."""
    if ctx.kernel is None:
        return ctx.no_kernel_reason
    if isinstance(module, nn.Conv2d):
        if not ctx.kernel.backend.startswith(CPU_NM_BACKEND):
            return CONV_NOT_SUPPORTED
        return f"the {ctx.kernel.label} serves Linear layers only; timed as dense"
    if dtype not in ctx.kernel.dtypes:
        served = ", ".join(dtype_name(d) for d in ctx.kernel.dtypes)
        return f"the {ctx.kernel.label} serves {served}; {dtype_name(dtype)} was timed dense only"
    reason = ctx.kernel.ineligibility(module, dtype)
    return None if reason is None else f"not eligible for the {ctx.kernel.label}: {reason}"


def _measure_layer(
    name: str, module: nn.Linear | nn.Conv2d, gemm: LayerGemm, batch: int, dtype: torch.dtype, ctx: _Context
) -> Measurement:
    shape = gemm.at_batch(batch)
    weight = module.weight.detach().to(device=ctx.device, dtype=dtype).contiguous()
    request = ctx.request("layer", name, DENSE, batch, dtype_name(dtype))
    blocker = _sparse_blocker(module, dtype, ctx)
    padded_m = None
    sparse = None
    try:
        if isinstance(module, nn.Conv2d):
            conv = module
            x = _random((batch, *gemm.sample_input_shape), dtype, ctx.device)

            def dense_fn() -> torch.Tensor:
                return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

            dense = ctx.timer(request, dense_fn)
        else:
            x = _random((shape.m, shape.k), dtype, ctx.device)
            # With the layer's bias, as the model runs it: a sparse matmul may add it in another kernel.
            bias = None if module.bias is None else module.bias.detach().to(device=ctx.device, dtype=dtype)
            weights = itertools.cycle(
                [weight, *(weight.clone() for _ in range(ctx.weight_copies(weight) - 1))]
            )
            dense = ctx.timer(request, lambda: F.linear(x, next(weights), bias))
            del weights
            if blocker is None and ctx.kernel is not None:
                sparse, padded_m, blocker = _time_sparse_linear(x, weight, bias, request, ctx.kernel, ctx)
    except RuntimeError as exc:  # CUDA out of memory, unsupported dtype on this device, ...
        _free(ctx.device)
        text = f"timing failed: {exc}".splitlines()[0]
        return Measurement(batch, dtype_name(dtype), shape, None, None, None, None, NOT_APPLICABLE, text)
    speedup, choice, reason = recommend(
        dense, sparse, min_speedup=ctx.min_speedup, unavailable_reason=blocker
    )
    return Measurement(batch, dtype_name(dtype), shape, padded_m, dense, sparse, speedup, choice, reason)


def _time_sparse_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    request: TimingRequest,
    kernel: SparseKernel,
    ctx: _Context,
) -> tuple[Timing | None, int | None, str | None]:
    """``(sparse timing, padded M or None, blocker)`` of ``F.linear(x, weight, bias)`` on the sparse kernel."""
    rows = x.shape[0]
    try:
        sparse_weight = kernel.convert_weight(weight)
    except RuntimeError as exc:
        return None, None, f"conversion to the {kernel.label} format failed: {exc}".splitlines()[0]
    pad = (-rows) % kernel.dense_row_multiple
    # The same cache the dense timing saw (``_Context.weight_copies``); a converted weight that cannot be
    # cloned (a GPU's semi-structured tensor) is timed alone, as on GPUs every timing is.
    copies = ctx.weight_copies(weight) if hasattr(sparse_weight, "clone") else 1
    sparse_weights = itertools.cycle([sparse_weight, *(sparse_weight.clone() for _ in range(copies - 1))])

    def sparse_fn() -> torch.Tensor:
        current = next(sparse_weights)
        if pad:
            return kernel.linear(F.pad(x, (0, 0, 0, pad)), current, bias)[:rows]
        return kernel.linear(x, current, bias)

    try:
        error = _relative_error(sparse_fn(), F.linear(x, weight, bias))
        if not error <= CORRECTNESS_RTOL:
            return (
                None,
                None,
                f"sparse kernel output differs from dense (relative error {error:.3g}); not timed",
            )
        timing = ctx.timer(
            ctx.request("layer", request.name, SPARSE, request.batch_size, request.dtype), sparse_fn
        )
    except RuntimeError as exc:  # e.g. no kernel for this shape in this build; the dense timing stands
        _free(ctx.device)
        return None, None, f"sparse timing failed: {exc}".splitlines()[0]
    return timing, (rows + pad if pad else None), None


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- end to end ------------------------------------------------------------------------------------
class _CastInput(nn.Module):
    """Feeds the model inputs in its compute dtype and returns fp32 logits (for evaluate())."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def _accuracy(
    model: nn.Module, variant: str, dtype: torch.dtype, data: SupervisedData, device: torch.device
) -> AccuracyResult:
    metrics = evaluate(_CastInput(model, dtype), data, device=device)
    return AccuracyResult(
        variant, dtype_name(dtype), metrics["accuracy"], metrics["loss"], int(data.y.shape[0])
    )


def _throughput(batch: int, timing: Timing | None) -> float | None:
    return batch / (timing.median_ms / 1e3) if timing is not None and timing.median_ms > 0 else None


def _end_to_end(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    dtypes: tuple[torch.dtype, ...],
    eval_data: SupervisedData | None,
    accuracy_given: float | None,
    ctx: _Context,
) -> EndToEnd:
    measurements: list[EndToEndMeasurement] = []
    conversions: list[Conversion] = []
    accuracy: list[AccuracyResult] = []
    for dtype in dtypes:
        dense_model = copy.deepcopy(model).to(device=ctx.device, dtype=dtype).eval()
        sparse_model: nn.Module | None = None
        blocker = ctx.no_kernel_reason
        if ctx.kernel is not None and dtype not in ctx.kernel.dtypes:
            served = ", ".join(dtype_name(d) for d in ctx.kernel.dtypes)
            blocker = f"the {ctx.kernel.label} serves {served}; {dtype_name(dtype)} was timed dense only"
        elif ctx.kernel is not None:
            sparse_model = copy.deepcopy(dense_model)
            result = ctx.kernel.convert_model(sparse_model, dtype)
            conversions.append(
                Conversion(
                    dtype_name(dtype),
                    result.converted,
                    tuple(SkippedLayer(s.name, s.reason) for s in result.skipped),
                )
            )
            if not result.converted:
                blocker = (
                    result.unavailable_reason or f"no Linear layer is eligible for the {ctx.kernel.label}"
                )
                sparse_model = None
        with torch.no_grad():
            if eval_data is not None:
                accuracy.append(_accuracy(dense_model, DENSE, dtype, eval_data, ctx.device))
                if sparse_model is not None:
                    accuracy.append(_accuracy(sparse_model, SPARSE, dtype, eval_data, ctx.device))
            for batch in batch_sizes:
                measurements.append(
                    _time_model(dense_model, sparse_model, input_shape, batch, dtype, blocker, ctx)
                )
        del dense_model, sparse_model
        _free(ctx.device)
    return EndToEnd(tuple(measurements), tuple(conversions), accuracy_given, tuple(accuracy))


def _time_model(
    dense_model: nn.Module,
    sparse_model: nn.Module | None,
    input_shape: tuple[int, ...],
    batch: int,
    dtype: torch.dtype,
    blocker: str,
    ctx: _Context,
) -> EndToEndMeasurement:
    name = dtype_name(dtype)
    try:
        x = _random((batch, *input_shape), dtype, ctx.device)
        dense = ctx.timer(ctx.request("model", "", DENSE, batch, name), lambda: dense_model(x))
    except RuntimeError as exc:  # CUDA out of memory at a large batch, ...
        _free(ctx.device)
        text = f"timing failed: {exc}".splitlines()[0]
        return EndToEndMeasurement(batch, name, None, None, None, None, None, text)
    sparse = None
    if sparse_model is not None:
        try:
            sparse = ctx.timer(ctx.request("model", "", SPARSE, batch, name), lambda: sparse_model(x))
        except RuntimeError as exc:
            _free(ctx.device)
            blocker = f"sparse timing failed: {exc}".splitlines()[0]
    return EndToEndMeasurement(
        batch_size=batch,
        dtype=name,
        dense=dense,
        dense_throughput=_throughput(batch, dense),
        sparse=sparse,
        sparse_throughput=_throughput(batch, sparse),
        speedup=speedup_of(dense, sparse),
        reason=None if sparse is not None else blocker,
    )


# -- savings ---------------------------------------------------------------------------------------
def _savings(
    model: nn.Module,
    layers: Sequence[LayerReport],
    gemms: dict[str, LayerGemm],
    sparsified: set[str],
    pattern: NMPattern,
    export_dir: str | os.PathLike[str] | None,
) -> Savings:
    params_dense = sum(p.numel() for p in model.parameters())
    sparsified_params = sum(layer.params for layer in layers)
    sparsified_nonzeros = sum(layer.nonzeros for layer in layers)
    flops_dense = sum(g.dense_flops() for g in gemms.values())
    flops_nm = sum(
        g.nm_flops(pattern.density) if name in sparsified else float(g.dense_flops())
        for name, g in gemms.items()
    )
    dense_bytes = compressed_bytes = None
    ratio: float | None = None
    note = None
    try:
        sizes = compressed_size_report(model, [layer.name for layer in layers], pattern)
        dense_bytes, compressed_bytes, ratio = sizes.dense_bytes, sizes.compressed_bytes, sizes.ratio
    except ExportError as exc:
        note = f"no compressed {pattern} checkpoint size: {exc}"
    files: list[FileSize] = []
    if export_dir is not None:
        directory = Path(export_dir)
        for file_name in (CHECKPOINT_FILE, COMPRESSED_FILE, MASKS_FILE, MANIFEST_FILE):
            if (directory / file_name).is_file():
                files.append(FileSize(file_name, (directory / file_name).stat().st_size))
    return Savings(
        params_dense=params_dense,
        params_nonzero=params_dense - (sparsified_params - sparsified_nonzeros),
        sparsified_params=sparsified_params,
        sparsified_nonzeros=sparsified_nonzeros,
        flops_dense_per_sample=flops_dense,
        flops_nm_per_sample=flops_nm,
        flops_ratio=flops_nm / flops_dense if flops_dense else 1.0,
        checkpoint_dense_bytes=dense_bytes,
        checkpoint_compressed_bytes=compressed_bytes,
        checkpoint_ratio=ratio,
        checkpoint_note=note,
        files=tuple(files),
    )


# -- words -----------------------------------------------------------------------------------------
def _on_cpu_nm(env: Environment) -> bool:
    """Whether the report's sparse kernel is the native N:M CPU kernel (its wording differs from 2:4's)."""
    return env.backend.startswith(CPU_NM_BACKEND)


def no_kernel_note(device_description: str) -> str:
    """The plain statement a report without a sparse kernel always carries."""
    return (
        f"No sparse kernel exists for this device ({device_description}): the timings below are dense; "
        f"N:M saves model size and FLOPs here but not time. {HARDWARE_ADVICE}"
    )


def device_description(env: Environment) -> str:
    """``cpu``, or ``<GPU name>, compute capability X.Y``: how notes name the device."""
    if env.compute_capability is None:
        return env.device.split(":")[0]
    return f"{env.device_name}, compute capability {env.compute_capability}"


def _savings_sentence(savings: Savings) -> str:
    removed = savings.params_dense - savings.params_nonzero
    text = (
        f"{savings.params_nonzero:,} of {savings.params_dense:,} parameters are non-zero "
        f"({removed / savings.params_dense:.0%} fewer), "
        if savings.params_dense
        else ""
    )
    text += f"an ideal N:M kernel would do {savings.flops_ratio:.2f}x the dense FLOPs"
    if savings.checkpoint_ratio is not None:
        text += f", and the compressed N:M checkpoint is {savings.checkpoint_ratio:.2f}x the dense size"
    return text + "."


def _verdict(
    env: Environment,
    pattern: NMPattern,
    layers: Sequence[LayerReport],
    savings: Savings,
    method: Method,
    median_layer: float | None,
    e2e: float | None,
) -> str:
    compliant = all(layer.compliance.compliant for layer in layers)
    if not env.sparse_kernels:
        text = (
            f"No sparse kernel exists for this device ({device_description(env)}), so N:M sparsity does not make this "
            f"model faster here; all timings are dense. What still holds: {_savings_sentence(savings)} "
            + HARDWARE_ADVICE
        )
        if not compliant:
            text += f" This model's {pattern} weights would also need a 2:4-compliant pattern first."
        return text
    if _on_cpu_nm(env):  # name the threads and the baseline too
        parts = [
            f"On {env.device_name} ({env.backend}, {env.cpu_threads} threads, {', '.join(method.dtypes)}, "
            "against PyTorch's dense linear)"
        ]
    else:
        parts = [f"On {env.device_name} ({env.backend}, {', '.join(method.dtypes)})"]
    measured = sum(1 for layer in layers for m in layer.measurements if m.speedup is not None)
    if median_layer is None:
        parts.append(" no sparsified layer could run on the sparse kernel, so there is no per-layer speedup")
    else:
        parts.append(f" the median per-layer speedup is {median_layer:.2f}x over {measured} measurements")
    if e2e is not None:
        if e2e >= method.min_speedup:
            how = "faster than dense"
        elif e2e >= 1:
            how = f"below the {method.min_speedup:.2f}x keep-sparse threshold: no meaningful gain"
        else:
            how = "slower than dense: keep the model dense on this device"
        parts.append(f", and the whole model runs at {e2e:.2f}x end to end ({how})")
    else:
        parts.append(", with no end-to-end sparse timing")
    text = "".join(parts) + "."
    dense_layers = [layer.name for layer in layers if layer.recommendation == DENSE]
    if dense_layers:
        shown = ", ".join(dense_layers[:5]) + (" ..." if len(dense_layers) > 5 else "")
        text += (
            f" {len(dense_layers)} of {len(layers)} sparsified layers are better kept dense because the sparse "
            f"kernel is slower (or no faster) at the measured shapes: {shown}."
        )
    not_applicable = sum(1 for layer in layers if layer.recommendation == NOT_APPLICABLE)
    if not_applicable:
        text += f" {not_applicable} layer(s) could not use the kernel (see each layer's reason)."
    if not compliant and not _on_cpu_nm(env):  # the CPU N:M kernel serves any pattern
        text += f" The {pattern} pattern is not 2:4-compliant: {pattern_explanation(pattern)}."
    return text + f" Savings: {_savings_sentence(savings)}"


def _notes(
    env: Environment,
    method: Method,
    pattern: NMPattern,
    layers: Sequence[LayerReport],
    unreached: Sequence[str],
    end_to_end: EndToEnd,
    kernel_label: str,
) -> tuple[str, ...]:
    notes: list[str] = []
    if not env.sparse_kernels:
        notes.append(no_kernel_note(device_description(env)))
    notes.append(
        f"Timing: {method.timer}; {method.warmup} warm-up calls, then {method.repeats} repeats, each running "
        f"the call enough times to last >= {method.min_repeat_ms:g} ms; reported as the median with the "
        "10th-90th percentile spread, in ms per call. Per-layer GEMMs run on random inputs of the layer's "
        "recorded shape, weights as stored (zeros included) for dense, with the layer's bias."
        + (
            " On a CPU each Linear's dense and N:M timings cycle through copies of its weight that together "
            f"hold as many elements as the model (at most {TIMING_ROTATION_BYTES >> 20} MiB), so a layer "
            "reads its weight from the cache the model leaves it, not from one it has to itself."
            if env.device == "cpu"
            else ""
        )
    )
    notes.append(
        "FLOPs count the GEMMs of Linear and Conv2d layers per sample (attention score products, norms and "
        "activations are excluded); the N:M figure is what an ideal kernel skipping every pruned weight does."
    )
    if not pattern.is_24_compliant:
        notes.append(f"Pattern {pattern} is not 2:4-compliant: {pattern_explanation(pattern)}.")
    elif pattern != NMPattern(2, 4):
        notes.append(f"Pattern {pattern}: {pattern_explanation(pattern)}.")
    if env.sparse_kernels:
        on_cuda = not _on_cpu_nm(env)
        if any(layer.kind == "Conv2d" for layer in layers):
            notes.append(
                "PyTorch has no semi-structured (2:4) convolution kernel: sparsified Conv2d layers were timed "
                "dense and stay dense in the end-to-end sparse model."
                if on_cuda
                else f"The {kernel_label} serves Linear layers only: sparsified Conv2d layers were timed dense "
                "and stay dense in the end-to-end sparse model."
            )
        if any(m.padded_m is not None for layer in layers for m in layer.measurements):
            notes.append(
                "Where a GEMM's row count M was not a multiple of 8, the sparse call pads its input to the next "
                "multiple (as PyTorch does internally); the padding's cost is part of the sparse time."
            )
        if on_cuda and method.launch == EAGER and any(layer.recommendation == DENSE for layer in layers):
            notes.append(
                "Timed eagerly: every sparse call pays PyTorch's host-side work (for cuSPARSELt, a plan set-up "
                "per call, about 0.45 ms on an H200), which small GEMMs cannot hide. A deployment that captures "
                "CUDA graphs (torch.compile mode='reduce-overhead', TensorRT, graph-captured serving) does not "
                "pay it: measure that case with launch 'cuda-graph'."
            )
        notes.append(
            f"End to end, every eligible Linear layer is converted to the {kernel_label} (including layers "
            "recommended dense); convolutions and ineligible layers run dense in both models."
        )
    if end_to_end.accuracy_given is not None:
        notes.append(
            "accuracy_given was measured by the caller on the model as passed in; accuracy[] is measured here on "
            "the models actually timed."
        )
    if unreached:
        notes.append(
            f"Not reached by a forward pass at this input shape, so not timed: {', '.join(unreached)}."
        )
    return tuple(notes)


# -- the report ------------------------------------------------------------------------------------
def build_speedup_report(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    dtypes: Sequence[torch.dtype | str] | None = None,
    device: torch.device | str = "cpu",
    pattern: NMPattern | str = "2:4",
    layers: Iterable[str] | None = None,
    accuracy: float | None = None,
    eval_data: SupervisedData | None = None,
    export_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    training_warnings: Sequence[str] = (),
    warmup: int = 10,
    repeats: int = 30,
    min_repeat_ms: float = 1.0,
    min_speedup: float = DEFAULT_MIN_SPEEDUP,
    launch: str = EAGER,
    timer: Timer | None = None,
    kernel: SparseKernel | None = None,
) -> SpeedupReport:
    """Measure ``model`` (a finalized N:M model; it is not modified) on ``device`` and build the report.

    ``input_shape`` is one sample's shape without the batch dimension. ``layers`` names the sparsified
    layers (default: every Linear/Conv2d whose weight is exactly ``pattern``-sparse). ``dtypes`` defaults
    to float16 where a sparse kernel exists and float32 elsewhere. ``accuracy`` is reported as given;
    with ``eval_data`` the accuracy of each timed model is measured. ``export_dir`` adds the on-disk
    file sizes. ``training_warnings`` (e.g. the model did not learn) open the report's notes. ``timer`` and
    ``kernel`` default to :func:`time_callable` and the device's own semi-structured kernel; tests inject
    both. ``launch`` is ``"eager"`` (each call launched from Python, host overhead included) or
    ``"cuda-graph"`` (calls replayed from a captured CUDA graph; CUDA only).
    """
    pattern = _as_pattern(pattern)
    sizes = _check_args(batch_sizes, warmup, repeats, min_repeat_ms, min_speedup)
    device = torch.device(device)
    if launch not in LAUNCHES:
        raise SpeedupReportError(f"launch must be one of {', '.join(LAUNCHES)}, got {launch!r}")
    if launch == CUDA_GRAPH and device.type != "cuda":
        raise SpeedupReportError(
            f"launch {CUDA_GRAPH!r} replays CUDA graphs: it needs a CUDA device, not {device}"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpeedupReportError(f"device {device} was requested but CUDA is not available here")
        if device.index is None:  # name the GPU actually used
            device = torch.device("cuda", torch.cuda.current_device())
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise SpeedupReportError(
                f"layer {name or '<root>'!r} still has an N:M parametrization; call sparsifier.finalize() first"
            )
    if kernel is None:
        kernel, kernel_reason = device_kernel(device, pattern)
    else:
        kernel_reason = kernel.description
    if dtypes is None:
        # The kernel's first dtype (float16 for 2:4 on a GPU, float32 for the CPU N:M kernel).
        dtype_list: tuple[torch.dtype, ...] = kernel.dtypes[:1] if kernel is not None else (torch.float32,)
    else:
        dtype_list = tuple(dict.fromkeys(as_dtype(d) for d in dtypes))
        if not dtype_list:
            raise SpeedupReportError("dtypes must not be empty")
    shape = tuple(int(s) for s in input_shape)
    if any(s < 1 for s in shape):
        raise SpeedupReportError(f"input_shape must hold positive sizes, got {list(shape)}")

    names = list(layers) if layers is not None else sparsified_layer_names(model, pattern)
    modules = dict(gemm_layers(model))
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise SpeedupReportError(f"no Linear/Conv2d layer named {', '.join(map(repr, unknown))} in the model")

    # Shapes are read on a CPU copy: the caller's model stays where and how it is.
    shape_model = copy.deepcopy(model).float().cpu()
    try:
        gemms = layer_gemms(shape_model, shape)
    except ValueError as exc:
        raise SpeedupReportError(str(exc)) from exc
    del shape_model

    default_timer = make_timer(device, warmup=warmup, repeats=repeats, min_repeat_ms=min_repeat_ms)
    ctx = _Context(
        device,
        kernel,
        kernel_reason,
        timer or default_timer,
        min_speedup,
        launch,
        model_weight_elements=sum(p.numel() for p in model.parameters()),
    )
    env = capture_environment(device, kernel, kernel_reason)

    rows: list[LayerReport] = []
    unreached = [n for n in names if n not in gemms]
    with torch.no_grad():
        for name in names:
            if name not in gemms:
                continue
            rows.append(_layer_report(name, modules[name], gemms[name], pattern, sizes, dtype_list, ctx))
    end_to_end = _end_to_end(model, shape, sizes, dtype_list, eval_data, accuracy, ctx)
    savings = _savings(model, rows, gemms, set(names), pattern, export_dir)

    median_layer = median_or_none(m.speedup for layer in rows for m in layer.measurements)
    e2e = median_or_none(m.speedup for m in end_to_end.measurements)
    method = Method(
        timer=(
            "each repeat's calls captured in a CUDA graph and replayed, CUDA events around each replay "
            "(GPU time without host launch overhead)"
            if launch == CUDA_GRAPH
            else "CUDA events around each repeat of eager calls (GPU time, host launch overhead included "
            "when it is longer than the kernels)"
            if device.type == "cuda"
            else "time.perf_counter around each repeat (wall time)"
        ),
        warmup=warmup,
        repeats=repeats,
        min_repeat_ms=min_repeat_ms,
        statistic="median of repeats; spread p10-p90",
        batch_sizes=sizes,
        dtypes=tuple(dtype_name(d) for d in dtype_list),
        min_speedup=min_speedup,
        correctness_rtol=CORRECTNESS_RTOL,
        launch=launch,
    )
    summary = Summary(
        median_layer_speedup=median_layer,
        end_to_end_speedup=e2e,
        layers_recommended_sparse=tuple(r.name for r in rows if r.recommendation == SPARSE),
        layers_recommended_dense=tuple(r.name for r in rows if r.recommendation == DENSE),
        layers_not_applicable=tuple(r.name for r in rows if r.recommendation == NOT_APPLICABLE),
        verdict=_verdict(env, pattern, rows, savings, method, median_layer, e2e),
    )
    return SpeedupReport(
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        model=ModelInfo(model_name, type(model).__name__, str(pattern), shape),
        environment=env,
        method=method,
        layers=tuple(rows),
        end_to_end=end_to_end,
        savings=savings,
        summary=summary,
        # A model that did not learn is fast for nothing: its training warnings come first.
        notes=tuple(f"Training: {text}" for text in training_warnings)
        + _notes(env, method, pattern, rows, unreached, end_to_end, kernel.label if kernel else ""),
    )


def _layout_of(module: nn.Module) -> str | None:
    # The engine's layer adapter says how the weight is laid out, so compliance is checked along the
    # reduction dimension whichever way the weight is stored.
    adapter = adapter_for(module)
    return None if adapter is None else adapter.layout


def _layer_report(
    name: str,
    module: nn.Linear | nn.Conv2d,
    gemm: LayerGemm,
    pattern: NMPattern,
    batch_sizes: tuple[int, ...],
    dtypes: tuple[torch.dtype, ...],
    ctx: _Context,
) -> LayerReport:
    weight = module.weight.detach()
    nonzeros = int((weight != 0).sum())
    measurements = tuple(
        _measure_layer(name, module, gemm, batch, dtype, ctx) for dtype in dtypes for batch in batch_sizes
    )
    choice, reason = combine_recommendations(measurements)
    return LayerReport(
        name=name,
        kind=gemm.kind,
        weight_shape=tuple(weight.shape),
        params=weight.numel(),
        nonzeros=nonzeros,
        density=nonzeros / weight.numel() if weight.numel() else 1.0,
        compliance=check_24_compliance(weight, pattern, _layout_of(module)),
        flops_dense=gemm.dense_flops(),
        flops_nm=gemm.nm_flops(pattern.density),
        measurements=measurements,
        recommendation=choice,
        reason=reason,
    )


# -- schema ----------------------------------------------------------------------------------------
def _t(name: str, nullable: bool = False) -> dict[str, Any]:
    return {"type": [name, "null"] if nullable else name}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    # Every listed field is always present (null where it does not apply); no others appear.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TIMING = _obj(
    {
        "median_ms": _t("number"),
        "p10_ms": _t("number"),
        "p90_ms": _t("number"),
        "repeats": _t("integer"),
        "inner": _t("integer"),
        "timer": {"enum": list(TIMERS)},
    }
)
_RECOMMENDATION = {"enum": list(RECOMMENDATIONS)}

# JSON Schema (draft 2020-12) of SpeedupReport.to_dict(); the module docstring explains each field.
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "LBC speedup report",
    **_obj(
        {
            "schema": {"const": REPORT_SCHEMA_VERSION},
            "created_at": _t("string"),
            "model": _obj(
                {
                    "name": _t("string", nullable=True),
                    "class": _t("string"),
                    "pattern": _t("string"),
                    "input_shape": _arr(_t("integer")),
                }
            ),
            "environment": _obj(
                {
                    "device": _t("string"),
                    "device_name": _t("string"),
                    "compute_capability": _t("string", nullable=True),
                    "driver_version": _t("string", nullable=True),
                    "cuda_version": _t("string", nullable=True),
                    "cusparselt_version": _t("integer", nullable=True),
                    "torch_version": _t("string"),
                    "python_version": _t("string"),
                    "platform": _t("string"),
                    "backend": _t("string"),
                    "sparse_kernels": _t("boolean"),
                    "sparse_kernel_reason": _t("string"),
                    "cpu_model": _t("string"),
                    "cpu_threads": _t("integer"),
                }
            ),
            "method": _obj(
                {
                    "timer": _t("string"),
                    "warmup": _t("integer"),
                    "repeats": _t("integer"),
                    "min_repeat_ms": _t("number"),
                    "statistic": _t("string"),
                    "batch_sizes": _arr(_t("integer")),
                    "dtypes": _arr(_t("string")),
                    "min_speedup": _t("number"),
                    "correctness_rtol": _t("number"),
                    "launch": {"enum": list(LAUNCHES)},
                }
            ),
            "layers": _arr(
                _obj(
                    {
                        "name": _t("string"),
                        "kind": {"enum": ["Linear", "Conv2d"]},
                        "weight_shape": _arr(_t("integer")),
                        "params": _t("integer"),
                        "nonzeros": _t("integer"),
                        "density": _t("number"),
                        "compliance": _obj(
                            {
                                "compliant": _t("boolean"),
                                "blocks": _t("integer"),
                                "violating_blocks": _t("integer"),
                                "pattern_guarantees": _t("boolean"),
                                "explanation": _t("string"),
                            }
                        ),
                        "flops_per_sample": _obj({"dense": _t("integer"), "nm": _t("number")}),
                        "measurements": _arr(
                            _obj(
                                {
                                    "batch_size": _t("integer"),
                                    "dtype": _t("string"),
                                    "gemm": _obj(
                                        {
                                            "m": _t("integer"),
                                            "n": _t("integer"),
                                            "k": _t("integer"),
                                            "groups": _t("integer"),
                                        }
                                    ),
                                    "padded_m": _t("integer", nullable=True),
                                    "dense": _nullable(_TIMING),
                                    "sparse": _nullable(_TIMING),
                                    "speedup": _t("number", nullable=True),
                                    "recommendation": _RECOMMENDATION,
                                    "reason": _t("string"),
                                }
                            )
                        ),
                        "recommendation": _RECOMMENDATION,
                        "reason": _t("string"),
                    }
                )
            ),
            "end_to_end": _obj(
                {
                    "measurements": _arr(
                        _obj(
                            {
                                "batch_size": _t("integer"),
                                "dtype": _t("string"),
                                "dense": _nullable(_TIMING),
                                "dense_throughput": _t("number", nullable=True),
                                "sparse": _nullable(_TIMING),
                                "sparse_throughput": _t("number", nullable=True),
                                "speedup": _t("number", nullable=True),
                                "reason": _t("string", nullable=True),
                            }
                        )
                    ),
                    "conversions": _arr(
                        _obj(
                            {
                                "dtype": _t("string"),
                                "converted": _arr(_t("string")),
                                "skipped": _arr(_obj({"name": _t("string"), "reason": _t("string")})),
                            }
                        )
                    ),
                    "accuracy_given": _t("number", nullable=True),
                    "accuracy": _arr(
                        _obj(
                            {
                                "variant": {"enum": [DENSE, SPARSE]},
                                "dtype": _t("string"),
                                "accuracy": _t("number"),
                                "loss": _t("number", nullable=True),
                                "samples": _t("integer"),
                            }
                        )
                    ),
                }
            ),
            "savings": _obj(
                {
                    "params_dense": _t("integer"),
                    "params_nonzero": _t("integer"),
                    "sparsified_params": _t("integer"),
                    "sparsified_nonzeros": _t("integer"),
                    "flops_dense_per_sample": _t("integer"),
                    "flops_nm_per_sample": _t("number"),
                    "flops_ratio": _t("number"),
                    "checkpoint_dense_bytes": _t("integer", nullable=True),
                    "checkpoint_compressed_bytes": _t("integer", nullable=True),
                    "checkpoint_ratio": _t("number", nullable=True),
                    "checkpoint_note": _t("string", nullable=True),
                    "files": _arr(_obj({"name": _t("string"), "bytes": _t("integer")})),
                }
            ),
            "summary": _obj(
                {
                    "median_layer_speedup": _t("number", nullable=True),
                    "end_to_end_speedup": _t("number", nullable=True),
                    "layers_recommended_sparse": _arr(_t("string")),
                    "layers_recommended_dense": _arr(_t("string")),
                    "layers_not_applicable": _arr(_t("string")),
                    "verdict": _t("string"),
                }
            ),
            "notes": _arr(_t("string")),
        }
    ),
}
