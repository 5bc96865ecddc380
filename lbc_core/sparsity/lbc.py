"""LBC (Learning Best Combination): learn one N:M combination per group by gradual removal.

Memory-lean formulation: instead of a score per combination (``[G, C]``), every weight carries one
score ``s_j`` trained by the same optimizer on the straight-through signal ``g_j = w_j * dL/dw~_j``.
For SGD-family optimizers (momentum, Nesterov, L2 weight decay) the score of combination ``c`` is
then exactly ``a0 + sum_{j in c} s_j`` with a common ``a0`` that never changes a ranking, so the
alive sets are identical to the combination-score method. The score update is fused into the
backward pass, so scores need no gradient buffer: state is one score (+ optimizer moments) per
weight plus ``C/M`` packed alive bits. On CPU that backward work runs as one native pass per layer
(``native/lbc_step.cpp``) when the operator is built; the PyTorch ops here are the reference.
Training steps made of several backward passes, or with clipped or scaled gradients, defer the
score step to once per optimizer step (``score_signal.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn

from lbc_core.sparsity import native
from lbc_core.sparsity.base import Sparsifier, SparsifierStateError
from lbc_core.sparsity.calibration import RunForward, input_norms
from lbc_core.sparsity.masking import KernelMask, native_applies
from lbc_core.sparsity.pattern import NMPattern, from_groups, to_groups
from lbc_core.sparsity.schedule import RemovalSchedule
from lbc_core.sparsity.score_signal import MaskWithScoreSignal, ScoreSignalReceiver
from lbc_core.sparsity.selection import DenseDefault, LayerPolicy, LayerSelection
from lbc_core.sparsity.wanda import original_weight, wanda_importance

# Groups processed at once when ranking or rebuilding masks, so [G, C] is never materialised whole.
_CHUNK_GROUPS = 1 << 16
# How the per-weight backward work runs (see LBCMask).
KERNELS = ("auto", "fused", "plain")
# Where LBC's scores start: all equal (the method as published), or from a per-weight importance.
ScoreInit = Literal["uniform", "magnitude", "wanda"]
SCORE_INITS: tuple[str, ...] = get_args(ScoreInit)


@dataclass(frozen=True)
class ScoreOptimizer:
    """How scores are trained. The authors use the weights' own SGD hyperparameters.

    ``kind="adam"`` trains per-weight scores with Adam moments; unlike SGD this is only an
    approximation of per-combination Adam, since Adam is not linear in the gradient.
    """

    kind: str = "sgd"  # "sgd" | "adam"
    momentum: float = 0.9
    nesterov: bool = False
    dampening: float = 0.0
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in ("sgd", "adam"):
            raise ValueError(f"score optimizer kind must be 'sgd' or 'adam', got {self.kind!r}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError("score optimizer momentum and weight_decay must be >= 0")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening 0")

    @property
    def exact(self) -> bool:
        """Whether the per-weight formulation equals the combination-score method exactly."""
        return self.kind == "sgd"


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """``[G, C]`` bool -> ``[G, ceil(C/8)]`` uint8, little-endian within each byte."""
    groups, c = bits.shape
    padded = torch.zeros(groups, math.ceil(c / 8) * 8, dtype=torch.uint8, device=bits.device)
    padded[:, :c] = bits.to(torch.uint8)
    weights = (1 << torch.arange(8, dtype=torch.uint8, device=bits.device)).to(torch.uint8)
    return (padded.view(groups, -1, 8) * weights).sum(dim=2, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, c: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed.shape[0], -1)[:, :c].bool()


def prior_scores(
    importance: torch.Tensor, pattern: NMPattern, layout: str | None = None, strength: float = 1.0
) -> torch.Tensor:
    """Per-weight start scores ``s_j`` that make every combination's score follow an importance prior.

    With ``p_j = I_j / mean(I over j's group)`` (the weight's importance relative to its group;
    ``p = 1`` everywhere when the group's importance is all zero) and ``a0 = 1 / C(M-1, N-1)``, the
    start is ``s_j = a0 * (p_j - 1) / N``, so combination ``c`` starts at

        alpha_c = a0 + sum_{j in c} s_j = a0 * mean_{j in c} p_j.

    The uniform start is the special case of equal importances (``alpha_c = a0``); the ranking of
    combinations is the ranking of their summed importance, so the best one is the prior's top-N.
    Relative importance is scale-free (layers' activation norms differ by orders of magnitude) and
    bounded (``0 <= p_j <= M``), so the prior starts within ``a0 * M / N`` of the uniform start, the
    scale the scores (and their weight decay) already live on. ``strength`` scales the deviation
    from the uniform start (``alpha_c = a0 * (1 + strength * (mean_{j in c} p_j - 1))``): the
    ranking at the start is the same for every ``strength > 0``, but how much training signal it
    takes to overrule the prior is not (docs/engine.md measures it).
    """
    groups = to_groups(importance.detach().float(), pattern.m, layout)
    mean = groups.mean(dim=1, keepdim=True)
    relative = torch.where(mean > 0, groups / mean.clamp_min(torch.finfo(torch.float32).tiny), 1.0)
    a0 = 1.0 / pattern.combinations_per_weight
    return from_groups(strength * a0 * (relative - 1.0) / pattern.n, importance.shape, layout)


class FusedMaskWithScoreSignal(torch.autograd.Function):
    """:class:`MaskWithScoreSignal` whose backward is one native pass per layer (``native/lbc_step.cpp``):
    the masked gradient, the signal and the score step (or the pending sum) in a single sweep.

    While the layer's mask is all ones (every weight is still in some alive combination, the early part
    of the schedule) the mask is not applied at all: the forward pass uses the weight itself and the
    weight's gradient is the incoming one, so LBC only adds the score update to a dense step. Once weights
    are pruned, both passes read the mask as bytes (:meth:`LBCMask.kernel_mask`).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, state: LBCMask) -> torch.Tensor:
        mask = state.kernel_mask()
        ctx.save_for_backward(weight, mask)
        ctx.state = state
        if mask is None:
            return weight.view_as(weight)
        return torch.ops.lbc_sparsity.apply_mask(weight, mask)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        weight, mask = ctx.saved_tensors
        state: LBCMask = ctx.state
        if not state.scores_trainable:
            return (grad_out if mask is None else torch.ops.lbc_sparsity.apply_mask(grad_out, mask)), None
        return state.fused_backward(weight.detach(), mask, grad_out), None


