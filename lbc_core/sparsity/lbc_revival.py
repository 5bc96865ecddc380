"""ABLATION ONLY: LBC with the authors' "score-revival" removal instead of permanent removal.

The product removes combinations permanently (``lbc.py``). The LBC authors' research code does it
differently, and this module reproduces that behaviour so the two can be compared:

- a combination is dead when its score is exactly 0; at every step the ``C - keep`` lowest-scored
  combinations of every group have their score set to 0 (exact zeros rank below everything), so the
  alive set is re-ranked every step as the top-``keep`` by score, ``keep`` following the schedule;
- dead scores are not masked out of the optimizer: SGD momentum (and weight decay) keeps updating
  them, so a dead score drifts off 0 and, if it overtakes the weakest alive score at the next
  ranking, the combination comes back to life (a *revival*);
- in the authors' code a dead combination receives no loss gradient (its score is multiplied by
  ``score != 0`` in the forward pass); ``dead_gradient=True`` also gives dead combinations the
  straight-through signal, the stronger variant of the quirk;
- once one combination per group is left, scores freeze (as in the authors' code and ``lbc.py``).

A combination's score cannot be reset to 0 in the per-weight formulation (``a0 + sum_j s_j``), so
this variant keeps one score and one momentum value per combination per group (``[G, C]``), the
memory layout the per-weight formulation avoids. It only supports SGD-family score optimizers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lbc_core.sparsity.base import SparsifierStateError
from lbc_core.sparsity.lbc import LBCSparsifier, ScoreOptimizer
from lbc_core.sparsity.pattern import NMPattern, from_groups, to_groups
from lbc_core.sparsity.schedule import RemovalSchedule
from lbc_core.sparsity.score_signal import MaskWithScoreSignal, ScoreSignalReceiver
from lbc_core.sparsity.selection import LayerPolicy


class RevivalLBCMask(ScoreSignalReceiver):
    """One layer's combination scores ``alpha [G, C]`` with dead-by-zero, re-ranked-every-step removal."""

    mask: torch.Tensor
    table: torch.Tensor
    alpha: torch.Tensor
    alpha_momentum: torch.Tensor
    alive: torch.Tensor
    ever_dead: torch.Tensor
    score_steps: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        pattern: NMPattern,
        optimizer: ScoreOptimizer,
        dead_gradient: bool,
        layout: str | None = None,
    ) -> None:
        super().__init__()
        self.pattern = pattern
        self.layout = layout
        self.optimizer = optimizer
        self.dead_gradient = dead_gradient
        self.lr = 0.0
        groups, c = weight.numel() // pattern.m, pattern.num_combinations
        like: dict[str, Any] = {"dtype": weight.dtype, "device": weight.device}
        # Non-persistent: a constant, but it must follow the module across devices.
        self.register_buffer(
            "table", pattern.combination_table(weight.device).to(weight.dtype), persistent=False
        )
        self.register_buffer("mask", torch.ones(weight.shape, **like))
        self.register_buffer("alpha", torch.full((groups, c), 1.0 / pattern.combinations_per_weight, **like))
        self.register_buffer("alpha_momentum", torch.zeros(groups, c, **like))
        self.register_buffer("alive", torch.ones(groups, c, dtype=torch.bool, device=weight.device))
        # Which combinations have been dead at least once: alive & ever_dead marks a revived one.
        self.register_buffer("ever_dead", torch.zeros(groups, c, dtype=torch.bool, device=weight.device))
        self.register_buffer("score_steps", torch.zeros((), dtype=torch.long, device=weight.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and self.scores_trainable):
            return weight * self.mask
        return MaskWithScoreSignal.apply(weight, self.mask, self)

    @torch.no_grad()
    def update_scores(self, signal: torch.Tensor) -> None:
        """One ``torch.optim.SGD`` step on ``alpha``: every combination, dead ones included."""
        opt = self.optimizer
        grad = to_groups(signal, self.pattern.m, self.layout) @ self.table.T
        if not self.dead_gradient:
            # As in the authors' forward: a dead (zero) score is multiplied out of the graph.
            grad.mul_(self.alive)
        self.score_steps += 1
        d = grad.add(self.alpha, alpha=opt.weight_decay) if opt.weight_decay else grad
        if opt.momentum > 0:
            buf = self.alpha_momentum
            if int(self.score_steps) == 1:
                buf.copy_(d)
            else:
                buf.mul_(opt.momentum).add_(d, alpha=1 - opt.dampening)
            d = d.add(buf, alpha=opt.momentum) if opt.nesterov else buf
        self.alpha.add_(d, alpha=-self.lr)

    @torch.no_grad()
    def rerank(self, keep: int) -> tuple[int, float]:
        """Keep the top-``keep`` scores alive, zero the others.

        Returns how many combinations revived, and the smallest margin over groups between the
        weakest alive score and the strongest dead one before ranking (negative where one revived,
        ``inf`` where no dead score has moved off 0): how close the run came to a revival.
        """
        # Exact zeros are dead and rank below every live score, even a negative one, as in the
        # authors' code (which subtracts 1000 from them before picking the lowest).
        key = self.alpha.masked_fill(self.alpha == 0, float("-inf"))
        weakest_alive = key.masked_fill(~self.alive, float("inf")).amin(dim=1)
        strongest_dead = key.masked_fill(self.alive, float("-inf")).amax(dim=1)
        margin = float((weakest_alive - strongest_dead).min()) if key.shape[0] else float("inf")
        best = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :keep]
        alive = torch.zeros_like(self.alive).scatter_(1, best, True)
        revived = int((alive & ~self.alive).sum())
        self.alpha.masked_fill_(~alive, 0.0)
        self.ever_dead |= ~alive
        if not torch.equal(alive, self.alive):
            self.alive.copy_(alive)
            groups = (alive.to(self.table.dtype) @ self.table) > 0
            self.mask.copy_(from_groups(groups, self.mask.shape, self.layout))
        return revived, margin

    def alive_bits(self) -> torch.Tensor:
        return self.alive.clone()


