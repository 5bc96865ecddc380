"""Training steps per second on 1 process vs several (DDP over gloo on CPU, NCCL on GPUs), side by side.

The same Trainer, model, global batch and method as a job runs: with P processes each takes batch/P samples
of every step. On CPU the processes share the machine's cores: ``--threads`` is the total, split evenly
between the processes, so the comparison is the same hardware used two ways.
Usage: python benchmarks/processes.py [--processes 2] [--steps 40] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass

import torch

from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.training import StepEvent, TrainConfig, Trainer, TrainingCallback
from lbc_core.training.distributed import DataParallel, SingleProcess, launch, process_group

CASES = (  # (name, architecture, args, input shape of one sample, global batch)
    ("mlp 784-1024x3", "mlp", {"input_features": 784, "hidden_dim": 1024, "depth": 3}, (784,), 256),
    ("resnet20", "resnet20", {"in_channels": 3}, (3, 32, 32), 128),
)
METHODS = ("dense", "lbc", "srste")


@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor


class _Clock(TrainingCallback):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started = 0.0
        self.steps = 0

    def on_step(self, event: StepEvent) -> None:
        if event.global_step == self.warmup:
            self.started = time.perf_counter()
        elif event.global_step > self.warmup:
            self.steps += 1

    def rate(self) -> float:
        return self.steps / (time.perf_counter() - self.started)


def steps_per_second(
    case: int, method: str, steps: int, warmup: int, device: str, parallel: SingleProcess
) -> float:
    _, arch, args, shape, batch = CASES[case]
    generator = torch.Generator().manual_seed(0)
    n = batch * (steps + warmup)
    data = _Data(
        torch.randn((n, *shape), generator=generator), torch.randint(0, 10, (n,), generator=generator)
    )
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, **args)
    # t_f far away keeps LBC in its removal phase (scores training), its most expensive phase.
    sparsity = SparsityConfig(method=method, pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1000))
    sparsifier = build_sparsifier(sparsity)
    sparsifier.prepare(model)
    clock = _Clock(warmup)
    config = TrainConfig(
        epochs=1, batch_size=batch, lr=0.01, device=device, processes=parallel.rank.world_size
    )
    Trainer(model, sparsifier, config, data, callbacks=[clock], parallel=parallel).fit()
    return clock.rate()


def rank_main(case: int, method: str, steps: int, warmup: int, device: str, threads: int) -> float:
    torch.set_num_threads(threads)
    with process_group(torch.device(device)) as rank:
        return steps_per_second(case, method, steps, warmup, device, DataParallel(rank))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="total, all processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="mlp 784-1024x3,resnet20")
    options = parser.parse_args()
    wanted = options.cases.split(",")
    per_process = max(1, options.threads // options.processes)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, device {options.device}, "
        f"{options.threads} threads in total ({per_process} per process with {options.processes})"
    )
    header = (
        f"{'model':<16} {'method':<7} {'1 process':>12} {f'{options.processes} processes':>14} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for index, (name, *_rest) in enumerate(CASES):
        if name not in wanted:
            continue
        for method in METHODS:
            torch.set_num_threads(options.threads)
            one = steps_per_second(
                index, method, options.steps, options.warmup, options.device, SingleProcess()
            )
            args = (index, method, options.steps, options.warmup, options.device, per_process)
            many = launch(rank_main, args, options.processes)[0]
            print(f"{name:<16} {method:<7} {one:>10.2f}/s {many:>12.2f}/s {many / one:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
