"""2:4 compliance of actual weights, and the explanation a non-compliant pattern gets."""

from __future__ import annotations

import torch

from lbc_core.benchmark import (
    check_24_compliance,
    compliant_alternatives,
    max_kept_per_block,
    pattern_explanation,
)
from lbc_core.sparsity import NMPattern, magnitude_mask
from lbc_core.sparsity.pattern import CONV_OUT_IN_KH_KW, IN_OUT, OUT_IN


def _weight(rows: int, row_pattern: list[int]) -> torch.Tensor:
    """A ``(rows, len(row_pattern))`` weight whose every row is non-zero exactly where ``row_pattern`` is 1."""
    return torch.tensor([row_pattern] * rows, dtype=torch.float32) * 0.5


def test_hand_built_2_4_weight_is_compliant() -> None:
    weight = _weight(4, [1, 1, 0, 0, 0, 1, 0, 1])
    result = check_24_compliance(weight, NMPattern(2, 4))
    assert result.compliant and result.pattern_guarantees
    assert (result.blocks, result.violating_blocks) == (8, 0)
    assert "at most 2 non-zeros" in result.explanation


def test_hand_built_1_4_weight_is_compliant_at_2_4_speed() -> None:
    result = check_24_compliance(_weight(2, [0, 0, 1, 0, 1, 0, 0, 0]), NMPattern(1, 4))
    assert result.compliant and result.pattern_guarantees
    assert "at 2:4 speed" in result.explanation


def test_hand_built_4_8_weight_is_not_compliant_and_says_what_it_takes() -> None:
    # 4:8 may keep all 4 of one aligned block of 4: first row breaks 2:4, second is fine by chance.
    weight = torch.stack([torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]), torch.tensor([1.0, 1, 0, 0, 1, 1, 0, 0])])
    result = check_24_compliance(weight, NMPattern(4, 8))
    assert not result.compliant and not result.pattern_guarantees
    assert (result.blocks, result.violating_blocks) == (4, 1)
    assert result.explanation == (
        "not 2:4-compliant: 1 of 4 aligned blocks of 4 hold more than 2 non-zeros; 4:8 keeps up to 4 in an "
        "aligned block of 4; needs 2:4, 1:4, 2:8, 1:8 or another pattern with at most 2 kept per block of 4 "
        "to run on sparse tensor cores"
    )


def test_4_8_weight_that_happens_to_comply_is_marked_as_chance() -> None:
    result = check_24_compliance(_weight(2, [1, 1, 0, 0, 0, 0, 1, 1]), NMPattern(4, 8))
    assert result.compliant and not result.pattern_guarantees
    assert result.explanation.startswith("2:4-compliant by chance")


def test_a_dense_weight_under_a_compliant_pattern_is_flagged() -> None:
    result = check_24_compliance(torch.ones(4, 8), NMPattern(2, 4))
    assert not result.compliant
    assert result.violating_blocks == 8
    assert "not (or no longer) 2:4 sparse" in result.explanation


def test_conv_blocks_run_along_input_channels() -> None:
    weight = torch.zeros(2, 8, 3, 3)
    weight[:, :2] = 1.0  # two kept channels in the first block of 4 channels at every (out, kh, kw)
    assert check_24_compliance(weight).compliant
    weight[:, 2] = 1.0  # three in the first block now
    result = check_24_compliance(weight)
    assert not result.compliant
    assert (result.blocks, result.violating_blocks) == (2 * 9 * 2, 2 * 9)


def _conv1d_weight_24_along(dim: int) -> torch.Tensor:
    """A transformers Conv1D weight ``[in=8, out=12]`` that is 2:4 along ``dim`` only (magnitude masked)."""
    weight = torch.randn(8, 12, generator=torch.Generator().manual_seed(0))
    layout = IN_OUT if dim == 0 else OUT_IN  # OUT_IN groups a 2-D weight along dim 1
    return weight * magnitude_mask(weight, NMPattern(2, 4), layout)


def test_a_conv1d_weight_is_checked_along_its_input_dimension_dim_0() -> None:
    along_inputs = _conv1d_weight_24_along(0)
    result = check_24_compliance(along_inputs, NMPattern(2, 4), IN_OUT)
    assert result.compliant and (result.blocks, result.violating_blocks) == (24, 0)
    # Read as if it were [out, in], the same weight breaks 2:4 along its rows: the layout decides.
    assert not check_24_compliance(along_inputs, NMPattern(2, 4)).compliant


def test_a_conv1d_weight_that_is_2_4_only_along_its_outputs_is_not_compliant() -> None:
    along_outputs = _conv1d_weight_24_along(1)
    assert check_24_compliance(along_outputs, NMPattern(2, 4), OUT_IN).compliant
    result = check_24_compliance(along_outputs, NMPattern(2, 4), IN_OUT)
    assert not result.compliant and result.blocks == 24 and result.violating_blocks > 0
    assert "not (or no longer) 2:4 sparse" in result.explanation


def test_a_conv1d_weight_whose_input_dimension_is_not_a_multiple_of_4_cannot_comply() -> None:
    result = check_24_compliance(torch.zeros(6, 8), NMPattern(2, 4), IN_OUT)
    assert not result.compliant and result.blocks == 0
    assert "(6 inputs) is not a multiple of 4" in result.explanation


def test_a_layout_that_does_not_fit_the_weight_is_reported() -> None:
    result = check_24_compliance(torch.zeros(4, 8), NMPattern(2, 4), CONV_OUT_IN_KH_KW)
    assert not result.compliant and result.blocks == 0
    assert result.explanation == "a conv_out_in_kh_kw weight is 4-D, got shape (4, 8)"


def test_reduction_not_a_multiple_of_4_cannot_comply() -> None:
    result = check_24_compliance(torch.zeros(4, 6))
    assert not result.compliant and result.blocks == 0
    assert "not a multiple of 4" in result.explanation


def test_pattern_level_facts() -> None:
    assert [
        max_kept_per_block(NMPattern(n, m)) for n, m in [(2, 4), (1, 4), (2, 8), (4, 8), (1, 2), (3, 16)]
    ] == [
        2,
        1,
        2,
        4,
        2,
        3,
    ]
    assert [str(p) for p in compliant_alternatives(NMPattern(4, 8))] == ["2:4", "1:4", "2:8", "1:8"]
    assert pattern_explanation(NMPattern(2, 4)) == "2:4 is the pattern sparse tensor cores run natively"
    assert "at 2:4 speed" in pattern_explanation(NMPattern(2, 8))
