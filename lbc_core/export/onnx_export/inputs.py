"""What the exported graph is fed (example inputs given by the caller) and what it returns (flat tensors).

The exporter never guesses a model's inputs: an image classifier takes one ``[batch, C, H, W]`` tensor,
a Hugging Face model takes ``input_ids`` and ``attention_mask`` by keyword, a causal LM also needs
``use_cache=False``. The caller says so with :class:`OnnxInputs`, which works for any task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lbc_core.export.errors import ExportError

BATCH = "batch"
SEQUENCE = "sequence"


@dataclass(frozen=True)
class OnnxInputs:
    """Example inputs of the exported graph, by name, in the order the graph takes them.

    ``dynamic_axes`` names the axes left free in the graph (``{"input": {0: "batch"}}``); the others are
    fixed to the example's sizes. ``keyword``: call ``model(**tensors)`` instead of ``model(*tensors)``.
    ``options`` are constant keyword arguments of every call (``{"use_cache": False}``).
    """

    tensors: Mapping[str, torch.Tensor]
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    keyword: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tensors:
            raise ExportError("ONNX export needs at least one example input")
        for name, tensor in self.tensors.items():
            if not isinstance(tensor, torch.Tensor):
                raise ExportError(f"example input {name!r} is a {type(tensor).__name__}, not a tensor")
            for axis in self.dynamic_axes.get(name, {}):
                if not 0 <= axis < tensor.dim():
                    raise ExportError(f"example input {name!r} has {tensor.dim()} axes; no axis {axis}")
        unknown = sorted(set(self.dynamic_axes) - set(self.tensors))
        if unknown:
            raise ExportError(f"dynamic_axes names inputs that are not given: {', '.join(unknown)}")

    @classmethod
    def single(cls, tensor: torch.Tensor, name: str = "input") -> OnnxInputs:
        """One positional input whose first axis is the batch (catalog models)."""
        return cls({name: tensor}, {name: {0: BATCH}})

    @classmethod
    def positional(cls, *tensors: torch.Tensor) -> OnnxInputs:
        """Positional inputs whose first axis is the batch: ``input``, or ``input_0``, ``input_1``, ..."""
        names = ["input"] if len(tensors) == 1 else [f"input_{i}" for i in range(len(tensors))]
        return cls(dict(zip(names, tensors, strict=True)), {name: {0: BATCH} for name in names})

    @classmethod
    def by_keyword(
        cls,
        tensors: Mapping[str, torch.Tensor],
        *,
        sequence_inputs: bool = True,
        options: Mapping[str, Any] | None = None,
    ) -> OnnxInputs:
        """Keyword inputs (Hugging Face models): axis 0 is the batch; for 2-D inputs (token ids, masks)
        axis 1 is the sequence when ``sequence_inputs``."""
        axes = {
            name: {0: BATCH, **({1: SEQUENCE} if sequence_inputs and tensor.dim() == 2 else {})}
            for name, tensor in tensors.items()
        }
        return cls(dict(tensors), axes, keyword=True, options=dict(options or {}))

    def cast(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The example tensors with floating-point ones in ``dtype`` (token ids and masks stay integers)."""
        return tuple(
            tensor.to(dtype) if tensor.is_floating_point() else tensor for tensor in self.tensors.values()
        )

    def variations(self) -> list[OnnxInputs]:
        """The inputs resized along each free axis, to check the graph really leaves it free.

        A batch of one; and for every other free axis (a sequence), the inputs one shorter along it,
        which is still valid input for a model that takes any length. Axes of size 1 are left alone.
        """
        names = {axis_name for spec in self.dynamic_axes.values() for axis_name in spec.values()}
        varied = []
        for axis_name in sorted(names, key=lambda name: (name != BATCH, name)):
            where = {
                name: axis
                for name, spec in self.dynamic_axes.items()
                for axis, n in spec.items()
                if n == axis_name
            }
            if any(self.tensors[name].shape[axis] < 2 for name, axis in where.items()):
                continue
            cut = dict(self.tensors)
            for name, axis in where.items():
                length = 1 if axis_name == BATCH else self.tensors[name].shape[axis] - 1
                cut[name] = self.tensors[name].narrow(axis, 0, length)
            varied.append(OnnxInputs(cut, self.dynamic_axes, self.keyword, self.options))
        return varied

    def without_free_axes_but_batch(self) -> OnnxInputs:
        """The same inputs with only the batch axis free (for models that fix every other size)."""
        axes = {name: {0: BATCH} for name, spec in self.dynamic_axes.items() if spec.get(0) == BATCH}
        return OnnxInputs(self.tensors, axes, self.keyword, self.options)

    @property
    def free_axes_besides_batch(self) -> bool:
        return any(axis != 0 for spec in self.dynamic_axes.values() for axis in spec)


def flat_outputs(output: Any, name: str = "output") -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a model's output with a name: a tensor, tuples, dicts and ``ModelOutput`` s.

    ``ModelOutput`` is a dict that lists only the fields a call returned, so ``logits`` keeps its name.
    """
    if isinstance(output, torch.Tensor):
        return [(name, output)]
    if output is None:
        return []
    if isinstance(output, Mapping):
        return [pair for key, value in output.items() for pair in flat_outputs(value, str(key))]
    if isinstance(output, list | tuple):
        return [pair for i, value in enumerate(output) for pair in flat_outputs(value, f"{name}_{i}")]
    raise ExportError(
        f"model output {name!r} is a {type(output).__name__}, which ONNX cannot return; pass options that "
        "turn it off (e.g. use_cache=False for a causal language model's key/value cache)"
    )


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}_{count}")
    return unique


class FlatCall(nn.Module):
    """``model`` called with the inputs in order, returning its output tensors as one flat tuple.

    The exported graph and the PyTorch reference both go through it, so their outputs pair up by position.
    """

    def __init__(self, model: nn.Module, inputs: OnnxInputs) -> None:
        super().__init__()
        self.model = model
        self.names = list(inputs.tensors)
        self.keyword = inputs.keyword
        self.options = dict(inputs.options)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.keyword:
            output = self.model(**dict(zip(self.names, tensors, strict=True)), **self.options)
        else:
            output = self.model(*tensors, **self.options)
        return tuple(tensor for _, tensor in flat_outputs(output))


def reference_outputs(model: nn.Module, inputs: OnnxInputs) -> list[tuple[str, torch.Tensor]]:
    """The PyTorch outputs of ``model`` (eval mode, no gradients) on ``inputs``, with unique names."""
    model.eval()
    with torch.no_grad():
        if inputs.keyword:
            output = model(**inputs.tensors, **inputs.options)
        else:
            output = model(*inputs.tensors.values(), **inputs.options)
    pairs = flat_outputs(output)
    if not pairs:
        raise ExportError("the model returned no tensor to export")
    names = unique_names([name for name, _ in pairs])
    return [(name, tensor.detach().float()) for name, (_, tensor) in zip(names, pairs, strict=True)]
