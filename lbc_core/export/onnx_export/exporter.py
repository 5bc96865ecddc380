"""``model.onnx`` and ``model.fp16.onnx`` of a finalized sparse model, checked with onnxruntime on CPU.

Weights are constant initializers holding the exact zeros of the N:M masks; linear layers are ``Gemm``
nodes (see :mod:`.gemm`); opset 18. Each variant is compared with the PyTorch model on the caller's
example inputs (and on one sample of them, which proves the batch axis is free) before it is kept.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lbc_core.export.errors import ExportError
from lbc_core.export.onnx_export.gemm import gemm_ready
from lbc_core.export.onnx_export.initializers import WeightInitializer, weight_initializers
from lbc_core.export.onnx_export.inputs import FlatCall, OnnxInputs, reference_outputs
from lbc_core.export.onnx_export.verify import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    Comparison,
    RuntimeUnavailable,
    compare,
)
from lbc_core.sparsity import NMPattern

ONNX_FILE = "model.onnx"
ONNX_FP16_FILE = "model.fp16.onnx"
# 17 is the first opset with LayerNormalization; 18 is what torch's exporter writes natively (asking
# for 17 runs a version conversion).
OPSET = 18
# The exporter names parameters by their path inside FlatCall; the initializers keep the model's own names.
_WRAPPER_PREFIX = "model."
# Logs a warning per torchvision op it cannot register when torchvision is absent (not a dependency here).
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


@dataclass(frozen=True)
class OnnxVariant:
    """One exported file: ``verified`` (matches PyTorch within tolerance), ``unverified`` (written, but
    onnxruntime could not run it here) or ``failed`` (not written; ``reason`` says why)."""

    file: str
    dtype: str
    status: Literal["verified", "unverified", "failed"]
    tolerance: float
    reason: str | None = None
    checks: tuple[Comparison, ...] = ()
    initializers: tuple[WeightInitializer, ...] = ()
    missing_layers: tuple[str, ...] = ()  # sparsified layers with no N:M Gemm/Conv weight in the file
    path: Path | None = None
    extra_files: tuple[Path, ...] = ()  # external weight data, for graphs over protobuf's 2 GiB

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "dtype": self.dtype,
            "status": self.status,
            "reason": self.reason,
            "tolerance": {"rule": "max|onnx - torch| <= rel * max(1, max|torch|)", "rel": self.tolerance},
            "checks": [
                {
                    "inputs": check.shapes,
                    "max_abs_error": check.max_abs_error,
                    "output_scale": check.scale,
                    "bound": check.tolerance,
                }
                for check in self.checks
            ],
            "nm_initializers": sum(1 for init in self.initializers if init.nm),
            "compliant_24_initializers": sum(1 for init in self.initializers if init.compliant_24),
            "missing_layers": list(self.missing_layers),
            "initializers": [init.to_dict() for init in self.initializers],
        }


@dataclass(frozen=True)
class OnnxExport:
    opset: int
    inputs: dict[str, list[int | str]]  # shape of each graph input; names stand for free axes
    outputs: list[str]
    variants: tuple[OnnxVariant, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = ()  # what the export had to give up (a free axis the model fixes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "exported",
            "opset": self.opset,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "variants": [variant.to_dict() for variant in self.variants],
            "notes": list(self.notes),
        }


def _require_exporter() -> None:
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: pip install 'lbc-sparsity[onnx]'")


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """The useful line of an exporter error (torch's start with a banner and end with advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    summary = [line for line in lines if line.startswith("<class ")]
    text = summary[0] if summary else (lines[0] if lines else type(exc).__name__)
    return f"{type(exc).__name__}: {text}"[:limit]


def _dynamic_shapes(inputs: OnnxInputs) -> tuple[Any, ...]:
    # FlatCall takes *tensors, so the spec is one tuple with an entry per tensor. AUTO lets torch.export
    # keep an axis fixed where the model needs it fixed instead of failing the export.
    return (
        tuple(
            {axis: torch.export.Dim.AUTO for axis in inputs.dynamic_axes.get(name, {})}
            for name in inputs.tensors
        ),
    )


def _rename(program: Any, inputs: OnnxInputs) -> None:
    """Initializers named as in the model's state dict, free input axes named as the caller named them."""
    graph = program.model.graph
    for value in list(graph.initializers.values()):
        if value.name and value.name.startswith(_WRAPPER_PREFIX):
            value.name = value.name[len(_WRAPPER_PREFIX) :]
    symbols: dict[str, str] = {}
    for value in graph.inputs:
        axes = inputs.dynamic_axes.get(value.name or "", {})
        if value.shape is None:
            continue
        for axis, dim in enumerate(value.shape):
            if axis in axes and not isinstance(dim, int) and dim.value is not None:
                symbols.setdefault(dim.value, axes[axis])
    if not symbols:
        return
    import onnx_ir

    values = [*graph.inputs, *graph.outputs, *(out for node in graph for out in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        dims = [symbols.get(dim.value, dim.value) if not isinstance(dim, int) else dim for dim in value.shape]
        if dims != [dim if isinstance(dim, int) else dim.value for dim in value.shape]:
            value.shape = onnx_ir.Shape(dims)


def _export_graph(
    module: nn.Module, inputs: OnnxInputs, dtype: torch.dtype, outputs: list[str], path: Path
) -> None:
    registration = logging.getLogger(_REGISTRATION_LOGGER)
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        program = _torch_export(module, inputs, dtype, outputs)
    finally:
        registration.setLevel(level)
    if program is None:  # only the legacy exporter returns None
        raise ExportError("torch.onnx.export returned no program")
    _rename(program, inputs)
    path.unlink(missing_ok=True)
    program.save(str(path))


def _torch_export(module: nn.Module, inputs: OnnxInputs, dtype: torch.dtype, outputs: list[str]) -> Any:
    with warnings.catch_warnings():
        # torch.export deep-copies its own LeafSpec objects and warns about them (torch 2.13); nothing a
        # caller can change, and under -W error (as the CLI tests run) it would abort every export.
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning
        )
        return torch.onnx.export(
            FlatCall(module, inputs).eval(),
            inputs.cast(dtype),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(inputs.tensors),
            output_names=outputs,
            dynamic_shapes=_dynamic_shapes(inputs),
            verbose=False,
        )


def _graph_io(path: Path) -> tuple[dict[str, list[int | str]], list[str]]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    shapes: dict[str, list[int | str]] = {}
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [dim.dim_param if dim.dim_param else int(dim.dim_value) for dim in dims]
    return shapes, [value.name for value in proto.graph.output]


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.data").unlink(missing_ok=True)


@dataclass(frozen=True)
class _Expected:
    """What each written graph is checked against: PyTorch's outputs, and the layers it must describe."""

    checks: tuple[tuple[OnnxInputs, list[tuple[str, torch.Tensor]]], ...]
    pattern: NMPattern
    layers: frozenset[str]
    sparsified: frozenset[str]
    layouts: Mapping[str, str]


def _variant(
    module: nn.Module, inputs: OnnxInputs, expected: _Expected, path: Path, dtype: torch.dtype, rel: float
) -> OnnxVariant:
    name = str(dtype).removeprefix("torch.")
    outputs = [output_name for output_name, _ in expected.checks[0][1]]
    try:
        _export_graph(module, inputs, dtype, outputs, path)
    except Exception as exc:  # any op the exporter cannot translate; the reason is what matters
        _remove(path)
        return OnnxVariant(path.name, name, "failed", rel, f"export failed: {_one_line(exc)}")

    import onnx

    found = tuple(
        weight_initializers(
            onnx.load(str(path)), expected.pattern, expected.layers, expected.sparsified, expected.layouts
        )
    )
    covered = {init.layer for init in found if init.nm}
    data = Path(f"{path}.data")
    written = OnnxVariant(
        path.name,
        name,
        "unverified",
        rel,
        initializers=found,
        missing_layers=tuple(sorted(expected.sparsified - covered)),
        path=path,
        extra_files=(data,) if data.is_file() else (),
    )
    try:
        results = tuple(compare(path, given, outputs_of, dtype, rel) for given, outputs_of in expected.checks)
    except RuntimeUnavailable as exc:
        return replace(written, reason=str(exc))
    except ValueError as exc:
        _remove(path)
        return OnnxVariant(path.name, name, "failed", rel, f"does not match PyTorch: {exc}")
    bad = [check for check in results if not check.ok]
    if bad:
        _remove(path)
        worst = max(bad, key=lambda check: check.max_abs_error)
        reason = (
            f"does not match PyTorch: max |onnx - torch| = {worst.max_abs_error:.3g} on inputs {worst.shapes}, "
            f"over the bound {worst.tolerance:.3g} (outputs up to {worst.scale:.3g})"
        )
        return OnnxVariant(path.name, name, "failed", rel, reason, results)
    return replace(written, status="verified", checks=results)


def export_onnx(
    model: nn.Module,
    inputs: OnnxInputs,
    out_dir: str | os.PathLike[str],
    *,
    pattern: NMPattern,
    sparsified: Collection[str] = (),
    fp16: bool = True,
) -> OnnxExport:
    """Write ``model.onnx`` (and ``model.fp16.onnx``) of a finalized CPU model into ``out_dir``.

    ``sparsified`` names the layers trained N:M (the manifest's layers). Raises ExportError when the
    fp32 graph cannot be exported or does not match PyTorch; a failed fp16 variant is only reported.
    """
    _require_exporter()
    if any(tensor.device.type != "cpu" for tensor in [*model.parameters(), *model.buffers()]):
        raise ExportError("ONNX export takes a model on the CPU (call model.cpu() first)")
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ready, layouts = gemm_ready(model)

    def expect(given: OnnxInputs) -> _Expected:
        was_training = model.training
        try:
            checks = [(case, reference_outputs(model, case)) for case in (given, *given.variations())]
        finally:
            model.train(was_training)
        return _Expected(
            checks=tuple(checks),
            pattern=pattern,
            layers=frozenset(name for name, _ in model.named_modules()),
            sparsified=frozenset(sparsified),
            layouts=layouts,
        )

    expected = expect(inputs)
    notes: list[str] = []
    first = _variant(ready.float(), inputs, expected, directory / ONNX_FILE, torch.float32, FP32_TOLERANCE)
    if first.status == "failed" and inputs.free_axes_besides_batch:
        # Some models fix a length while tracing (int(x.shape[1]), a position table added whole): the
        # graph is then only right for the example's length. Keep the batch free and every other size fixed.
        inputs = inputs.without_free_axes_but_batch()
        notes.append(f"only the batch axis is free: with other free axes, {first.reason}")
        expected = expect(inputs)
        first = _variant(ready, inputs, expected, directory / ONNX_FILE, torch.float32, FP32_TOLERANCE)
    if first.status == "failed":
        raise ExportError(f"{ONNX_FILE}: {first.reason}")
    variants = [first]
    if fp16:
        half = ready.half()
        variants.append(
            _variant(half, inputs, expected, directory / ONNX_FP16_FILE, torch.float16, FP16_TOLERANCE)
        )
    shapes, outputs = _graph_io(directory / ONNX_FILE)
    return OnnxExport(OPSET, shapes, outputs, tuple(variants), tuple(notes))
