"""Per-layer cost of applying a partial N:M mask, float mask vs byte mask (prints a table).

One weight (default 1024x1024, the MLP's sparsified layers in ``step_time.py``) with LBC 2:4 at 2 of 6
combinations alive, one intra-op thread, CPU time of this thread (``time.thread_time``), so the share of
the CPU other processes take does not count. Every repeat runs each variant once, in a shuffled order,
each after a 64 MB write that flushes the caches (code included), and the median of ``--repeats`` calls is
printed:

- forward: the masked weight as PyTorch computes it (``weight * mask``, float mask) and as the native
  ``apply_mask`` does with the byte mask;
- fused backward: the fused LBC step (``sgd_step``: masked gradient, signal, SGD score step) reading the
  float mask and the byte mask, and without a mask (the all-alive phase, for reference);
- layer: forward + backward through the parametrization as training runs it (autograd included): LBC's
  plain path, its fused path, and the fused path as it was with the float mask (PyTorch's multiply in the
  forward pass, the float mask in the fused backward); and a fixed mask (ASP's ``MaskedWeight``) as PyTorch's multiply and as
  the byte-mask operator wrapped in a Python autograd Function (the alternative evaluated for ASP: the
  Function's own cost takes back what the byte mask saves, so ASP keeps the multiply).

Usage: python benchmarks/mask_time.py [--repeats 300] [--size 1024]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from lbc_core.sparsity import NMPattern, ScoreOptimizer, native
from lbc_core.sparsity.base import MaskedWeight
from lbc_core.sparsity.lbc import LBCMask
from lbc_core.sparsity.masking import byte_mask


class _ByteMasked(torch.autograd.Function):
    """A fixed mask through the native operator: forward and gradient both read the byte mask."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return torch.ops.lbc_sparsity.apply_mask(weight, mask)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return torch.ops.lbc_sparsity.apply_mask(grad, mask), None


class _FloatMaskFused(torch.autograd.Function):
    """The fused LBC step reading the float mask buffer (before the byte mask), for the A/B."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, state: LBCMask) -> torch.Tensor:
        ctx.save_for_backward(weight, state.mask)
        ctx.state = state
        return weight * state.mask

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight, mask = ctx.saved_tensors
        return ctx.state.fused_backward(weight.detach(), mask, grad), None


def _layer_step(
    parametrization: Callable[[torch.Tensor], torch.Tensor], weight: torch.Tensor, grad: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        parametrization(weight).backward(grad)
        weight.grad = None

    return step


def variants(size: int) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    weight, grad = torch.randn(size, size), torch.randn(size, size)
    layers = {
        kernel: LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel=kernel)
        for kernel in ("plain", "fused")
    }
    for layer in layers.values():
        layer.remove(2)  # 2 of 6 combinations alive: the mask prunes weights
        layer.lr = 0.01
    fused = layers["fused"]
    mask, compact = fused.mask, byte_mask(fused.mask)
    ops = torch.ops.lbc_sparsity

    def sgd_step(kernel_mask: torch.Tensor | None) -> Callable[[], None]:
        def run() -> None:
            out = None if kernel_mask is None else torch.empty_like(grad)
            ops.sgd_step(
                weight, grad, fused.score, fused.score_momentum, kernel_mask, out, 0.01, 0.9, 0.0, 5e-4, False,
                False,
            )  # fmt: skip

        return run

    asp = MaskedWeight(mask, weight.dtype)
    trainable = weight.clone().requires_grad_(True)
    return {
        "forward, float mask (PyTorch)": lambda: weight * mask,
        "forward, byte mask (native)": lambda: ops.apply_mask(weight, compact),
        "fused backward, float mask": sgd_step(mask),
        "fused backward, byte mask": sgd_step(compact),
        "fused backward, no mask (all alive)": sgd_step(None),
        "LBC layer fwd+bwd, plain": _layer_step(layers["plain"], trainable, grad),
        "LBC layer fwd+bwd, fused": _layer_step(fused, trainable, grad),
        "LBC layer fwd+bwd, fused, float mask": _layer_step(
            lambda w: _FloatMaskFused.apply(w, fused), trainable, grad
        ),
        "ASP layer fwd+bwd, PyTorch multiply": _layer_step(asp, trainable, grad),
        "ASP layer fwd+bwd, byte mask Function": _layer_step(
            lambda w: _ByteMasked.apply(w, compact), trainable, grad
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024, help="the weight is size x size")
    options = parser.parse_args()
    if not native.load():
        raise SystemExit(f"the native operator is not built: {native.load_error()}")
    torch.set_num_threads(1)
    runs = variants(options.size)
    start_load = os.getloadavg()
    flush = torch.empty(16 << 20)  # 64 MB, twice the last-level cache of the machine measured
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    shuffle = random.Random(0)
    for _ in range(options.repeats):
        shuffle.shuffle(order)  # no variant always runs after the same one
        for name in order:
            run = runs[name]
            flush.add_(1.0)
            start = time.thread_time()
            run()
            samples[name].append(time.thread_time() - start)
    print(
        f"torch {torch.__version__}, {options.size}x{options.size} weight, 2:4 with 2 of 6 alive, threads=1"
    )
    end_load = os.getloadavg()
    print(
        "load average: {:.2f} {:.2f} {:.2f} at the start, {:.2f} {:.2f} {:.2f} at the end".format(
            *start_load, *end_load
        )
    )
    print(f"{'variant':40} {'median us':>10}")
    for name, times in samples.items():
        print(f"{name:40} {statistics.median(times) * 1e6:>10.1f}")


if __name__ == "__main__":
    main()
