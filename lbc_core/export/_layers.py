"""Finding a named layer's weight, with errors that name the layer."""

from __future__ import annotations

import torch
from torch import nn

from lbc_core.export.errors import ExportError


def layer_weight(model: nn.Module, name: str) -> torch.Tensor:
    try:
        module = model.get_submodule(name)
    except AttributeError as exc:
        raise ExportError(f"layer {name!r} is not in the model") from exc
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ExportError(f"layer {name!r} has no weight tensor")
    return weight.detach()
