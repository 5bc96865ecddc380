"""One sample through a model before training, so a model that does not fit the data is named at once.

A shape mismatch (``in_channels: 3`` on grayscale data, an MLP's ``input_features`` that is not the
data's) otherwise surfaces as a bare RuntimeError from deep inside the first training step, which says
neither which layer refused the input nor that the input, not the machine, is at fault.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["InputShapeError", "is_allocation_failure", "probe_forward"]


class InputShapeError(ValueError):
    """The model cannot take the data's samples; the message names the layer that refused them."""


def is_allocation_failure(exc: BaseException) -> bool:
    """True for an allocation that failed (host or CUDA): that is the machine's size, not the input."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def probe_forward(
    model: nn.Module,
    sample: torch.Tensor,
    what: str = "the data",
    call: Callable[[nn.Module], object] | None = None,
) -> None:
    """Run ``sample`` (a batch of one) through ``model`` in eval mode without gradients.

    ``call`` runs the model when it takes more than the sample (a task's keyword arguments such as an
    attention mask); ``sample`` then only names the shape in the message.

    Raises InputShapeError naming the innermost module that raised (found with forward pre-hooks), the
    sample's shape and the engine's message. Leaves the model's mode, state and the RNGs untouched.
    """
    names = {module: name for name, module in model.named_modules()}
    running: list[nn.Module] = []

    def enter(module: nn.Module, _args: object) -> None:
        running.append(module)

    def leave(module: nn.Module, _args: object, _out: object) -> None:
        running.pop()

    handles = [module.register_forward_pre_hook(enter) for module in names]
    handles += [module.register_forward_hook(leave) for module in names]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()
            if call is None:
                model(sample)
            else:
                call(model)
    except (RuntimeError, AssertionError) as exc:  # torch._assert raises AssertionError
        if is_allocation_failure(exc):
            raise
        failed = running[-1] if running else model
        layer = f"layer {names[failed]}" if names.get(failed) else "the model itself"
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise InputShapeError(
            f"{layer} ({type(failed).__name__}) cannot take {what}: samples of shape "
            f"{list(sample.shape[1:])} give: {message}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
