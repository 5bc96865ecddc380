"""The benchmark package's public surface (a change here is a change for the worker that calls it)."""

from __future__ import annotations

import lbc_core.benchmark as benchmark


def test_public_api_is_exactly_this() -> None:
    assert sorted(benchmark.__all__) == sorted(
        [
            "CUDA_GRAPH", "DEFAULT_MIN_SPEEDUP", "EAGER", "LAUNCHES", "RECOMMENDATIONS", "REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "Compliance",
            "EndToEnd", "Environment", "GemmShape", "GemmShapeError", "LayerGemm", "LayerReport", "Measurement",
            "Savings", "SparseKernel", "SpeedupReport", "SpeedupReportError", "Summary", "Timer", "Timing",
            "TimingRequest", "architecture_input_shape", "build_speedup_report", "capture_environment",
            "check_24_compliance", "combine_recommendations", "compliant_alternatives", "layer_gemms", "make_timer",
            "max_kept_per_block", "no_kernel_note", "pattern_explanation", "recommend", "render_html",
            "render_svg_chart", "render_text", "semi_structured_kernel", "sparsified_layer_names", "time_callable",
        ]
    )  # fmt: skip
    for name in benchmark.__all__:
        assert getattr(benchmark, name) is not None, name
