"""The avx512bf16 path (bfloat16 dot products) against an exact reference, and the dispatch decision.

The path multiplies bf16 by bf16 with ``vdpbf16ps``: each product is exact in float32, and the sums round
in another order than the other paths' FMAs, so results are compared to the exact (float64) sum of the
same bf16 values with a bound derived from the accumulation length, not to another path's bits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import pack_weight
from lbc_core.kernels.settings import KernelSettings
from lbc_core.sparsity import NMPattern

from .conftest import PATTERNS, nm_weight

pytestmark = pytest.mark.usefixtures("native")

ROOT = Path(__file__).resolve().parents[3]
PATH = "avx512bf16"
# A CPU with AVX-512F but without avx512_bf16 (Skylake-X, Ice Lake), and one with it (Zen 4, Sapphire Rapids).
WITHOUT_BF16 = "scalar,avx2,avx512"
WITH_BF16 = "scalar,avx2,avx512,avx512bf16"


def _runs_here() -> bool:
    """True where this CPU runs the path; elsewhere asserts that forcing it is refused, naming the paths."""
    if PATH in native_status().isas:
        return True
    with pytest.raises(RuntimeError, match=f"{PATH} path was forced but cannot run here"):
        nm_linear(
            torch.zeros(1, 4, dtype=torch.bfloat16),
            pack_weight(torch.zeros(1, 4, dtype=torch.bfloat16), NMPattern(2, 4)),
            isa=PATH,
        )
    return False


def _assert_within_bound(
    y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> None:
    """|y - exact| <= 2^-8 (|exact| + E) + E, E = (K + 1) 2^-24 (sum |w x| + |b|).

    K kept products per output, each exact in float32, accumulated with at most K roundings plus one for the
    bias (E bounds the float32 sum's error), then one rounding to bfloat16 (at most half a bf16 step,
    2^-8 relative, of the float32 sum).
    """
    x64, w64 = x.double().reshape(-1, x.shape[-1]), weight.double()
    exact = x64 @ w64.T
    magnitude = x64.abs() @ w64.abs().T
    if bias is not None:
        exact = exact + bias.double()
        magnitude = magnitude + bias.double().abs()
    kept = int((weight != 0).sum(dim=1).max()) if weight.numel() else 0
    accumulation = (kept + 1) * 2.0**-24 * magnitude
    bound = 2.0**-8 * (exact.abs() + accumulation) + accumulation
    error = (y.double().reshape(exact.shape) - exact).abs()
    worst = float((error - bound).max()) if error.numel() else 0.0
    assert worst <= 0.0, f"error exceeds the bound by {worst:.3g}"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_batch_1_to_33_and_tails_within_the_bound(pattern: str) -> None:
    nm = NMPattern.parse(pattern)
    if not _runs_here():
        return
    generator = torch.Generator().manual_seed(4)
    # out: one row, a partial block, a block tail; groups: 1, odd (odd N pairs the last group with zeros), even.
    for out, groups in ((1, 1), (7, 3), (37, 5), (20, 2)):
        inn = groups * nm.m
        weight = nm_weight(out, inn, nm, torch.bfloat16, seed=out * 31 + groups)
        packed = pack_weight(weight, nm)
        bias = torch.randn(out, generator=generator).to(torch.bfloat16)
        for batch in range(1, 34):
            x = torch.randn(batch, inn, generator=generator).to(torch.bfloat16)
            _assert_within_bound(nm_linear(x, packed, bias, isa=PATH), x, weight, bias)
        x = torch.randn(5, inn, generator=generator).to(torch.bfloat16)
        _assert_within_bound(nm_linear(x, packed, None, isa=PATH), x, weight, None)


@pytest.mark.parametrize("pattern", ("2:4", "1:4", "3:7", "4:8", "1:16", "15:16"))
def test_long_rows_across_chunks_within_the_bound(pattern: str) -> None:
    # More groups than one 32 KiB chunk of values holds, an odd count: chunk boundaries and the odd tail.
    nm = NMPattern.parse(pattern)
    if not _runs_here():
        return
    groups = 32 * 1024 // (nm.n * 16 * 2) + 3
    weight = nm_weight(21, groups * nm.m, nm, torch.bfloat16, seed=5)
    packed = pack_weight(weight, nm)
    generator = torch.Generator().manual_seed(6)
    for batch in (1, 29, 33):  # tiles of 16, 8, 4 and 1 rows
        x = torch.randn(batch, groups * nm.m, generator=generator).to(torch.bfloat16)
        _assert_within_bound(nm_linear(x, packed, isa=PATH), x, weight, None)


def test_non_contiguous_and_leading_dimensions() -> None:
    if not _runs_here():
        return
    nm = NMPattern(2, 4)
    weight = nm_weight(20, 24, nm, torch.bfloat16)
    packed = pack_weight(weight, nm)
    transposed = torch.randn(24, 10).to(torch.bfloat16).t()
    assert not transposed.is_contiguous()
    strided = torch.randn(4, 48).to(torch.bfloat16)[:, ::2]
    tokens = torch.randn(2, 5, 24).to(torch.bfloat16)
    for x in (transposed, strided, tokens):
        y = nm_linear(x, packed, isa=PATH)
        assert y.shape == (*x.shape[:-1], 20) and y.dtype == torch.bfloat16
        _assert_within_bound(y, x, weight, None)


def test_float32_under_the_path_runs_the_avx512_block() -> None:
    if not _runs_here():
        return
    nm = NMPattern(2, 8)
    packed = pack_weight(nm_weight(40, 64, nm, torch.float32), nm)
    x = torch.randn(9, 64)
    assert torch.equal(nm_linear(x, packed, isa=PATH), nm_linear(x, packed, isa="avx512"))


def test_dispatch_takes_the_dot_products_only_for_bfloat16_where_the_cpu_has_them() -> None:
    block_path = torch.ops.lbc_nm.block_path
    # Without avx512_bf16 nothing changes: auto is the avx512 path for both dtypes.
    assert block_path("auto", WITHOUT_BF16, True) == "avx512"
    assert block_path("auto", WITHOUT_BF16, False) == "avx512"
    assert block_path("auto", "scalar,avx2", True) == "avx2"
    assert block_path("auto", "scalar", True) == "scalar"
    # With it: bfloat16 on the dot products, float32 on the avx512 block.
    assert block_path("auto", WITH_BF16, True) == "avx512bf16"
    assert block_path("auto", WITH_BF16, False) == "avx512"
    # Forcing another path still works on such a CPU.
    assert block_path("avx512", WITH_BF16, True) == "avx512"
    assert block_path("scalar", WITH_BF16, True) == "scalar"
    # Forcing it where the CPU lacks it names the paths it has.
    with pytest.raises(
        RuntimeError, match=r"avx512bf16 path was forced but cannot run here .*: scalar,avx2,avx512$"
    ):
        block_path(PATH, WITHOUT_BF16, True)
    with pytest.raises(RuntimeError, match="expected auto, scalar, avx2, avx512 or avx512bf16"):
        block_path("amx", WITH_BF16, True)


def test_the_status_lists_the_path_this_cpu_runs() -> None:
    status = native_status(KernelSettings())  # auto, whatever LBC_NM_KERNEL_ISA says
    isas = str(torch.ops.lbc_nm.available_isas()).split(",")
    assert list(status.isas) == isas
    # The listing is the cpuid answer: this machine's /proc/cpuinfo flags say the same (Linux x86 only).
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags to compare with")
    has_bf16 = {"avx512f", "avx512bw", "avx512_bf16"} <= set(flags)
    assert (PATH in isas) == has_bf16
    if has_bf16:
        assert status.selected == PATH and f"this CPU runs {', '.join(isas)}" in status.describe()


def test_the_environment_variable_forces_the_path() -> None:
    environ = {**os.environ, "LBC_NM_KERNEL_ISA": PATH}
    environ.pop("LBC_NM_BUILD_DIR", None)  # the library make install built
    done = subprocess.run(
        [sys.executable, "-m", "lbc_core.kernels", "status"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if PATH in native_status().isas:
        assert done.returncode == 0, done.stderr
        assert f"native N:M CPU kernel, {PATH} path" in done.stdout
    else:
        assert done.returncode != 0
        assert f"{PATH} path was forced but cannot run here" in done.stderr


def test_result_does_not_depend_on_the_thread_count() -> None:
    if not _runs_here():
        return
    nm = NMPattern(1, 4)
    packed = pack_weight(nm_weight(130, 256, nm, torch.bfloat16), nm)
    x = torch.randn(19, 256).to(torch.bfloat16)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = nm_linear(x, packed, isa=PATH)
        torch.set_num_threads(max(2, before))
        multi = nm_linear(x, packed, isa=PATH)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(single, multi)  # each output row is summed whole by one thread, in one order