class LBCMask(ScoreSignalReceiver):
    """Parametrization holding one layer's LBC state as buffers (saved with the model).

    ``kernel``: "fused" runs the backward work as one native pass (an error when the operator is not
    built), "plain" as PyTorch ops (the reference), "auto" fused where it applies (CPU, fp32/fp64 weights,
    operator built) and plain elsewhere.
    """

    mask: torch.Tensor
    score: torch.Tensor
    alive: torch.Tensor
    score_steps: torch.Tensor
    score_momentum: torch.Tensor
    score_exp_avg: torch.Tensor
    score_exp_avg_sq: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        pattern: NMPattern,
        optimizer: ScoreOptimizer,
        layout: str | None = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"LBC kernel must be one of {KERNELS}, got {kernel!r}")
        if kernel == "fused" and not native.load():
            raise native.NativeBuildError(f"the fused LBC step is unavailable: {native.load_error()}")
        self.pattern = pattern
        self.layout = layout  # groups run along the weight's reduction dimension in this layout
        self.optimizer = optimizer
        self.kernel = kernel
        self.lr = 0.0
        self._kernel_mask = KernelMask()
        num_groups = weight.numel() // pattern.m
        c = pattern.num_combinations
        like: dict[str, Any] = {"dtype": weight.dtype, "device": weight.device}
        # 0/1 in the weight's dtype: a bool mask would hit PyTorch's slow mixed-dtype multiply.
        self.register_buffer("mask", torch.ones(weight.shape, **like))
        # s_j; every combination's score is a0 + sum of its weights' s_j (a0 = 1 / C(M-1, N-1) at start).
        self.register_buffer("score", torch.zeros(weight.shape, **like))
        self.register_buffer(
            "alive", pack_bits(torch.ones(num_groups, c, dtype=torch.bool, device=weight.device))
        )
        self.register_buffer("score_steps", torch.zeros((), dtype=torch.long, device=weight.device))
        if optimizer.kind == "sgd" and optimizer.momentum > 0:
            self.register_buffer("score_momentum", torch.zeros(weight.shape, **like))
        if optimizer.kind == "adam":
            self.register_buffer("score_exp_avg", torch.zeros(weight.shape, **like))
            self.register_buffer("score_exp_avg_sq", torch.zeros(weight.shape, **like))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and self.scores_trainable):
            return weight * self.mask
        # Multi-process runs form the signal after the all-reduce (apply_reduced_gradient), so the
        # backward has no per-weight work for the fused step to fuse: they take the plain path.
        if not self.signal_after_reduction and self._use_fused(weight):
            return FusedMaskWithScoreSignal.apply(weight, self)
        return MaskWithScoreSignal.apply(weight, self.mask, self)

    def _use_fused(self, weight: torch.Tensor) -> bool:
        if self.kernel == "plain":
            return False
        if self.kernel == "fused" and not native_applies(weight):
            raise ValueError(
                f"the fused LBC step runs on CPU float32/float64 weights, got {weight.dtype} on {weight.device}"
            )
        return native_applies(weight)

    def kernel_mask(self) -> torch.Tensor | None:
        """The mask as the native step applies it: None while every entry is 1, else its 0/1 bytes
        (:class:`~lbc_core.sparsity.masking.KernelMask`)."""
        return self._kernel_mask(self.mask)

    def mask_is_dense(self) -> bool:
        """Whether every entry of the mask is 1."""
        return self.kernel_mask() is None

    @torch.no_grad()
    def fused_backward(
        self, weight: torch.Tensor, mask: torch.Tensor | None, grad: torch.Tensor
    ) -> torch.Tensor:
        """dL/dweight (``mask * grad``, or ``grad`` itself without a mask), with the score step (or the
        pending sum) done in the same pass."""
        ops = torch.ops.lbc_sparsity
        masked = None if mask is None else torch.empty_like(grad, memory_format=torch.contiguous_format)
        if self.defer_steps:
            pending, first = self.pending_buffer(weight)
            ops.accumulate(weight, grad, pending, mask, masked, first)
            return grad if masked is None else masked
        opt = self.optimizer
        self.score_steps += 1
        step = int(self.score_steps)
        if opt.kind == "sgd":
            buffer = self.score_momentum if opt.momentum > 0 else None
            ops.sgd_step(
                weight, grad, self.score, buffer, mask, masked, self.lr, opt.momentum, opt.dampening,
                opt.weight_decay, opt.nesterov, step == 1,
            )  # fmt: skip
        else:
            beta1, beta2 = opt.betas
            ops.adam_step(
                weight, grad, self.score, self.score_exp_avg, self.score_exp_avg_sq, mask, masked,
                self.lr, beta1, beta2, opt.eps, opt.weight_decay, step,
            )  # fmt: skip
        return grad if masked is None else masked

    @torch.no_grad()
    def update_scores(self, grad: torch.Tensor) -> None:
        """One optimizer step on the per-weight scores, mirroring ``torch.optim.SGD`` / ``Adam``."""
        opt = self.optimizer
        self.score_steps += 1
        d = grad.add(self.score, alpha=opt.weight_decay) if opt.weight_decay else grad
        if opt.kind == "sgd":
            if opt.momentum > 0:
                buf = self.score_momentum
                if int(self.score_steps) == 1:
                    buf.copy_(d)
                else:
                    buf.mul_(opt.momentum).add_(d, alpha=1 - opt.dampening)
                d = d.add(buf, alpha=opt.momentum) if opt.nesterov else buf
            self.score.add_(d, alpha=-self.lr)
            return
        beta1, beta2 = opt.betas
        step = int(self.score_steps)
        self.score_exp_avg.lerp_(d, 1 - beta1)
        self.score_exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        denom = (self.score_exp_avg_sq / (1 - beta2**step)).sqrt_().add_(opt.eps)
        self.score.addcdiv_(self.score_exp_avg, denom, value=-self.lr / (1 - beta1**step))

    @torch.no_grad()
    def remove(self, keep: int) -> None:
        """Keep the ``keep`` best-scored alive combinations in every group; the rest die for good."""
        m, c = self.pattern.m, self.pattern.num_combinations
        table = self.pattern.combination_table(self.score.device).to(self.score.dtype)
        score_groups = to_groups(self.score, m, self.layout)
        mask_groups = torch.empty(score_groups.shape, dtype=torch.bool, device=self.score.device)
        for start in range(0, score_groups.shape[0], _CHUNK_GROUPS):
            stop = start + _CHUNK_GROUPS
            alive = unpack_bits(self.alive[start:stop], c)
            sums = (score_groups[start:stop] @ table.T).masked_fill_(~alive, float("-inf"))
            # Stable descending sort: ties go to the lexicographically first combination.
            best = torch.sort(sums, dim=1, descending=True, stable=True).indices[:, :keep]
            alive = torch.zeros_like(alive).scatter_(1, best, True)
            self.alive[start:stop] = pack_bits(alive)
            mask_groups[start:stop] = (alive.to(table.dtype) @ table) > 0
        self.mask.copy_(from_groups(mask_groups, self.mask.shape, self.layout))

    def alive_bits(self) -> torch.Tensor:
        return unpack_bits(self.alive, self.pattern.num_combinations)


