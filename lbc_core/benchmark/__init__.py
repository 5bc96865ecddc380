"""Honest sparse-kernel benchmarks: per-layer GEMM timings, end-to-end latency and the N:M savings.

Sparse timings come only from real sparse kernels (2:4 semi-structured on NVIDIA compute capability
>= 8.0); elsewhere the report says no sparse kernel exists and gives the size and FLOP savings.
"""

from lbc_core.benchmark.compliance import (
    Compliance,
    check_24_compliance,
    compliant_alternatives,
    max_kept_per_block,
    pattern_explanation,
)
from lbc_core.benchmark.environment import Environment, capture_environment
from lbc_core.benchmark.gemm import (
    GemmShape,
    GemmShapeError,
    LayerGemm,
    architecture_input_shape,
    layer_gemms,
)
from lbc_core.benchmark.kernels import SparseKernel, semi_structured_kernel
from lbc_core.benchmark.render import render_html, render_svg_chart, render_text
from lbc_core.benchmark.report import (
    CUDA_GRAPH,
    DEFAULT_MIN_SPEEDUP,
    EAGER,
    LAUNCHES,
    RECOMMENDATIONS,
    REPORT_SCHEMA,
    REPORT_SCHEMA_VERSION,
    EndToEnd,
    LayerReport,
    Measurement,
    Savings,
    SpeedupReport,
    SpeedupReportError,
    Summary,
    Timer,
    TimingRequest,
    build_speedup_report,
    combine_recommendations,
    make_timer,
    no_kernel_note,
    recommend,
    sparsified_layer_names,
)
from lbc_core.benchmark.timing import Timing, time_callable

__all__ = [
    "CUDA_GRAPH",
    "DEFAULT_MIN_SPEEDUP",
    "EAGER",
    "LAUNCHES",
    "RECOMMENDATIONS",
    "REPORT_SCHEMA",
    "REPORT_SCHEMA_VERSION",
    "Compliance",
    "EndToEnd",
    "Environment",
    "GemmShape",
    "GemmShapeError",
    "LayerGemm",
    "LayerReport",
    "Measurement",
    "Savings",
    "SparseKernel",
    "SpeedupReport",
    "SpeedupReportError",
    "Summary",
    "Timer",
    "Timing",
    "TimingRequest",
    "architecture_input_shape",
    "build_speedup_report",
    "capture_environment",
    "check_24_compliance",
    "combine_recommendations",
    "compliant_alternatives",
    "layer_gemms",
    "make_timer",
    "max_kept_per_block",
    "no_kernel_note",
    "pattern_explanation",
    "recommend",
    "render_html",
    "render_svg_chart",
    "render_text",
    "semi_structured_kernel",
    "sparsified_layer_names",
    "time_callable",
]
