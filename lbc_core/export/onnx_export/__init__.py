"""ONNX export of a finalized N:M model for TensorRT: ``model.onnx`` and ``model.fp16.onnx``.

Needs the ``onnx`` extra (onnx, onnxscript, onnxruntime), imported only when an export runs, so the
rest of the library works without it.
"""

from lbc_core.export.onnx_export.exporter import (
    ONNX_FILE,
    ONNX_FP16_FILE,
    OPSET,
    OnnxExport,
    OnnxVariant,
    export_onnx,
)
from lbc_core.export.onnx_export.gemm import GemmLinear, gemm_ready
from lbc_core.export.onnx_export.initializers import WeightInitializer, weight_initializers
from lbc_core.export.onnx_export.inputs import OnnxInputs
from lbc_core.export.onnx_export.verify import FP16_TOLERANCE, FP32_TOLERANCE, Comparison

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "ONNX_FILE",
    "ONNX_FP16_FILE",
    "OPSET",
    "Comparison",
    "GemmLinear",
    "OnnxExport",
    "OnnxInputs",
    "OnnxVariant",
    "WeightInitializer",
    "export_onnx",
    "gemm_ready",
    "weight_initializers",
]
