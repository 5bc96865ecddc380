"""Wall-clock timing of one callable: warm-up, then the median and p10-p90 spread over repeats.

On CUDA each repeat is bracketed by CUDA events (GPU time, no host-side jitter); on CPU by
``time.perf_counter``. With ``cuda_graph=True`` the calls of a repeat are captured once into a CUDA graph
and each repeat replays it: the GPU then runs the kernels back to back with no host work between them,
which is what a graph-captured deployment (``torch.compile(mode="reduce-overhead")``, TensorRT, serving
engines that capture their decode step) sees. Eager timing includes the host's per-call work whenever
that is longer than the kernel: PyTorch's cuSPARSELt 2:4 matmul spends about 0.45 ms of host time per
call on an H200 (plan set-up), while its kernel takes 0.03 ms for an 8x4096x4096 GEMM. A repeat runs the callable ``inner`` times and reports the mean per call, with
``inner`` calibrated after warm-up so that one repeat lasts at least ``min_repeat_ms``: a single small
GEMM takes microseconds, close to the timers' resolution and to launch overhead noise.

``torch.utils.benchmark.Timer`` would also do; it is not used because it reports per-run means of its
own choosing, hides the per-repeat samples the spread is computed from, and does not use CUDA events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

CUDA_EVENT_TIMER = "cuda-event"
CUDA_GRAPH_TIMER = "cuda-graph"
PERF_COUNTER_TIMER = "perf_counter"
TIMERS = (CUDA_EVENT_TIMER, CUDA_GRAPH_TIMER, PERF_COUNTER_TIMER)

# Upper bound on calls per repeat: beyond it the calibration has measured nothing useful anyway.
MAX_INNER = 10_000
# A captured graph holds every call of a repeat: keep it small enough to capture in well under a second.
MAX_GRAPH_INNER = 1_000


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: the median and the 10th/90th percentiles over ``repeats`` repeats."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    inner: int  # calls per repeat; each sample is the repeat's time divided by this
    timer: str  # CUDA_EVENT_TIMER | CUDA_GRAPH_TIMER | PERF_COUNTER_TIMER


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of an ascending, non-empty list."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def summarize(samples_ms: list[float], *, inner: int, timer: str) -> Timing:
    """A Timing from per-call samples (already divided by ``inner``)."""
    ordered = sorted(samples_ms)
    return Timing(
        median_ms=percentile(ordered, 50),
        p10_ms=percentile(ordered, 10),
        p90_ms=percentile(ordered, 90),
        repeats=len(ordered),
        inner=inner,
        timer=timer,
    )


def _run_cuda(
    fn: Callable[[], object], device: torch.device, inner: int, repeats: int, *, per_call: int = 1
) -> list[float]:
    pairs = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)
    ]
    torch.cuda.synchronize(device)
    for start, end in pairs:
        start.record()
        for _ in range(inner):
            fn()
        end.record()
    # One synchronisation at the end: syncing per repeat would idle the GPU between repeats.
    torch.cuda.synchronize(device)
    # ``per_call``: calls inside one ``fn`` (a graph replay runs many).
    return [start.elapsed_time(end) / (inner * per_call) for start, end in pairs]


def _capture(fn: Callable[[], object], device: torch.device, inner: int) -> torch.cuda.CUDAGraph:
    """A CUDA graph of ``inner`` back-to-back calls of ``fn``.

    The calls run a few times on the capture stream first, so lazy initialisation (cuBLAS handles,
    cuSPARSELt plans, allocator growth) happens before capture rather than inside it.
    """
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    return graph


def _run_graph(graph: torch.cuda.CUDAGraph, device: torch.device, inner: int, repeats: int) -> list[float]:
    return _run_cuda(graph.replay, device, 1, repeats, per_call=inner)


def _run_cpu(fn: Callable[[], object], inner: int, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) * 1e3 / inner)
    return samples


def time_callable(
    fn: Callable[[], object],
    *,
    device: torch.device | str,
    warmup: int = 10,
    repeats: int = 30,
    min_repeat_ms: float = 1.0,
    cuda_graph: bool = False,
) -> Timing:
    """Time ``fn()`` on ``device``: ``warmup`` untimed calls, calibration, then ``repeats`` timed repeats.

    Warm-up absorbs one-time costs (kernel selection, cuSPARSELt plan creation, allocator growth,
    lazy CUDA init) that a long-running model never pays again.
    """
    if warmup < 0 or repeats < 1 or min_repeat_ms < 0:
        raise ValueError(
            f"need warmup >= 0, repeats >= 1, min_repeat_ms >= 0; got {warmup}, {repeats}, {min_repeat_ms}"
        )
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    if cuda_graph:
        if not on_cuda:
            raise ValueError(f"CUDA graph timing needs a CUDA device, not {device}")
        return _time_graph(fn, device, warmup, repeats, min_repeat_ms)

    def run(inner: int, count: int) -> list[float]:
        return _run_cuda(fn, device, inner, count) if on_cuda else _run_cpu(fn, inner, count)

    if warmup:
        run(1, warmup)
    # Calibrate on the median of a few single calls, so one slow outlier does not set ``inner``.
    inner = _calls_per_repeat(sorted(run(1, 3))[1], min_repeat_ms, MAX_INNER)
    return summarize(
        run(inner, repeats), inner=inner, timer=CUDA_EVENT_TIMER if on_cuda else PERF_COUNTER_TIMER
    )


def _calls_per_repeat(probe_ms: float, min_repeat_ms: float, cap: int) -> int:
    """Calls per repeat so that one repeat lasts ``min_repeat_ms``, from one call's ``probe_ms``."""
    if min_repeat_ms == 0:
        return 1
    if probe_ms <= 0:  # below the timer's resolution
        return cap
    return int(min(cap, max(1, math.ceil(min_repeat_ms / probe_ms))))


def _time_graph(
    fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, min_repeat_ms: float
) -> Timing:
    # Calibrate on a graph of one call: its replay time is the kernel time without host overhead.
    single = _capture(fn, device, 1)
    _run_graph(single, device, 1, max(warmup, 1))
    inner = _calls_per_repeat(sorted(_run_graph(single, device, 1, 3))[1], min_repeat_ms, MAX_GRAPH_INNER)
    del single
    graph = _capture(fn, device, inner)
    if warmup:
        _run_graph(graph, device, inner, 1)
    samples = _run_graph(graph, device, inner, repeats)
    del graph
    return summarize(samples, inner=inner, timer=CUDA_GRAPH_TIMER)