class LBCSparsifier(Sparsifier):
    """Learning Best Combination (Zhang et al., NeurIPS 2022)."""

    method = "lbc"

    def __init__(
        self,
        pattern: NMPattern,
        policy: LayerPolicy | None = None,
        schedule: RemovalSchedule | None = None,
        optimizer: ScoreOptimizer | None = None,
        score_init: ScoreInit = "uniform",
        prior_strength: float = 1.0,
        *,
        kernel: str = "auto",
    ) -> None:
        super().__init__(pattern, policy)
        if kernel not in KERNELS:
            raise ValueError(f"LBC kernel must be one of {KERNELS}, got {kernel!r}")
        if score_init not in SCORE_INITS:
            raise ValueError(f"unknown LBC score_init {score_init!r}; choose one of {', '.join(SCORE_INITS)}")
        if not prior_strength > 0:
            raise ValueError(f"LBC prior_strength must be > 0, got {prior_strength}")
        self.prior_strength = prior_strength
        self.schedule = schedule or RemovalSchedule()
        self.score_optimizer = optimizer or ScoreOptimizer()
        self.score_init = score_init
        self.kernel = kernel
        # Whether the start scores are in place: uniform scores are from prepare() on, a magnitude
        # prior is set in prepare(), a Wanda prior waits for calibrate().
        self.scores_started = score_init == "uniform"
        self.alive_per_group = pattern.num_combinations
        self.removals = 0

    def _make_parametrization(self, weight: torch.Tensor, layout: str) -> nn.Module:
        return LBCMask(weight, self.pattern, self.score_optimizer, layout, self.kernel)

    # -- score priors ------------------------------------------------------------------------------
    def prepare(
        self, model: nn.Module, dense_defaults: Mapping[str, DenseDefault] | None = None
    ) -> LayerSelection:
        selection = super().prepare(model, dense_defaults)
        if self.score_init == "magnitude":
            self._start_scores({name: original_weight(m).detach().abs() for name, m in self._modules()})
        return selection

    @property
    def needs_calibration(self) -> bool:
        return self.score_init == "wanda" and not self.scores_started

    @torch.no_grad()
    def calibrate(self, run_forward: RunForward) -> None:
        if not self.needs_calibration:
            return
        norms = input_norms(dict(self._modules()), run_forward)
        self._start_scores(
            {name: wanda_importance(m, original_weight(m), norms[name]) for name, m in self._modules()}
        )

    @torch.no_grad()
    def _start_scores(self, importance: dict[str, torch.Tensor]) -> None:
        for name, param in self._iter_parametrizations():
            param.score.copy_(prior_scores(importance[name], self.pattern, param.layout, self.prior_strength))
        self.scores_started = True

    def _modules(self) -> list[tuple[str, nn.Module]]:
        return list(self._require_prepared().modules.items())

    def _require_started(self) -> None:
        if not self.scores_started:
            raise SparsifierStateError(
                f"LBC with score_init {self.score_init!r} needs calibrate(run_forward) before training"
            )

    @property
    def scores_frozen(self) -> bool:
        return self.alive_per_group == 1

    def on_step_start(self, epoch: int, step: int, steps_per_epoch: int, lr: float) -> None:
        self._require_started()
        t = self.schedule.time(epoch, step, steps_per_epoch)
        self._remove_to(self.schedule.alive_per_group(t, self.pattern.num_combinations))
        for _, param in self._iter_parametrizations():
            param.lr = lr

    def defer_score_steps(self, enabled: bool = True) -> None:
        for _, param in self._iter_parametrizations():
            param.defer_steps = enabled

    def step_scores(self, grad_scale: float = 1.0, *, skip: bool = False) -> None:
        for _, param in self._iter_parametrizations():
            param.step_pending(grad_scale, skip=skip)

    def _remove_to(self, target: int) -> None:
        if target >= self.alive_per_group:
            return
        for _, param in self._iter_parametrizations():
            param.remove(target)
        self.alive_per_group = target
        self.removals += 1
        self._freeze_scores_when_done()

    def _freeze_scores_when_done(self) -> None:
        # One combination left everywhere: the scores can no longer change anything.
        if self.scores_frozen:
            for _, param in self._iter_parametrizations():
                param.scores_trainable = False

    def _before_finalize(self) -> None:
        self._require_started()
        # A run stopped before t_f still ends exactly N:M: keep the best combination per group.
        self._remove_to(1)

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        metrics["alive_per_group"] = float(self.alive_per_group)
        metrics["scores_frozen"] = float(self.scores_frozen)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            alive_per_group=self.alive_per_group,
            removals=self.removals,
            score_init=self.score_init,
            scores_started=self.scores_started,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        # Checkpoints from before score priors existed started uniformly.
        saved_init = state.get("score_init", "uniform")
        if saved_init != self.score_init:
            raise SparsifierStateError(
                f"checkpoint was written by LBC with score_init {saved_init!r}, not {self.score_init!r}"
            )
        # The started scores are buffers saved with the model: a resumed run is never recalibrated.
        self.scores_started = bool(state.get("scores_started", True))
        self.alive_per_group = int(state["alive_per_group"])
        self.removals = int(state["removals"])
        for _, param in self._iter_parametrizations():
            param.scores_trainable = not self.scores_frozen

    def state_bytes(self) -> dict[str, int]:
        """Bytes of LBC state by kind, for the memory benchmark."""
        totals: dict[str, int] = {}
        for _, param in self._iter_parametrizations():
            for key, buf in param.named_buffers():
                totals[key] = totals.get(key, 0) + buf.numel() * buf.element_size()
        return totals
