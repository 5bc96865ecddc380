"""The report on a CPU with the native N:M kernel: real sparse timings, the ISA path, honest wording."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lbc_core.benchmark import build_speedup_report
from lbc_core.benchmark.report import TimingRequest, _Context
from lbc_core.benchmark.timing import Timing
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


def test_each_layer_is_timed_over_as_many_weight_bytes_as_the_model_streams() -> None:
    """Called again and again on one weight, a layer would run from the last-level cache; on the CPU the
    dense and the N:M timing each cycle through copies of the layer's weight that together hold as many
    elements as the whole model, so a layer sees the cache the model leaves it."""
    torch.manual_seed(0)
    model = build_model("mlp", input_features=128, hidden_dim=256, depth=3)
    finalize(model)
    weights: dict[str, set[int]] = {"dense": set(), "sparse": set()}  # weights F.linear saw per variant
    timing: list[str] = []  # the variant being timed, while a layer timing runs
    real_linear = F.linear

    def spying_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Any:
        if timing:
            weights[timing[-1]].add(weight.data_ptr())
        return real_linear(x, weight, bias)

    def timer(request: TimingRequest, fn: Callable[[], object]) -> Timing:
        if request.scope == "layer":
            timing.append(request.variant)
            for _ in range(20):
                fn()
            timing.pop()
        return Timing(1.0, 1.0, 1.0, 20, 1, "test")

    total = sum(p.numel() for p in model.parameters())
    expected = -(-total // (256 * 256))  # features.2 is 256x256
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "linear", spying_linear)
        build_speedup_report(
            model, input_shape=(128,), batch_sizes=(1,), pattern="2:4", timer=timer, layers=["features.2"]
        )
    assert expected == 3
    assert len(weights["dense"]) == expected


def test_the_copy_count_follows_the_model_size_and_is_capped() -> None:
    def unused_timer(request: TimingRequest, fn: Callable[[], object]) -> Timing:
        raise AssertionError("nothing is timed here")

    def copies(device: str, model_elements: int, weight: torch.Tensor) -> int:
        ctx = _Context(
            torch.device(device), None, "", unused_timer, 1.0, model_weight_elements=model_elements
        )
        return ctx.weight_copies(weight)

    layer = torch.empty(1024, 1024)
    assert copies("cpu", 1024 * 1024, layer) == 1  # the model is this layer: warm, as it runs
    assert copies("cpu", 3 * 1024 * 1024 + 1, layer) == 4
    assert copies("cpu", 10**9, layer) == 64  # 256 MiB of float32 copies
    assert copies("cpu", 10**9, torch.empty(4096, 4096)) == 4  # 256 MiB already in 4 copies
    assert copies("cpu", 10**9, torch.empty(16, 16)) == 64  # the cap: no tens of thousands of copies
    assert copies("meta", 10**9, layer) == 1  # only CPU timings rotate