class RevivalLBCSparsifier(LBCSparsifier):
    """LBC whose removal follows the authors' code (``removal="revival"``); an ablation, not the product."""

    def __init__(
        self,
        pattern: NMPattern,
        policy: LayerPolicy | None = None,
        schedule: RemovalSchedule | None = None,
        optimizer: ScoreOptimizer | None = None,
        *,
        dead_gradient: bool = False,
    ) -> None:
        optimizer = optimizer or ScoreOptimizer()
        if optimizer.kind != "sgd":
            raise ValueError(
                "removal 'revival' reproduces the authors' SGD-trained combination scores; "
                f"score optimizer {optimizer.kind!r} is not supported"
            )
        super().__init__(pattern, policy, schedule, optimizer)
        self.dead_gradient = dead_gradient
        self.revivals = 0
        self.closest_margin = float("inf")

    def _make_parametrization(self, weight: torch.Tensor, layout: str) -> nn.Module:
        return RevivalLBCMask(weight, self.pattern, self.score_optimizer, self.dead_gradient, layout)

    def on_step_start(self, epoch: int, step: int, steps_per_epoch: int, lr: float) -> None:
        t = self.schedule.time(epoch, step, steps_per_epoch)
        self._rerank(self.schedule.alive_per_group(t, self.pattern.num_combinations))
        for _, param in self._iter_parametrizations():
            param.lr = lr

    def _rerank(self, keep: int) -> None:
        # Frozen scores cannot change a ranking any more.
        if self.scores_frozen:
            return
        for _, param in self._iter_parametrizations():
            revived, margin = param.rerank(keep)
            self.revivals += revived
            self.closest_margin = min(self.closest_margin, margin)
        if keep < self.alive_per_group:
            self.alive_per_group = keep
            self.removals += 1
        self._freeze_scores_when_done()

    def _before_finalize(self) -> None:
        self._rerank(1)

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        params = [param for _, param in self._iter_parametrizations()] if self._prepared is not None else []
        groups = sum(p.alive.shape[0] for p in params)
        revived_now = sum(int((p.alive & p.ever_dead).any(dim=1).sum()) for p in params)
        exact = all(
            bool((to_groups(p.mask, self.pattern.m, p.layout).sum(dim=1) == self.pattern.n).all())
            for p in params
        )
        metrics["revivals"] = float(self.revivals)
        # Share of groups whose alive set holds a combination that was dead at some earlier step.
        metrics["groups_with_revived_alive"] = revived_now / groups if groups else 0.0
        metrics["mask_exactly_nm"] = float(exact)
        # Smallest (weakest alive - strongest dead) score gap seen at any ranking; < 0 means a revival.
        # Absent while no dead score has moved off 0 (JSON has no infinity).
        if math.isfinite(self.closest_margin):
            metrics["closest_revival_margin"] = self.closest_margin
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            removal="revival",
            dead_gradient=self.dead_gradient,
            revivals=self.revivals,
            closest_margin=self.closest_margin,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("removal") != "revival" or bool(state.get("dead_gradient")) != self.dead_gradient:
            raise SparsifierStateError(
                "checkpoint was not written by LBC with removal 'revival' and the same dead_gradient setting"
            )
        super().load_state_dict(state)
        self.revivals = int(state["revivals"])
        self.closest_margin = float(state["closest_margin"])
