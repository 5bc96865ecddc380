"""Training step time of dense vs LBC vs SR-STE vs ASP on the same model and batch (prints a table).

LBC is timed while its scores still train (the removal phase), its most expensive phase.
Usage: python benchmarks/step_time.py [--steps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.training import TrainConfig, build_optimizer

CASES = (
    ("resnet20", {"num_classes": 10, "in_channels": 3}, (128, 3, 32, 32)),
    ("vit", {"num_classes": 10, "in_channels": 3, "depth": 4, "embed_dim": 192}, (64, 3, 32, 32)),
    ("mlp", {"num_classes": 10, "input_features": 784, "hidden_dim": 1024, "depth": 3}, (256, 784)),
)
METHODS = ("dense", "lbc", "srste", "asp")


def time_steps(
    arch: str, args: dict, shape: tuple[int, ...], method: str, steps: int, warmup: int
) -> list[float]:
    torch.manual_seed(0)
    model = build_model(arch, **args)
    # t_f far away keeps LBC in its removal phase (scores training) for the whole measurement.
    config = SparsityConfig(method=method, pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1000))
    sparsifier = build_sparsifier(config)
    sparsifier.prepare(model)
    optimizer = build_optimizer(model, TrainConfig(lr=0.01))
    x = torch.randn(shape)
    y = torch.randint(0, 10, (shape[0],))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        sparsifier.on_step_start(0, i, 10_000, 0.01)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={options.threads}"
    )
    print(f"{'model':10} {'batch':>6} {'method':7} {'median ms':>10} {'p10-p90 ms':>14} {'vs dense':>9}")
    for arch, args, shape in CASES:
        dense_median = None
        # Interleave repeats so drift on a shared machine hits every method alike.
        samples: dict[str, list[float]] = {m: [] for m in METHODS}
        for _ in range(3):
            for method in METHODS:
                samples[method] += time_steps(
                    arch, args, shape, method, options.steps // 3 + 1, options.warmup
                )
        for method in METHODS:
            ts = sorted(samples[method])
            median = statistics.median(ts) * 1e3
            p10, p90 = ts[len(ts) // 10] * 1e3, ts[(9 * len(ts)) // 10] * 1e3
            dense_median = dense_median or median
            print(
                f"{arch:10} {shape[0]:>6} {method:7} {median:>10.2f} {p10:>6.2f}-{p90:<7.2f} "
                f"{median / dense_median:>8.3f}x"
            )


if __name__ == "__main__":
    main()
