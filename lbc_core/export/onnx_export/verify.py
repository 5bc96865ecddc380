"""Run an exported graph with onnxruntime on CPU and compare it with the PyTorch model's outputs.

The tolerance scales with the size of the outputs: ``max |onnx - torch| <= rel * max(1, max |torch|)``.
fp32 graphs differ from PyTorch only by summation order (1e-4); fp16 graphs round every weight and
activation to 11 significant bits (1e-2). Both are compared with the fp32 PyTorch model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lbc_core.export.onnx_export.inputs import OnnxInputs

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2


class RuntimeUnavailable(RuntimeError):
    """onnxruntime is missing or cannot load the graph on CPU (say, no fp16 kernel for one of its ops)."""


@dataclass(frozen=True)
class Comparison:
    """How far the graph's outputs were from PyTorch's on one set of inputs."""

    shapes: dict[str, list[int]]  # of the inputs it ran on
    max_abs_error: float
    scale: float  # max |torch output|
    tolerance: float  # the bound max_abs_error had to stay within

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance


def _session(path: Path) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailable("onnxruntime is not installed (pip install lbc-sparsity[onnx])") from exc
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (non-public) error classes
        raise RuntimeUnavailable(f"onnxruntime cannot load {path.name} on CPU: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def compare(
    path: Path,
    inputs: OnnxInputs,
    expected: list[tuple[str, torch.Tensor]],
    dtype: torch.dtype,
    rel: float,
) -> Comparison:
    """Run ``path`` on ``inputs`` (floating-point inputs cast to ``dtype``) against ``expected``."""
    session = _session(path)
    feed = {
        name: tensor.detach().cpu().numpy()
        for name, tensor in zip(inputs.tensors, inputs.cast(dtype), strict=True)
    }
    try:
        outputs = session.run(None, feed)
    except Exception as exc:  # the graph loaded, so it is the graph that is wrong for these inputs
        given = ", ".join(f"{name} {list(array.shape)}" for name, array in feed.items())
        raise ValueError(f"onnxruntime fails on inputs {given}: {_first_line(exc)}") from exc
    if len(outputs) != len(expected):
        raise ValueError(f"{path.name} returns {len(outputs)} outputs; the model returns {len(expected)}")
    error, scale = 0.0, 0.0
    for (name, reference), output in zip(expected, outputs, strict=True):
        actual = torch.from_numpy(output).float()
        if actual.shape != reference.shape:
            raise ValueError(
                f"{path.name} output {name!r} has shape {tuple(actual.shape)}, PyTorch's {tuple(reference.shape)}"
            )
        # NaN anywhere (say an fp16 overflow) must fail the check, so it counts as an infinite error.
        difference = torch.nan_to_num((actual - reference).abs(), nan=float("inf"))
        error = max(error, float(difference.max()) if difference.numel() else 0.0)
        scale = max(scale, float(reference.abs().max()) if reference.numel() else 0.0)
    shapes = {name: list(tensor.shape) for name, tensor in inputs.tensors.items()}
    return Comparison(shapes, error, scale, rel * max(1.0, scale))
