"""Sparse inference kernels: the CPU N:M kernel (native, with a pure-PyTorch fallback), its packed weight
format, the kernel registry and the swap of a finalized model's layers onto it (docs/cpu-kernel.md).

Importing builds nothing: the native library is built or loaded on first use (or by
``python -m lbc_core.kernels build``).
"""

from lbc_core.kernels.native import NativeStatus, native_status, nm_linear
from lbc_core.kernels.packing import PackedNM, PackingError, pack_compressed, pack_weight, unpack
from lbc_core.kernels.registry import kernels_for, sparse_kernel_for
from lbc_core.kernels.settings import KernelSettings, KernelSettingsError
from lbc_core.kernels.swap import (
    LayerDecision,
    NMLinear,
    SwapResult,
    nm_model_from_export,
    reduction_weight,
    swap_to_nm_kernel,
)

__all__ = [
    "KernelSettings",
    "KernelSettingsError",
    "LayerDecision",
    "NMLinear",
    "NativeStatus",
    "PackedNM",
    "PackingError",
    "SwapResult",
    "kernels_for",
    "native_status",
    "nm_linear",
    "nm_model_from_export",
    "pack_compressed",
    "pack_weight",
    "reduction_weight",
    "sparse_kernel_for",
    "swap_to_nm_kernel",
    "unpack",
]
