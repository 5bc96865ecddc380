"""How LBC's straight-through signal ``w * dL/dw~`` reaches the scores.

By default a layer's scores take their optimizer step inside the backward pass that produced the signal:
no gradient buffer, and (with the fused operator) one pass over memory. A training step made of several
backward passes (gradient accumulation) or whose gradients are rescaled after backward (clipping, loss
scaling) must instead *defer* the step: every backward adds its signal to a pending sum, and the scores step
once per optimizer step on that sum times the same factor the weights' gradients got. The score gradient is
a gradient of the same loss, so it is accumulated, unscaled and clipped exactly like the weights' gradients
(see docs/engine.md, "Scores step once per optimizer step").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ScoreSignalReceiver(nn.Module):
    """A parametrization whose scores learn from the signal, immediately or once per optimizer step."""

    scores_trainable: bool

    def __init__(self) -> None:
        super().__init__()
        self.scores_trainable = True
        self.defer_steps = False
        # Not a buffer: it is empty at every step boundary, where checkpoints are written.
        self.pending: torch.Tensor | None = None
        self.pending_count = 0

    def update_scores(self, signal: torch.Tensor) -> None:
        """One optimizer step of the scores on ``signal`` (the layer's ``w * dL/dw~``)."""
        raise NotImplementedError

    def receive_signal(self, signal: torch.Tensor) -> None:
        if not self.defer_steps:
            self.update_scores(signal)
            return
        if self.pending_count == 0:
            self.pending = signal
        else:
            assert self.pending is not None
            self.pending.add_(signal)
        self.pending_count += 1

    def pending_buffer(self, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The pending sum to accumulate into in place, and whether this is the step's first signal."""
        pending = self.pending
        if pending is None or pending.shape != like.shape or pending.device != like.device:
            pending = self.pending = torch.empty_like(like, memory_format=torch.contiguous_format)
        first = self.pending_count == 0
        self.pending_count += 1
        return pending, first

    @torch.no_grad()
    def step_pending(self, grad_scale: float, *, skip: bool = False) -> None:
        """Step the scores once on the summed signal times ``grad_scale``; ``skip`` drops it instead."""
        if self.pending_count == 0:
            return
        self.pending_count = 0
        if skip or not self.scores_trainable:
            return
        assert self.pending is not None
        self.update_scores(self.pending if grad_scale == 1.0 else self.pending.mul_(grad_scale))


class MaskWithScoreSignal(torch.autograd.Function):
    """``w~ = w * mask``; the weight gets the masked gradient, the scores get ``w * dL/dw~``."""

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, mask: torch.Tensor, state: ScoreSignalReceiver
    ) -> torch.Tensor:
        ctx.save_for_backward(weight, mask)
        ctx.state = state
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        weight, mask = ctx.saved_tensors
        state: ScoreSignalReceiver = ctx.state
        if state.scores_trainable:
            state.receive_signal(weight.detach() * grad_out)
        return grad_out * mask, None, None
