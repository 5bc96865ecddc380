"""The CPU N:M kernel's ISA paths against each other and dense, call by call, on one thread's CPU time.

``cpu_nm_kernel.py`` measures wall time, which on a shared machine measures the other processes as much as
the kernel. This script compares paths where that benchmark cannot: one thread, every call timed with
``time.thread_time`` (CPU time of this thread, so time spent descheduled does not count), and the
candidates alternated call by call within each round, so a slow minute slows all of them alike. What it
still cannot remove is a busy machine's share of the caches and memory bandwidth, and its numbers are
not wall times (at batch 1 a call waits on memory, which CPU time partly hides): it compares paths, it
does not replace the idle-machine run of ``cpu_nm_kernel.py``.

Each cell is the median over ``--rounds`` rounds of the fastest of 3 back-to-back calls, and every call
reads another copy of the weight (>= 256 MiB of copies), as in ``cpu_nm_kernel.py``.

Usage: python benchmarks/cpu_nm_isa_ab.py [--isas avx512,avx512bf16] [--dtype bfloat16]
       [--shapes 4096x4096] [--batches 1,4,8,16,32] [--patterns 2:4,1:4,2:8,4:8,1:16] [--rounds 9]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from lbc_core.benchmark.environment import cpu_model
from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import PackedNM, pack_weight
from lbc_core.sparsity import NMPattern, magnitude_mask

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
FOOTPRINT_BYTES = 256 * 2**20
WARMUP_ROUNDS = 3


def cpu_ms(fn: Callable[[], object]) -> float:
    start = time.thread_time_ns()
    fn()
    return (time.thread_time_ns() - start) / 1e6


def copies(tensor_bytes: int) -> int:
    return max(2, -(-FOOTPRINT_BYTES // max(tensor_bytes, 1)))


def dense_call(x: torch.Tensor, weights: Iterator[torch.Tensor]) -> Callable[[], object]:
    return lambda: F.linear(x, next(weights))


def kernel_call(x: torch.Tensor, packed: Iterator[PackedNM], isa: str) -> Callable[[], object]:
    return lambda: nm_linear(x, next(packed), isa=isa)


def compare(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median CPU ms per call of each candidate, alternated within every round."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for round_index in range(WARMUP_ROUNDS + rounds):
        for name, fn in candidates.items():
            best = min(cpu_ms(fn) for _ in range(3))
            if round_index >= WARMUP_ROUNDS:
                samples[name].append(best)
    return {name: statistics.median(values) for name, values in samples.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--isas", default="avx512,avx512bf16", help="kernel paths to compare, comma-separated"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--shapes", default="4096x4096", help="OUTxIN, comma-separated")
    parser.add_argument("--batches", default="1,4,8,16,32")
    parser.add_argument("--patterns", default="2:4,1:4,2:8,4:8,1:16")
    parser.add_argument("--rounds", type=int, default=9)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    status = native_status()
    if not status.available:
        raise SystemExit(f"the native N:M kernel is not available: {status.reason}")
    isas = args.isas.split(",")
    missing = [isa for isa in isas if isa not in status.isas]
    if missing:
        raise SystemExit(f"this CPU does not run {', '.join(missing)}; it runs {', '.join(status.isas)}")
    dtype = DTYPES[args.dtype]
    torch.set_num_threads(1)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}")
    print(f"kernel: {status.describe()}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"1 thread, {args.dtype}; median over {args.rounds} rounds of CPU ms per call (thread_time)")
    header = f"{'shape':>11} {'pattern':>7} {'batch':>5} {'dense':>8}" + "".join(
        f" {isa:>11}" for isa in isas
    )
    header += "".join(f" {isa + '/dense':>17}" for isa in isas)
    if len(isas) == 2:
        header += f" {isas[1] + ' vs ' + isas[0]:>24}"
    generator = torch.Generator().manual_seed(0)
    for shape in args.shapes.split(","):
        out, inn = (int(v) for v in shape.split("x"))
        dense = torch.randn(out, inn, generator=generator).to(dtype)
        dense_copies = [dense] + [
            dense.clone() for _ in range(copies(dense.numel() * dense.element_size()) - 1)
        ]
        print(f"\n{header}")
        for name in args.patterns.split(","):
            pattern = NMPattern.parse(name)
            packed = pack_weight(dense * magnitude_mask(dense, pattern), pattern)
            packed_copies = [packed] + [packed.clone() for _ in range(copies(packed.nbytes) - 1)]
            for batch in (int(b) for b in args.batches.split(",")):
                x = torch.randn(batch, inn, generator=generator).to(dtype)
                candidates = {"dense": dense_call(x, itertools.cycle(dense_copies))}
                cycle_packed = itertools.cycle(packed_copies)
                for isa in isas:
                    candidates[isa] = kernel_call(x, cycle_packed, isa)
                with torch.no_grad():
                    ms = compare(candidates, args.rounds)
                line = f"{shape:>11} {name:>7} {batch:>5} {ms['dense']:>8.3f}"
                line += "".join(f" {ms[isa]:>11.3f}" for isa in isas)
                line += "".join(f" {ms['dense'] / ms[isa]:>16.2f}x" for isa in isas)
                if len(isas) == 2:
                    line += f" {ms[isas[0]] / ms[isas[1]]:>23.2f}x"
                print(line, flush=True)
        del dense_copies
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"run took {time.perf_counter() - start:.0f} s")
