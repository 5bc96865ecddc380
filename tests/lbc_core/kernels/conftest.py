"""Shared pieces of the kernel tests: N:M weights made by the library's own magnitude masking."""

from __future__ import annotations

import pytest
import torch

from lbc_core.kernels.native import native_status
from lbc_core.sparsity import NMPattern, magnitude_mask

# Every pattern class: the common ones, index codes of 1-4 bits, bitmask codes of 4, 8 and 16 bits, odd M.
PATTERNS = ("2:4", "1:4", "2:8", "4:8", "1:16", "3:7", "8:16", "1:2", "3:4", "5:16", "15:16")
ISAS = ("scalar", "avx2", "avx512", "avx512bf16")


def nm_weight(out: int, inn: int, pattern: NMPattern, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    weight = torch.randn(out, inn, generator=torch.Generator().manual_seed(seed))
    return (weight * magnitude_mask(weight, pattern)).to(dtype)


@pytest.fixture(scope="session")
def native() -> None:
    # make install builds the kernel; a machine where it cannot is tested by test_fallback.py instead.
    status = native_status()
    assert status.available, f"the native N:M kernel did not load: {status.reason}"
