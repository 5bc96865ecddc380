"""The native operator against a dense reference: every pattern class, dtype and ISA path, odd shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import pack_weight
from lbc_core.sparsity import NMPattern

from .conftest import ISAS, PATTERNS, nm_weight

pytestmark = pytest.mark.usefixtures("native")

# (out, in in groups): out=1, out below one block, tails of a 16-row block, in not a multiple of 8/16.
SHAPES = ((1, 3), (7, 1), (37, 5), (64, 40))
BATCHES = (1, 3, 33)


def _expected(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Float64 reference, rounded to the kernel's output dtype (it accumulates in float32, rounds once)."""
    y = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    return y.to(x.dtype)


def _close(actual: torch.Tensor, expected: torch.Tensor, inn: int) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype == torch.float32:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * inn**0.5)
    else:  # one bfloat16 rounding of a float32 sum that differs from float64 in the last bits
        torch.testing.assert_close(actual.float(), expected.float(), rtol=1e-2, atol=1e-2)


def _runs_here(isa: str) -> bool:
    return isa in native_status().isas


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_kernel_matches_dense_linear(pattern: str, dtype: torch.dtype, isa: str) -> None:
    nm = NMPattern.parse(pattern)
    if not _runs_here(isa):
        with pytest.raises(RuntimeError, match=f"{isa} path was forced but cannot run here"):
            nm_linear(
                torch.zeros(1, nm.m, dtype=dtype), pack_weight(torch.zeros(1, nm.m, dtype=dtype), nm), isa=isa
            )
        return
    generator = torch.Generator().manual_seed(1)
    for out, groups in SHAPES:
        inn = groups * nm.m
        weight = nm_weight(out, inn, nm, dtype, seed=out + groups)
        packed = pack_weight(weight, nm)
        bias = torch.randn(out, generator=generator).to(dtype)
        for batch in BATCHES:
            x = torch.randn(batch, inn, generator=generator).to(dtype)
            _close(nm_linear(x, packed, bias, isa=isa), _expected(x, weight, bias), inn)
            _close(nm_linear(x, packed, None, isa=isa), _expected(x, weight, None), inn)


def test_vector_paths_equal_the_scalar_reference_on_a_large_layer() -> None:
    vector_paths = [isa for isa in native_status().isas if isa != "scalar"]
    for pattern in ("2:4", "2:8", "4:8", "1:16"):
        nm = NMPattern.parse(pattern)
        weight = nm_weight(300, 1024, nm, torch.float32)
        packed = pack_weight(weight, nm)
        x = torch.randn(9, 1024, generator=torch.Generator().manual_seed(2))
        reference = nm_linear(x, packed, isa="scalar")
        for isa in vector_paths:
            # Same per-row summation order in every path; only FMA rounding differs.
            torch.testing.assert_close(nm_linear(x, packed, isa=isa), reference, rtol=1e-5, atol=1e-5 * 32)


def test_any_input_layout_and_leading_dimensions() -> None:
    nm = NMPattern(2, 4)
    weight = nm_weight(20, 24, nm, torch.float32)
    packed = pack_weight(weight, nm)
    base = torch.randn(24, 10, generator=torch.Generator().manual_seed(3))
    x = base.t()  # non-contiguous [10, 24]
    assert not x.is_contiguous()
    _close(nm_linear(x, packed), _expected(x, weight, None), 24)
    x3 = torch.randn(2, 5, 24)  # [batch, tokens, features]
    y3 = nm_linear(x3, packed)
    assert y3.shape == (2, 5, 20)
    _close(y3, _expected(x3, weight, None), 24)
    strided = torch.randn(4, 48)[:, ::2]  # every other feature
    _close(nm_linear(strided, packed), _expected(strided, weight, None), 24)


def test_empty_batch_gives_an_empty_result() -> None:
    nm = NMPattern(1, 4)
    packed = pack_weight(nm_weight(5, 8, nm, torch.float32), nm)
    assert nm_linear(torch.zeros(0, 8), packed).shape == (0, 5)


def test_result_does_not_depend_on_the_thread_count() -> None:
    nm = NMPattern(2, 4)
    packed = pack_weight(nm_weight(130, 256, nm, torch.float32), nm)
    x = torch.randn(5, 256)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = nm_linear(x, packed)
        torch.set_num_threads(max(2, before))
        multi = nm_linear(x, packed)
    finally:
        torch.set_num_threads(before)
    # Each output row is computed whole by one thread, so the bits are the same.
    assert torch.equal(single, multi)


def test_bad_inputs_get_a_clear_error() -> None:
    nm = NMPattern(2, 4)
    packed = pack_weight(nm_weight(4, 8, nm, torch.float32), nm)
    with pytest.raises(RuntimeError, match="input has 12 features; the weight expects 8"):
        nm_linear(torch.zeros(1, 12), packed)
    with pytest.raises(RuntimeError, match="input dtype BFloat16 differs from the weight's Float"):
        nm_linear(torch.zeros(1, 8, dtype=torch.bfloat16), packed)
    with pytest.raises(RuntimeError, match=r"bias must be \[4\]"):
        nm_linear(torch.zeros(1, 8), packed, torch.zeros(3))
    with pytest.raises(RuntimeError, match="unknown N:M kernel ISA path 'sse9'"):
        nm_linear(torch.zeros(1, 8), packed, isa="sse9")


# Inductor imports torch.utils.mkldnn, which warns about its own use of torch.jit (PyTorch 2.13).
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_the_operator_traces_under_torch_compile() -> None:
    from lbc_core.kernels.swap import NMLinear

    nm = NMPattern(2, 8)
    weight = nm_weight(48, 64, nm, torch.float32)
    layer = NMLinear(pack_weight(weight, nm), torch.randn(48))
    model = torch.nn.Sequential(layer, torch.nn.ReLU()).eval()
    x = torch.randn(3, 64)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
