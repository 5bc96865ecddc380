"""The report on a CPU with the native N:M kernel: real sparse timings, the ISA path, honest wording."""

from __future__ import annotations

from typing import Any

import torch

from lbc_core.benchmark import build_speedup_report
from lbc_core.kernels.native import native_status
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern
from tests.lbc_core.benchmark.conftest import finalize

FAST: dict[str, Any] = {"warmup": 1, "repeats": 3, "min_repeat_ms": 0.0}


def test_cpu_report_times_the_n_m_kernel_against_dense_linear() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", input_features=128, hidden_dim=256, depth=3)
    names = finalize(model)
    report = build_speedup_report(model, input_shape=(128,), batch_sizes=(1, 4), pattern="2:4", **FAST)
    status = native_status()
    env = report.environment
    assert env.sparse_kernels and env.backend == f"lbc-nm {status.selected}"
    assert env.cpu_threads == torch.get_num_threads()
    assert report.method.dtypes == ("float32",)
    assert {layer.name for layer in report.layers} == set(names)
    for layer in report.layers:
        for m in layer.measurements:
            assert m.dense is not None and m.sparse is not None
            assert m.speedup == m.dense.median_ms / m.sparse.median_ms
            assert m.recommendation == ("sparse" if m.speedup >= report.method.min_speedup else "dense")
    for m in report.end_to_end.measurements:
        assert m.sparse is not None and m.speedup is not None
    (conversion,) = report.end_to_end.conversions
    assert set(conversion.converted) == set(names)
    verdict = report.summary.verdict
    assert (
        f"lbc-nm {status.selected}, {env.cpu_threads} threads, float32, against PyTorch's dense linear"
        in verdict
    )
    assert not any("No sparse kernel" in note for note in report.notes)
    assert any("converted to the N:M CPU kernel" in note for note in report.notes)


def test_non_2_4_patterns_and_bfloat16_are_timed_on_the_cpu_kernel() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", input_features=64, hidden_dim=128, depth=2)
    finalize(model, pattern=NMPattern(1, 8))
    report = build_speedup_report(
        model, input_shape=(64,), batch_sizes=(2,), dtypes=("bfloat16",), pattern="1:8", **FAST
    )
    assert all(m.sparse is not None for layer in report.layers for m in layer.measurements)
    assert "not 2:4-compliant" not in report.summary.verdict
