"""The form in which the fused LBC step's native passes read a layer's 0/1 mask (CPU, float32/float64).

``weight * mask`` as PyTorch computes it reads a mask as large as the weight (it is kept in the weight's
dtype: a bool mask would take PyTorch's slow mixed-dtype multiply). The native ``apply_mask`` (the forward
pass's masked weight) and the fused backward (the masked gradient) read it as bytes instead, a quarter of
the traffic of a float32 mask, with the same products bit for bit; a mask that is all ones is not applied.
"""

from __future__ import annotations

import weakref

import torch

from lbc_core.sparsity import native


def native_applies(weight: torch.Tensor) -> bool:
    """Whether the native operator can mask ``weight`` (CPU, float32/float64, operator built)."""
    return weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.float64) and native.load()


def byte_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` as uint8 when that loses nothing (every entry exactly +0.0 or 1.0, compared bit for bit
    so that a -0.0 keeps its sign in the products), else ``mask`` itself."""
    mask = mask.contiguous()
    compact = mask.to(torch.uint8)
    same = torch.equal(compact.to(mask.dtype).view(torch.uint8), mask.view(torch.uint8))
    return compact if same else mask


class KernelMask:
    """One mask buffer in the form the native operator reads: None while every entry is 1 (nothing to
    apply), else :func:`byte_mask`. Rebuilt only when the buffer changed: another tensor (a moved or
    replaced buffer; held by a weak reference, so a new tensor at a freed one's address is not taken for
    it) or a new version of it (a removal, a ``copy_``, a checkpoint loaded into it). A rebuild makes a
    new tensor, so one saved for a backward pass still in flight stays valid."""

    def __init__(self) -> None:
        self._forget()

    def _forget(self) -> None:
        self._source: weakref.ref[torch.Tensor] | None = None
        self._version = -1
        self._value: torch.Tensor | None = None

    def __call__(self, mask: torch.Tensor) -> torch.Tensor | None:
        if self._source is None or self._source() is not mask or mask._version != self._version:
            self._source, self._version = weakref.ref(mask), mask._version
            self._value = None if bool(mask.all()) else byte_mask(mask)
        return self._value

    def __getstate__(self) -> dict[str, object]:
        # A derived cache: a pickled module (weak references do not pickle) rebuilds it on first use.
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._forget()
