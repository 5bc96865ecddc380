"""Where a semi-structured 2:4 matmul's time goes on this GPU: host overhead versus kernel time.

For a 4096x4096 2:4 weight and M in (1, 4096, 16384) rows it times, with CUDA events (median of 20):
  dense      F.linear(x, W)
  subclass   F.linear(x, W_2:4) through PyTorch's SparseSemiStructuredTensor (what the product times)
  direct     torch._cslt_sparse_mm(packed, x^T) (the cuSPARSELt op the subclass ends in), when present
  graph      the subclass call replayed from a CUDA graph (no host work per call), when capturable
and the host (CPU) time of one subclass call. Usage: python benchmarks/gpu_overhead_probe.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from lbc_core.sparsity import NMPattern, magnitude_mask


def gpu_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def host_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
        torch.cuda.synchronize()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    torch.manual_seed(0)
    n = k = 4096
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    w = (w * magnitude_mask(w, NMPattern(2, 4))).contiguous()
    sparse = torch.sparse.to_sparse_semi_structured(w)
    rows = []
    for m in (1 * 8, 4096, 16384):  # M=8: one decode row padded as the report pads it
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        row: dict[str, object] = {"m": m}
        row["dense_ms"] = gpu_ms(lambda x=x: F.linear(x, w))
        row["subclass_ms"] = gpu_ms(lambda x=x: F.linear(x, sparse))
        row["subclass_host_ms"] = host_ms(lambda x=x: F.linear(x, sparse))
        cslt = getattr(torch, "_cslt_sparse_mm", None)
        if cslt is not None and getattr(sparse, "packed", None) is not None:
            xt = x.t()
            try:
                row["direct_ms"] = gpu_ms(lambda xt=xt, op=cslt: op(sparse.packed, xt))
                row["direct_host_ms"] = host_ms(lambda xt=xt, op=cslt: op(sparse.packed, xt))
            except Exception as exc:  # record why the direct op did not run
                row["direct_error"] = f"{type(exc).__name__}: {exc}"[:200]
        try:
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    F.linear(x, sparse)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                F.linear(x, sparse)
            row["graph_ms"] = gpu_ms(graph.replay)
        except Exception as exc:  # record why capture failed
            row["graph_error"] = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if options.out:
        options.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
