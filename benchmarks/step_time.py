"""Training step time of dense vs LBC vs SR-STE vs ASP on the same model and batch (prints a table).

LBC is timed while its scores still train (the removal phase), its most expensive phase, with its plain
PyTorch backward ("lbc-plain", the reference) and with the fused native step ("lbc-fused", what LBC uses
on CPU when ``python -m lbc_core.sparsity.native.build`` has built it), each at two points of the removal
phase: all 6 combinations of 2:4 alive (the mask is all ones, as in the early part of the schedule) and
"-late", 2 of 6 alive (the mask prunes weights and must be applied, as late in the schedule).
Usage: python benchmarks/step_time.py [--steps 30] [--threads N] [--models mlp,vit]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from lbc_core.models import build_model
from lbc_core.sparsity import (
    LBCSparsifier,
    NMPattern,
    RemovalSchedule,
    ScoreOptimizer,
    Sparsifier,
    SparsityConfig,
    build_sparsifier,
    native,
)
from lbc_core.training import TrainConfig, build_optimizer

CASES = (
    ("resnet20", {"num_classes": 10, "in_channels": 3}, (128, 3, 32, 32)),
    ("vit", {"num_classes": 10, "in_channels": 3, "depth": 4, "embed_dim": 192}, (64, 3, 32, 32)),
    ("mlp", {"num_classes": 10, "input_features": 784, "hidden_dim": 1024, "depth": 3}, (256, 784)),
)
METHODS = ("dense", "lbc-plain", "lbc-fused", "lbc-plain-late", "lbc-fused-late", "srste", "asp")
# wall: elapsed time, what a user waits for; cpu: only this process's CPU time, so the share of the CPU that
# other processes take on a busy machine does not count (memory-bandwidth contention still does).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
# Epoch at which RemovalSchedule(0, 1000) leaves 2 of 2:4's 6 combinations alive: scores still train.
LATE_EPOCH = 500


def _sparsifier(method: str) -> Sparsifier:
    # t_f far away keeps LBC in its removal phase (scores training) for the whole measurement.
    schedule = RemovalSchedule(0, 1000)
    if method.startswith("lbc-"):
        # The scores follow the weights' SGD, as the pipeline sets them up.
        kernel = method.removeprefix("lbc-").removesuffix("-late")
        return LBCSparsifier(NMPattern(2, 4), None, schedule, ScoreOptimizer(), kernel=kernel)
    return build_sparsifier(SparsityConfig(method=method, pattern=NMPattern(2, 4), schedule=schedule))


def time_steps(
    arch: str,
    args: dict,
    shape: tuple[int, ...],
    method: str,
    steps: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    torch.manual_seed(0)
    model = build_model(arch, **args)
    sparsifier = _sparsifier(method)
    sparsifier.prepare(model)
    if method.endswith("-late"):
        # Removal is permanent: the steps below (at epoch 0) keep these 2 combinations alive.
        sparsifier.on_step_start(LATE_EPOCH, 0, 1, 0.01)
    optimizer = build_optimizer(model, TrainConfig(lr=0.01))
    x = torch.randn(shape)
    y = torch.randint(0, 10, (shape[0],))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(warmup + steps):
        start = clock()
        sparsifier.on_step_start(0, i, 10_000, 0.01)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(clock() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", default=",".join(case[0] for case in CASES), help="comma-separated")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: CPU seconds of this process, for a machine other processes share (use --threads 1: "
        "with more threads, idle threads spinning at a barrier count too)",
    )
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    methods = METHODS if native.load() else tuple(m for m in METHODS if not m.startswith("lbc-fused"))
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={options.threads}, "
        f"clock={options.clock}, {_load()}"
    )
    if not native.load():
        print(f"lbc-fused not measured: {native.load_error()}")
    print(f"{'model':10} {'batch':>6} {'method':14} {'median ms':>10} {'p10-p90 ms':>14} {'vs dense':>9}")
    for arch, args, shape in CASES:
        if arch not in options.models.split(","):
            continue
        # Interleave repeats so drift on a shared machine hits every method alike.
        samples: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(3):
            for method in methods:
                samples[method] += time_steps(
                    arch, args, shape, method, options.steps // 3 + 1, options.warmup, CLOCKS[options.clock]
                )
        medians = {m: statistics.median(samples[m]) * 1e3 for m in methods}
        for method in methods:
            ts = sorted(samples[method])
            p10, p90 = ts[len(ts) // 10] * 1e3, ts[(9 * len(ts)) // 10] * 1e3
            print(
                f"{arch:10} {shape[0]:>6} {method:14} {medians[method]:>10.2f} {p10:>6.2f}-{p90:<7.2f} "
                f"{medians[method] / medians['dense']:>8.3f}x"
            )
        for phase in ("", "-late"):
            if f"lbc-fused{phase}" in medians:
                ratio = medians[f"lbc-fused{phase}"] / medians[f"lbc-plain{phase}"]
                print(f"{arch:10} {shape[0]:>6} lbc-fused{phase} vs lbc-plain{phase}: {ratio:.3f}x")
    print(f"at the end: {_load()}")


def _load() -> str:
    """The machine's load average: the conditions a table was measured in."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


if __name__ == "__main__":
    main()
