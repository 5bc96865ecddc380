"""Which weight initializers of an exported graph are N:M and 2:4-compliant, read from the file itself.

Checked on the initializers as written (after the exporter's own rewrites, e.g. BatchNorm folded into
the preceding Conv, which scales whole output channels and so keeps every zero), not on the PyTorch
weights they came from.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lbc_core.sparsity import NMPattern, PatternError, count_violations, is_24_compliant_tensor

# Node kinds whose constant weight TensorRT may run with sparse tactics, and the weight's input slot.
WEIGHT_INPUT = {"Gemm": 1, "Conv": 1, "MatMul": 1}


@dataclass(frozen=True)
class WeightInitializer:
    """One constant weight of a Gemm/Conv/MatMul node, in the graph's own layout."""

    name: str
    node: str
    op: str
    layer: str | None  # the module it came from, when its name says so
    shape: tuple[int, ...]
    layout: str  # what the axes mean, e.g. "[out, in]"
    dtype: str
    sparsified: bool  # the layer was trained N:M
    nm: bool  # every group of M along the reduction axis holds at most N non-zeros
    pattern: str | None  # the run's pattern when ``nm``, else None
    compliant_24: bool  # every aligned block of 4 along the reduction axis holds at most 2 non-zeros
    density: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node": self.node,
            "op": self.op,
            "layer": self.layer,
            "shape": list(self.shape),
            "layout": self.layout,
            "dtype": self.dtype,
            "sparsified": self.sparsified,
            "nm": self.nm,
            "pattern": self.pattern,
            "compliant_24": self.compliant_24,
            "density": self.density,
        }


def _reduction_view(op: str, weight: torch.Tensor, trans_b: int) -> torch.Tensor | None:
    """The weight as ``[out, reduction]`` (2-D) or ``[out, in, kh, kw]`` (Conv2d), or None if neither."""
    if op == "Conv":
        return weight if weight.dim() == 4 else None
    if weight.dim() != 2:
        return None
    # Gemm with transB=1 holds B as [N, K] (nn.Linear's layout); MatMul and transB=0 hold [K, N].
    return weight if op == "Gemm" and trans_b else weight.t()


def _layout(op: str, weight: torch.Tensor, trans_b: int) -> str:
    if op == "Conv":
        return "[out, in, kh, kw]" if weight.dim() == 4 else f"{weight.dim()}-D convolution weight"
    return "[out, in]" if op == "Gemm" and trans_b else "[in, out]"


def _is_nm(view: torch.Tensor | None, pattern: NMPattern) -> bool:
    if view is None:
        return False
    try:
        return count_violations(view, pattern) == 0
    except PatternError:  # reduction size not a multiple of M
        return False


def _layer_of(name: str, layers: Collection[str]) -> str | None:
    layer = name.removesuffix(".weight")
    return layer if layer != name and layer in layers else None


def weight_initializers(
    model_proto: Any,
    pattern: NMPattern,
    layers: Collection[str],
    sparsified: Collection[str],
    layouts: Mapping[str, str] | None = None,
) -> list[WeightInitializer]:
    """Every constant weight of a Gemm/Conv/MatMul node of ``model_proto`` (an ``onnx.ModelProto``).

    ``layers`` are the module names of the exported model (to name each weight's layer), ``sparsified``
    those trained N:M, ``layouts`` a description of a layer's layout that says more than the node does
    (a Conv1D weight transposed for its Gemm).
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model_proto.graph.initializer}
    found: list[WeightInitializer] = []
    seen: set[str] = set()
    for node in model_proto.graph.node:
        slot = WEIGHT_INPUT.get(node.op_type)
        if slot is None or len(node.input) <= slot or node.input[slot] not in initializers:
            continue
        name = node.input[slot]
        if name in seen:  # a tied weight used by two nodes is one initializer
            continue
        seen.add(name)
        attributes = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        array = numpy_helper.to_array(initializers[name])
        weight = torch.from_numpy(array.copy())
        trans_b = int(attributes.get("transB", 0))
        view = _reduction_view(node.op_type, weight, trans_b)
        nm = _is_nm(view, pattern)
        layer = _layer_of(name, layers)
        layout = (layouts or {}).get(layer or "") or _layout(node.op_type, weight, trans_b)
        found.append(
            WeightInitializer(
                name=name,
                node=node.name,
                op=node.op_type,
                layer=layer,
                shape=tuple(weight.shape),
                layout=layout,
                dtype=str(array.dtype),
                sparsified=layer in sparsified,
                nm=nm,
                pattern=str(pattern) if nm else None,
                compliant_24=view is not None and is_24_compliant_tensor(view),
                density=float((weight != 0).sum()) / max(weight.numel(), 1),
            )
        )
    return found
