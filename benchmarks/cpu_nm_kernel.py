"""The CPU N:M kernel against PyTorch's dense linear, side by side, with the machine's read bandwidth.

For each weight shape, dtype, thread count, batch size and pattern it prints milliseconds per call and the
weight bytes streamed per second (GB/s) for ``torch.nn.functional.linear`` on the dense weight and for
``lbc_nm::nm_linear`` on the packed one, each also as a fraction of the read bandwidth measured in the same
run (``torch.sum`` over a buffer far larger than the last-level cache, same thread count). Every call reads
a different copy of the weight, cycling through copies that together exceed the cache several times, so
the numbers are DRAM numbers even where one weight would fit in the L3 cache.

Usage: python benchmarks/cpu_nm_kernel.py [--quick] [--shapes 4096x4096,...] [--batches 1,4,8,32]
       [--threads 1,all] [--dtypes float32,bfloat16] [--patterns 2:4,1:4,2:8,4:8,1:16] [--isa auto]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lbc_core.benchmark.environment import cpu_model
from lbc_core.benchmark.timing import time_callable
from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import PackedNM, pack_weight
from lbc_core.sparsity import NMPattern, magnitude_mask

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Copies of a weight cycled through: together at least this many bytes, several times a 32 MiB L3.
FOOTPRINT_BYTES = 256 * 2**20
BANDWIDTH_BUFFER_BYTES = 1 * 2**30
# Targets of the issue: batch 1, all threads, float32, against dense linear.
SPEEDUP_TARGETS = {"2:4": 1.5, "1:4": 2.5, "2:8": 2.8}
BANDWIDTH_TARGET = 0.80


@dataclass(frozen=True)
class Row:
    shape: str
    dtype: str
    threads: int
    batch: int
    name: str  # "dense" or the pattern
    ms: float
    weight_bytes: int
    bandwidth: float  # bytes/s measured at this thread count

    @property
    def gbps(self) -> float:
        return self.weight_bytes / (self.ms * 1e-3) / 1e9


def read_bandwidth(repeats: int) -> float:
    """Bytes/s of torch.sum over a 1 GiB float32 buffer at the current thread count (median)."""
    buffer = torch.ones(BANDWIDTH_BUFFER_BYTES // 4)
    timing = time_callable(lambda: buffer.sum(), device="cpu", warmup=2, repeats=repeats, min_repeat_ms=0)
    return BANDWIDTH_BUFFER_BYTES / (timing.median_ms * 1e-3)


def copies_for(nbytes: int) -> int:
    return max(2, -(-FOOTPRINT_BYTES // max(nbytes, 1)))


def time_ms(fn: Callable[[], object], repeats: int) -> float:
    return time_callable(fn, device="cpu", warmup=3, repeats=repeats, min_repeat_ms=5.0).median_ms


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="4096x4096,4096x11008,11008x4096", help="OUTxIN, comma-separated")
    parser.add_argument("--batches", default="1,4,8,32")
    parser.add_argument("--threads", default="1,all")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--patterns", default="2:4,1:4,2:8,4:8,1:16")
    parser.add_argument("--isa", default=None, help="force a kernel path (scalar, avx2, avx512, avx512bf16)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="4096x4096, batch 1 and 8, float32 only")
    args = parser.parse_args()
    if args.quick:
        args.shapes, args.batches, args.dtypes = "4096x4096", "1,8", "float32"
    return args


def main() -> None:
    args = parse_args()
    status = native_status()
    if not status.available:
        raise SystemExit(f"the native N:M kernel is not available: {status.reason}")
    all_threads = torch.get_num_threads()
    threads = [all_threads if t == "all" else int(t) for t in args.threads.split(",")]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    patterns = [NMPattern.parse(p) for p in args.patterns.split(",")]
    dtypes = [DTYPES[d] for d in args.dtypes.split(",")]
    selected = args.isa or status.selected
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}")
    print(f"kernel: {status.describe()}; timed path: {selected}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("time: median ms per call; GB/s: weight bytes (dense weight, or values + codes) per second;")
    print("%bw: that throughput as a fraction of the read bandwidth measured at the same thread count")

    bandwidth = {}
    for count in threads:
        torch.set_num_threads(count)
        bandwidth[count] = read_bandwidth(args.repeats)
        print(f"read bandwidth, {count} thread(s): {bandwidth[count] / 1e9:.1f} GB/s (torch.sum over 1 GiB)")

    rows: list[Row] = []
    header = (
        f"{'shape':>11} {'dtype':>8} {'thr':>3} {'batch':>5} {'kernel':>6} {'ms':>8} {'GB/s':>6} {'%bw':>5}"
        f" {'dense ms':>8} {'GB/s':>6} {'%bw':>5} {'speedup':>7}"
    )
    for (out, inn), dtype in itertools.product(shapes, dtypes):
        generator = torch.Generator().manual_seed(0)
        dense = torch.randn(out, inn, generator=generator).to(dtype)
        dense_bytes = dense.numel() * dense.element_size()
        dense_copies = [dense] + [dense.clone() for _ in range(copies_for(dense_bytes) - 1)]
        packed_copies: dict[str, list[PackedNM]] = {}
        for pattern in patterns:
            packed = pack_weight(dense * magnitude_mask(dense, pattern), pattern)
            packed_copies[str(pattern)] = [packed] + [
                packed.clone() for _ in range(copies_for(packed.nbytes) - 1)
            ]
        shape_name = f"{out}x{inn}"
        print(f"\n{shape_name} {str(dtype).removeprefix('torch.')}")
        print(header)
        for count, batch in itertools.product(threads, batches):
            torch.set_num_threads(count)
            x = torch.randn(batch, inn, generator=generator).to(dtype)
            cycle_dense = itertools.cycle(dense_copies)
            with torch.no_grad():
                dense_ms = time_ms(lambda x=x, c=cycle_dense: F.linear(x, next(c)), args.repeats)
            base = Row(shape_name, str(dtype), count, batch, "dense", dense_ms, dense_bytes, bandwidth[count])
            rows.append(base)
            for name, copies in packed_copies.items():
                cycle_packed = itertools.cycle(copies)
                kernel_ms = time_ms(
                    lambda x=x, c=cycle_packed: nm_linear(x, next(c), isa=args.isa), args.repeats
                )
                row = Row(
                    shape_name, str(dtype), count, batch, name, kernel_ms, copies[0].nbytes, bandwidth[count]
                )
                rows.append(row)
                print(
                    f"{shape_name:>11} {str(dtype).removeprefix('torch.'):>8} {count:>3} {batch:>5} {name:>6}"
                    f" {row.ms:>8.3f} {row.gbps:>6.1f} {row.gbps * 1e9 / row.bandwidth:>5.0%}"
                    f" {base.ms:>8.3f} {base.gbps:>6.1f} {base.gbps * 1e9 / base.bandwidth:>5.0%}"
                    f" {base.ms / row.ms:>6.2f}x"
                )
        del dense_copies, packed_copies
    summarize(rows, max(threads))
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def summarize(rows: list[Row], all_threads: int) -> None:
    """The issue's targets, met or missed, from the rows above (batch 1, all threads, float32)."""
    print(f"\ntargets (batch 1, {all_threads} threads, float32, speedup over dense linear):")
    dense = {(r.shape, r.dtype, r.threads, r.batch): r for r in rows if r.name == "dense"}
    for row in rows:
        if row.name == "dense" or row.threads != all_threads:
            continue
        base = dense[(row.shape, row.dtype, row.threads, row.batch)]
        speedup = base.ms / row.ms
        fp32_b1 = row.dtype == str(torch.float32) and row.batch == 1
        if fp32_b1 and row.name in SPEEDUP_TARGETS:
            target = SPEEDUP_TARGETS[row.name]
            verdict = "met" if speedup >= target else "MISSED"
            print(f"  {row.shape} {row.name}: {speedup:.2f}x (target >= {target}x) {verdict}")
        if fp32_b1:
            share = row.gbps * 1e9 / row.bandwidth
            verdict = "met" if share >= BANDWIDTH_TARGET else "MISSED"
            print(f"  {row.shape} {row.name}: {share:.0%} of read bandwidth (target >= 80%) {verdict}")
        if row.name == "2:4" and row.batch <= 8 and speedup < 1.0:
            print(
                f"  {row.shape} {row.dtype} batch {row.batch} 2:4: {speedup:.2f}x, slower than dense (MISSED)"
            )


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"run took {time.perf_counter() - start:.0f} s")
