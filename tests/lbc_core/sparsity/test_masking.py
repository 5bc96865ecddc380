"""The fused LBC step's native masking (``apply_mask`` and the fused backward with a byte copy of the mask)
computes what ``weight * mask`` computes, in the forward pass and for the gradient, bit for bit; the byte
copy follows the mask buffer."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lbc_core.sparsity import NMPattern, ScoreOptimizer
from lbc_core.sparsity.lbc import LBCMask
from lbc_core.sparsity.masking import KernelMask, byte_mask
from lbc_core.sparsity.pattern import magnitude_mask

pytestmark = pytest.mark.usefixtures("fused_lbc_step")


# Small, and large enough for several parallel tasks (32 k elements each) on the intra-op threads.
SHAPES = [(64, 48), (256, 520)]


def _values(dtype: torch.dtype, shape: tuple[int, int] = (64, 48)) -> torch.Tensor:
    """Random values with the entries a multiply by 0 treats specially: -x (-0.0), inf and NaN (NaN)."""
    values = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    values[0, :4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0], dtype=dtype)
    return values


def _binary_mask(dtype: torch.dtype, shape: tuple[int, int] = (64, 48)) -> torch.Tensor:
    return magnitude_mask(torch.randn(shape, generator=torch.Generator().manual_seed(1)), NMPattern(2, 4)).to(
        dtype
    )


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_a_byte_mask_gives_the_float_masks_products_bit_for_bit(
    dtype: torch.dtype, shape: tuple[int, int]
) -> None:
    values, mask = _values(dtype, shape), _binary_mask(dtype, shape)
    compact = byte_mask(mask)

    assert compact.dtype == torch.uint8 and compact.numel() == mask.numel()
    assert _same_bits(torch.ops.lbc_sparsity.apply_mask(values, compact), values * mask)
    assert _same_bits(torch.ops.lbc_sparsity.apply_mask(values, mask), values * mask)


def test_a_mask_that_bytes_cannot_hold_is_applied_as_it_is() -> None:
    values = _values(torch.float32)
    for odd in (0.5, -0.0):  # not 0/1, and a zero whose sign a byte would lose
        mask = _binary_mask(torch.float32)
        mask[3, 5] = odd
        assert byte_mask(mask) is mask
        assert _same_bits(torch.ops.lbc_sparsity.apply_mask(values, byte_mask(mask)), values * mask)


def test_apply_mask_names_what_it_cannot_take() -> None:
    values = torch.randn(4, 8)
    with pytest.raises(RuntimeError, match=r"mask has dtype Int; it must be the weight's \(Float\) or uint8"):
        torch.ops.lbc_sparsity.apply_mask(values, torch.ones(4, 8, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="mask has shape"):
        torch.ops.lbc_sparsity.apply_mask(values, torch.ones(8, 4, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="supports float32 and float64 weights, got BFloat16"):
        torch.ops.lbc_sparsity.apply_mask(values.bfloat16(), torch.ones(4, 8, dtype=torch.uint8))


def test_the_kernel_mask_is_rebuilt_only_when_the_buffer_changes() -> None:
    mask = torch.ones(8, 8)
    kernel = KernelMask()
    assert kernel(mask) is None  # all ones: nothing to apply

    mask[0, :2] = 0.0
    first = kernel(mask)
    assert first is not None and torch.equal(first, mask.to(torch.uint8))
    assert kernel(mask) is first  # unchanged buffer: the same copy

    mask.copy_(torch.ones(8, 8))
    mask[1, :2] = 0.0
    second = kernel(mask)
    assert second is not first and torch.equal(second, mask.to(torch.uint8))
    assert torch.equal(first[0, :2], torch.zeros(2, dtype=torch.uint8))  # the old copy is untouched


def test_a_backward_after_the_scores_froze_only_masks_the_gradient() -> None:
    weight = torch.randn(8, 16)
    layer = LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel="fused")
    layer.remove(2)
    layer.lr = 0.1
    w = weight.clone().requires_grad_(True)
    out = layer(w)
    layer.scores_trainable = False  # the last removal happened between forward and backward
    scores = layer.score.clone()

    grad = torch.randn(8, 16)
    out.backward(grad)
    assert w.grad is not None
    assert _same_bits(w.grad, grad * layer.mask)
    assert torch.equal(layer.score, scores) and int(layer.score_steps) == 0


def test_a_removal_during_a_backward_in_flight_masks_with_the_forwards_mask() -> None:
    # The byte copy saved by the forward pass is not the buffer a removal rewrites.
    weight = torch.randn(8, 16)
    layer = LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel="fused")
    layer.remove(3)
    layer.lr = 0.1
    w = weight.clone().requires_grad_(True)
    out = layer(w)
    forward_mask = layer.mask.clone()
    layer.remove(1)
    assert not torch.equal(layer.mask, forward_mask)

    grad = torch.randn(8, 16)
    out.backward(grad)
    assert w.grad is not None
    assert torch.equal(w.grad, grad * forward_mask)


def test_a_replaced_mask_buffer_is_read_again_at_the_same_address_and_version() -> None:
    # Two tensors over one numpy buffer: same address, each at version 0, as a new buffer allocated where
    # a freed one was would be. Only the tensor's identity tells them apart.
    memory = np.ones((4, 8), dtype=np.float32)
    kernel = KernelMask()
    first = torch.from_numpy(memory)
    assert kernel(first) is None
    memory[0, :2] = 0.0
    second = torch.from_numpy(memory)
    assert (second.data_ptr(), second._version) == (first.data_ptr(), first._version)
    compact = kernel(second)
    assert compact is not None and torch.equal(compact, second.to(torch.uint8))


def test_a_layer_with_a_kernel_mask_pickles_and_rebuilds_it() -> None:
    weight = torch.randn(8, 16)
    layer = LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel="fused")
    layer.remove(1)
    assert layer.kernel_mask() is not None

    restored = pickle.loads(pickle.dumps(layer))
    compact = restored.kernel_mask()
    assert compact is not None and torch.equal(compact, restored.mask.to(torch.uint8))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_fused_backward_masks_the_gradient_with_a_byte_mask_as_with_the_float_mask(
    shape: tuple[int, int],
) -> None:
    weight, grad, mask = (
        _values(torch.float32, shape).nan_to_num(),
        _values(torch.float32, shape),
        _binary_mask(torch.float32, shape),
    )
    outputs = {}
    for name, kernel_mask in (("float", mask), ("bytes", byte_mask(mask))):
        score, momentum, out = torch.zeros(shape), torch.zeros(shape), torch.empty(shape)
        torch.ops.lbc_sparsity.sgd_step(
            weight, grad, score, momentum, kernel_mask, out, 0.1, 0.9, 0.0, 5e-4, False, True
        )
        outputs[name] = (out, score, momentum)
    for ours, reference in zip(outputs["bytes"], outputs["float"], strict=True):
        assert _same_bits(ours, reference)
    assert _same_bits(outputs["bytes"][0], grad * mask)
