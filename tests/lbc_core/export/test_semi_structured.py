"""Semi-structured 2:4 conversion: eligibility everywhere, conversion only where a kernel exists."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbc_core.export import (
    SHAPE_RULES,
    semi_structured_ineligibility,
    semi_structured_support,
    to_semi_structured,
)
from lbc_core.export.semi_structured import replace_with_semi_structured, semi_structured_backend
from lbc_core.sparsity import NMPattern, is_nm_sparse, magnitude_mask
from lbc_core.sparsity.pattern import IN_OUT, OUT_IN

CPU_REASON = "no semi-structured sparse kernel on this device (cpu): needs an NVIDIA GPU with compute capability >= 8.0"


def _sparse_linear(out_features: int, in_features: int, pattern: NMPattern | None = None) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        layer.weight.mul_(magnitude_mask(layer.weight, pattern or NMPattern(2, 4)))
    return layer


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        _sparse_linear(128, 64),  # eligible
        nn.ReLU(),
        nn.Linear(128, 128),  # dense: not 2:4-compliant
        _sparse_linear(64, 128, NMPattern(1, 4)),  # 1:4 is 2:4-compliant
        _sparse_linear(10, 64),  # 10 rows: not a multiple of 32
        _sparse_linear(64, 96, NMPattern(2, 8)),  # 96 columns: not a multiple of 64
        nn.Conv2d(8, 8, 3),  # not a Linear: not considered
    )


def test_support_on_cpu() -> None:
    assert semi_structured_support("cpu") == (False, CPU_REASON)
    assert semi_structured_support(torch.device("cpu"))[0] is False


def test_cpu_degrades_with_a_reason_and_never_calls_the_cuda_only_conversion(monkeypatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("to_sparse_semi_structured must not be called on CPU")

    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", forbidden)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = to_semi_structured(model)

    assert result.converted == ()
    assert not result.available
    assert result.unavailable_reason == CPU_REASON
    assert result.device == "cpu"
    assert result.dtype == "torch.float16"
    assert result.backend is None
    assert result.eligible == ("0", "3")
    reasons = {s.name: s.reason for s in result.skipped}
    assert set(reasons) == {"2", "4", "5"}
    assert reasons["2"].startswith("not 2:4-compliant")
    assert "out features must be a multiple of 32" in reasons["4"]
    assert "in features a multiple of 64" in reasons["5"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_eligibility_reasons() -> None:
    dtype = torch.float16
    assert semi_structured_ineligibility(_sparse_linear(64, 64), dtype) is None
    assert semi_structured_ineligibility(_sparse_linear(64, 64, NMPattern(1, 16)), dtype) is None
    assert "not nn.Linear" in (semi_structured_ineligibility(nn.Conv2d(4, 4, 1), dtype) or "")
    # 4:8 can put 3 or 4 kept weights into one aligned block of 4.
    layer = nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, :4] = 1.0
    reason = semi_structured_ineligibility(layer, dtype) or ""
    assert reason == "not 2:4-compliant: 64 of 1024 aligned blocks of 4 inputs hold more than 2 non-zeros"


def test_shape_table_is_keyed_by_dtype() -> None:
    assert set(SHAPE_RULES) == {torch.float16, torch.bfloat16}
    assert SHAPE_RULES[torch.float16].row_multiple == 32
    assert SHAPE_RULES[torch.bfloat16].col_multiple == 64
    with pytest.raises(ValueError, match=r"not torch\.float32"):
        to_semi_structured(_model(), dtype=torch.float32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.filterwarnings("ignore:The PyTorch API of SparseSemiStructuredTensor:UserWarning")
def test_conversion_on_cuda() -> None:
    model = _model().cuda().half().eval()
    supported, reason = semi_structured_support("cuda")
    x = torch.randn(64, 64, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        expected = model[0](x)
    result = to_semi_structured(model, dtype=torch.float16)
    if not supported:
        assert result.converted == ()
        assert result.unavailable_reason == reason
        return
    assert result.converted == ("0", "3")
    assert isinstance(model[0].weight, torch.sparse.SparseSemiStructuredTensor)
    with torch.no_grad():
        torch.testing.assert_close(model[0](x), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    ("cusparselt", "capability", "backend"),
    [
        (True, (8, 0), "cusparselt"),
        (True, (9, 0), "cusparselt"),
        (False, (8, 6), "cutlass"),
        # PyTorch's CUTLASS 2:4 kernels raise "Supported only on GPUs with compute capability 8.x" on Hopper.
        (False, (9, 0), None),
    ],
)
def test_the_backend_follows_what_runs_on_the_gpu_generation(
    monkeypatch: pytest.MonkeyPatch, cusparselt: bool, capability: tuple[int, int], backend: str | None
) -> None:
    monkeypatch.setattr(torch.backends.cusparselt, "is_available", lambda: cusparselt)
    assert semi_structured_backend(capability) == backend


# -- transformers' Conv1D (GPT-2): weight stored [in, out], 2:4 along its input dimension (dim 0) --------


def _conv1d(in_features: int, out_features: int, layout: str = IN_OUT) -> nn.Module:
    """A Conv1D made 2:4 in ``layout``: IN_OUT along its inputs (as trained), OUT_IN along its outputs."""
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(out_features, in_features)
    with torch.no_grad():
        layer.bias.normal_()
        layer.weight.mul_(magnitude_mask(layer.weight, NMPattern(2, 4), layout))
    return layer


def test_conv1d_eligibility_reads_its_weight_as_in_by_out() -> None:
    pytest.importorskip("transformers")
    dtype = torch.float16
    assert semi_structured_ineligibility(_conv1d(128, 64), dtype) is None
    # 2:4 along its outputs (rows of the [in, out] weight) is not 2:4 along the reduction dimension.
    reason = semi_structured_ineligibility(_conv1d(128, 64, OUT_IN), dtype) or ""
    assert reason.startswith("not 2:4-compliant: ")
    # Shape rules apply to the [out, in] view: 64 inputs x 16 outputs has 16 out features.
    reason = semi_structured_ineligibility(_conv1d(64, 16), dtype) or ""
    assert reason == (
        "weight shape (16, 64) [out, in], stored (64, 16) as [in, out] unsupported for torch.float16: out "
        "features must be a multiple of 32 and in features a multiple of 64"
    )


def test_cpu_lists_conv1d_layers_as_eligible_and_converts_nothing() -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = nn.Sequential(_conv1d(128, 64), nn.ReLU(), _conv1d(64, 64, OUT_IN))
    result = to_semi_structured(model)
    assert result.converted == () and result.unavailable_reason == CPU_REASON
    assert result.eligible == ("0",)
    assert [s.name for s in result.skipped] == ["2"]


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_the_semi_structured_operand_is_the_out_by_in_view_and_the_layer_still_computes_its_function(
    kind: str,
) -> None:
    # A stand-in conversion (it keeps the dense operand) checks the orientation on any machine: the
    # operand is [out, in] and 2:4 along in, and the layer's own forward computes what it did before.
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    layer = _sparse_linear(64, 128) if kind == "linear" else _conv1d(128, 64)
    x = torch.randn(3, 5, 128)
    with torch.no_grad():
        expected = layer(x)
    operands: list[torch.Tensor] = []

    def keep(dense: torch.Tensor) -> torch.Tensor:
        operands.append(dense)
        return dense

    replace_with_semi_structured(layer, torch.float32, keep)

    (operand,) = operands
    assert operand.shape == (64, 128) and operand.is_contiguous()
    assert is_nm_sparse(operand, NMPattern(2, 4))  # along dim 1, the reduction dimension of x @ W^T
    assert not layer.weight.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.filterwarnings("ignore:The PyTorch API of SparseSemiStructuredTensor:UserWarning")
def test_conv1d_conversion_on_cuda() -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = nn.Sequential(_conv1d(128, 64), nn.ReLU(), _conv1d(64, 64)).cuda().half().eval()
    supported, reason = semi_structured_support("cuda")
    x = torch.randn(2, 32, 128, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        expected = model(x)
    result = to_semi_structured(model, dtype=torch.float16)
    if not supported:
        assert result.converted == () and result.unavailable_reason == reason
        return
    assert result.converted == ("0", "2")
    assert isinstance(model[0].weight, torch.sparse.SparseSemiStructuredTensor)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-2, atol=1e-2)
