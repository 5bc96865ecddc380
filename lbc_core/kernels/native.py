"""Load the native N:M kernel (building it on first use when needed) and say whether it runs here.

Without a compiler, or when the build fails, nothing breaks: :func:`native_status` reports why, the log
says the pure-PyTorch path is in use, and :func:`nm_linear` computes the same result with
:func:`lbc_core.kernels.packing.reference_linear`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch

from lbc_core.kernels.build import KernelBuildError, build
from lbc_core.kernels.packing import PackedNM, reference_linear
from lbc_core.kernels.settings import KernelSettings

logger = logging.getLogger(__name__)

PURE_PYTORCH = "pytorch"  # the path name reported when the native library is not loaded


@dataclass(frozen=True)
class NativeStatus:
    available: bool
    reason: str  # the library's path, or why it is not loaded
    isas: tuple[str, ...]  # paths this CPU runs (empty without the library)
    selected: str  # the path calls take under the settings: scalar | avx2 | avx512 | avx512bf16 | pytorch

    def describe(self) -> str:
        if self.available:
            return f"native N:M CPU kernel, {self.selected} path (this CPU runs {', '.join(self.isas)})"
        return f"pure-PyTorch N:M path (no native kernel: {self.reason})"


def _register_fake() -> None:
    # Shapes only, so torch.compile (FakeTensor tracing) passes through the operator.
    @torch.library.register_fake("lbc_nm::nm_linear")
    def _(x, values, codes, bias, out_features, n, m, code_bits, bitmask, isa):
        return x.new_empty((*x.shape[:-1], out_features))


@functools.cache
def _load_library(path: str) -> None:
    # Once per process: the operators can be registered only once, whichever build provides them (settings
    # that differ only in the ISA path share one library).
    if _operators_loaded():
        return
    torch.ops.load_library(path)
    _register_fake()


def _operators_loaded() -> bool:
    try:
        torch.ops.lbc_nm.nm_linear  # noqa: B018 (raises AttributeError when not registered)
    except (AttributeError, RuntimeError):
        return False
    return True


@functools.cache
def _load(settings: KernelSettings) -> NativeStatus:
    try:
        path = build(settings)
        _load_library(str(path))
    except (KernelBuildError, OSError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning(
            "N:M CPU kernel unavailable (%s); using the pure-PyTorch path (correct, not fast)", reason
        )
        return NativeStatus(False, reason, (), PURE_PYTORCH)
    isas = tuple(str(torch.ops.lbc_nm.available_isas()).split(","))
    # Forcing a path this CPU lacks is an error here, at load, rather than at the first multiplication.
    selected = str(torch.ops.lbc_nm.selected_isa(settings.isa))
    logger.info("N:M CPU kernel loaded from %s: %s path (this CPU runs %s)", path, selected, ", ".join(isas))
    return NativeStatus(True, str(path), isas, selected)


def native_status(settings: KernelSettings | None = None) -> NativeStatus:
    """Build (once per process and settings) and load the native kernel; never raises for a missing
    compiler or a failed build, only for a forced ISA path this CPU cannot run."""
    return _load(settings or KernelSettings.from_env())


def nm_linear(
    x: torch.Tensor, packed: PackedNM, bias: torch.Tensor | None = None, *, isa: str | None = None
) -> torch.Tensor:
    """``x @ W^T + bias`` for a packed N:M weight: native kernel when loaded, pure PyTorch otherwise.

    ``isa`` forces a path for this call (``scalar``, ``avx2``, ``avx512``, ``avx512bf16``; default from the
    settings).
    """
    settings = KernelSettings.from_env()
    status = native_status(settings)
    if not status.available:
        return reference_linear(x, packed, bias)
    return torch.ops.lbc_nm.nm_linear(
        x,
        packed.values,
        packed.codes,
        bias,
        packed.out_features,
        packed.pattern.n,
        packed.pattern.m,
        packed.code.bits,
        packed.code.bitmask,
        isa or settings.isa,
    )
