"""How LBC's straight-through signal ``w * dL/dw~`` reaches the scores.

By default a layer's scores take their optimizer step inside the backward pass that produced the signal:
no gradient buffer, and (with the fused operator) one pass over memory. A training step made of several
backward passes (gradient accumulation) or whose gradients are rescaled after backward (clipping, loss
scaling) must instead *defer* the step: every backward adds its signal to a pending sum, and the scores step
once per optimizer step on that sum times the same factor the weights' gradients got. The score gradient is
a gradient of the same loss, so it is accumulated, unscaled and clipped exactly like the weights' gradients
(see docs/engine.md, "Scores step once per optimizer step").

Multi-process (DDP) runs set ``signal_after_reduction``: the backward leaves the weight's gradient
``dL/dw~`` unmasked, it travels through the ranks' gradient all-reduce, and :func:`apply_reduced_gradient`
forms the signal from the averaged gradient (the combined batch's, as one process would see it) and masks
the gradient. The signal then steps the scores, or joins the pending sum when steps are deferred.
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
        # Multi-process training: the signal is formed after the ranks average dL/dw~ (see
        # apply_reduced_gradient), not inside each rank's backward from its local gradient.
        self.signal_after_reduction = False
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
            if state.signal_after_reduction:
                # Unmasked: the weight's gradient carries dL/dw~ through the ranks' all-reduce, so the
                # signal needs no communication of its own; apply_reduced_gradient masks it afterwards.
                return grad_out, None, None
            state.receive_signal(weight.detach() * grad_out)
        return grad_out * mask, None, None


@torch.no_grad()
def apply_reduced_gradient(
    state: ScoreSignalReceiver, mask: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor
) -> None:
    """Multi-process step for a layer whose backward left ``grad = dL/dw~`` unmasked: ``grad`` is now the
    average over ranks, i.e. the gradient of the combined batch, so the scores receive exactly the signal
    ``w * dL/dw~`` a single process would (stepped now, or added to the pending sum when steps are
    deferred); then ``grad`` becomes the weight gradient ``mask * dL/dw~``.
    """
    state.receive_signal(weight * grad)
    grad.mul_(mask)
