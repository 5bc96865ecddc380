"""The timer: warm-up and calibration, median and spread, and its argument checks."""

from __future__ import annotations

import pytest
import torch

from lbc_core.benchmark import time_callable
from lbc_core.benchmark.timing import percentile, summarize


def test_percentiles_interpolate() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 10) == pytest.approx(1.4)
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_sorts_samples() -> None:
    timing = summarize([5.0, 1.0, 3.0], inner=4, timer="perf_counter")
    assert (timing.median_ms, timing.repeats, timing.inner) == (3.0, 3, 4)
    assert timing.p10_ms <= timing.median_ms <= timing.p90_ms


def test_time_callable_on_cpu_warms_up_calibrates_and_repeats() -> None:
    calls = 0

    def fn() -> None:
        nonlocal calls
        calls += 1

    timing = time_callable(fn, device="cpu", warmup=3, repeats=7, min_repeat_ms=0.05)
    assert timing.timer == "perf_counter"
    assert timing.repeats == 7
    assert timing.inner >= 1
    # warm-up + 3 calibration probes + the timed repeats.
    assert calls == 3 + 3 + 7 * timing.inner
    assert 0 <= timing.p10_ms <= timing.median_ms <= timing.p90_ms


def test_min_repeat_zero_means_one_call_per_repeat() -> None:
    assert time_callable(lambda: None, device="cpu", warmup=0, repeats=2, min_repeat_ms=0).inner == 1


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"repeats": 0}, {"min_repeat_ms": -1.0}])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        time_callable(lambda: None, device="cpu", **kwargs)


def test_cuda_graph_timing_needs_a_cuda_device() -> None:
    with pytest.raises(ValueError, match="CUDA graph timing needs a CUDA device, not cpu"):
        time_callable(lambda: None, device="cpu", cuda_graph=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_timing_replays_the_captured_calls() -> None:
    x = torch.randn(256, 256, device="cuda")
    calls = 0

    def fn() -> torch.Tensor:
        nonlocal calls
        calls += 1
        return x @ x

    timing = time_callable(fn, device="cuda", warmup=2, repeats=5, min_repeat_ms=0.2, cuda_graph=True)
    assert timing.timer == "cuda-graph" and timing.repeats == 5 and timing.median_ms > 0
    # Python ran fn only while warming up and capturing (two graphs: calibration and timing), never per repeat.
    assert calls == 3 + 1 + 3 + timing.inner
