"""The per-weight score formulation makes the same choices as LBC's combination scores.

The reference below is the method as the paper states it, written the straightforward way: one
learnable score per combination per group (``[G, C]``), trained by ``torch.optim.SGD`` alongside the
weights, ranked at every removal. The library keeps one score per weight instead; the alive sets
must be identical at every step of a run with momentum, weight decay and progressive removal.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.sparsity import LayerPolicy, LBCSparsifier, NMPattern, RemovalSchedule, ScoreOptimizer
from lbc_core.sparsity.pattern import from_groups, to_groups


class _ReferenceFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, alpha: torch.Tensor, ref: ReferenceLBC) -> torch.Tensor:
        mask = ref.mask()
        ctx.save_for_backward(weight, mask)
        ctx.ref = ref
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        weight, mask = ctx.saved_tensors
        ref: ReferenceLBC = ctx.ref
        signal = to_groups(weight * grad_out, ref.pattern.m)  # g_j = w_j * dL/dw~_j, every weight
        grad_alpha = (signal @ ref.table.T) * ref.alive  # sum over each alive combination
        return grad_out * mask, grad_alpha, None


class ReferenceLBC(nn.Module):
    """Combination scores ``alpha[G, C]`` initialised to ``1 / C(M-1, N-1)``, or with a magnitude prior
    to ``1 / C(M-1, N-1)`` times the mean over the combination of its weights' |w| / mean |w| of the group."""

    def __init__(self, weight: torch.Tensor, pattern: NMPattern, score_init: str = "uniform") -> None:
        super().__init__()
        self.pattern = pattern
        self.shape = weight.shape
        groups = weight.numel() // pattern.m
        c = pattern.num_combinations
        self.table = pattern.combination_table().to(weight.dtype)
        a0 = 1.0 / pattern.combinations_per_weight
        alpha = torch.full((groups, c), a0, dtype=weight.dtype)
        if score_init == "magnitude":
            magnitude = to_groups(weight.detach().abs(), pattern.m)
            relative = magnitude / magnitude.mean(dim=1, keepdim=True)
            alpha = a0 * (relative @ self.table.T) / pattern.n
        self.alpha = nn.Parameter(alpha)
        self.alive = torch.ones(groups, c, dtype=weight.dtype)

    def mask(self) -> torch.Tensor:
        return from_groups((self.alive @ self.table) > 0, self.shape)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _ReferenceFn.apply(weight, self.alpha, self)  # type: ignore[no-any-return]

    @torch.no_grad()
    def remove(self, keep: int) -> None:
        ranked = self.alpha.masked_fill(self.alive == 0, float("-inf"))
        best = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :keep]
        self.alive = torch.zeros_like(self.alive).scatter_(1, best, 1.0)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    ).double()


@pytest.mark.parametrize(
    ("pattern", "momentum", "nesterov", "weight_decay", "score_init"),
    [
        (NMPattern(2, 4), 0.9, False, 5e-4, "uniform"),
        (NMPattern(1, 4), 0.9, True, 1e-3, "uniform"),
        (NMPattern(2, 8), 0.9, False, 5e-4, "uniform"),
        (NMPattern(4, 8), 0.5, False, 0.0, "uniform"),
        (NMPattern(2, 4), 0.9, False, 0.5, "uniform"),  # strong decay: rankings depend on it
        (NMPattern(1, 16), 0.9, False, 5e-4, "uniform"),
        (NMPattern(2, 4), 0.9, False, 5e-4, "magnitude"),
        (NMPattern(2, 8), 0.9, True, 1e-3, "magnitude"),
    ],
    ids=str,
)
def test_per_weight_scores_keep_the_same_combinations_as_combination_scores(
    pattern: NMPattern, momentum: float, nesterov: bool, weight_decay: float, score_init: str
) -> None:
    torch.manual_seed(0)
    ours = _model()
    ref = copy.deepcopy(ours)
    policy = LayerPolicy(include=("*",), keep_stem_dense=False, keep_classifier_dense=True)
    epochs, steps, lr = 4, 6, 0.05
    schedule = RemovalSchedule(t_i=0, t_f=3, power=3, per_step=True)
    sparsifier = LBCSparsifier(
        pattern,
        policy,
        schedule,
        ScoreOptimizer(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay),
        score_init=score_init,
    )
    names = sparsifier.prepare(ours).names
    assert names == ["0", "2", "6"]
    ref_layers = {}
    for name in names:
        module = ref.get_submodule(name)
        parametrize.register_parametrization(
            module, "weight", ReferenceLBC(module.weight, pattern, score_init)
        )
        ref_layers[name] = module.parametrizations["weight"][0]

    hyper = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
    opt_ours = torch.optim.SGD(ours.parameters(), **hyper)
    weights = [p for n, p in ref.named_parameters() if not n.endswith(".alpha")]
    alphas = [layer.alpha for layer in ref_layers.values()]
    opt_ref = torch.optim.SGD([{"params": weights}, {"params": alphas}], **hyper)

    data = torch.Generator().manual_seed(1)
    c = pattern.num_combinations
    checked_removals = 0
    for epoch in range(epochs):
        for step in range(steps):
            sparsifier.on_step_start(epoch, step, steps, lr)
            keep = schedule.alive_per_group(schedule.time(epoch, step, steps), c)
            if keep < int(next(iter(ref_layers.values())).alive.sum(dim=1)[0]):
                checked_removals += 1
                for layer in ref_layers.values():
                    layer.remove(keep)
                if keep == 1:  # scores freeze: no gradient, no decay, no momentum
                    for layer in ref_layers.values():
                        layer.alpha.requires_grad_(False)

            for name in names:
                our_alive = ours.get_submodule(name).parametrizations["weight"][0].alive_bits()
                assert torch.equal(our_alive, ref_layers[name].alive.bool()), (name, epoch, step)

            x = torch.randn(16, 16, 6, 6, generator=data, dtype=torch.float64)
            y = torch.randint(0, 5, (16,), generator=data)
            for model, opt in ((ours, opt_ours), (ref, opt_ref)):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

    assert sparsifier.alive_per_group == 1
    assert checked_removals >= min(c - 1, 3)  # several progressive removals were compared
    for name in names:
        ours_w = ours.get_submodule(name).weight
        ref_w = ref.get_submodule(name).weight
        torch.testing.assert_close(ours_w, ref_w, rtol=1e-9, atol=1e-10)


def test_adam_scores_are_flagged_as_an_approximation() -> None:
    assert ScoreOptimizer(kind="sgd").exact
    assert not ScoreOptimizer(kind="adam").exact
