"""N:M patterns (keep-N semantics), combination tables and the group layout of weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lbc_core.sparsity import (
    NMPattern,
    PatternError,
    count_violations,
    from_groups,
    is_24_compliant_tensor,
    is_nm_sparse,
    magnitude_mask,
    to_groups,
)

# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (1, 4), (2, 8), (4, 8), (1, 16), (15, 16), (3, 7)])
def test_valid_patterns_keep_n_of_m(n: int, m: int) -> None:
    pattern = NMPattern(n, m)
    assert (pattern.n, pattern.m) == (n, m)
    assert str(pattern) == f"{n}:{m}"
    assert pattern.density == pytest.approx(n / m)


@pytest.mark.parametrize(("n", "m"), [(4, 4), (5, 4), (8, 8), (16, 16)])
def test_n_must_be_smaller_than_m_because_n_counts_kept_weights(n: int, m: int) -> None:
    with pytest.raises(PatternError, match="1 <= N < M"):
        NMPattern(n, m)


@pytest.mark.parametrize("n", [0, -1])
def test_n_must_keep_at_least_one_weight(n: int) -> None:
    with pytest.raises(PatternError, match="1 <= N < M"):
        NMPattern(n, 4)


@pytest.mark.parametrize("m", [17, 32])
def test_m_above_16_is_unsupported(m: int) -> None:
    with pytest.raises(PatternError, match="M must be between 2 and 16"):
        NMPattern(1, m)


@pytest.mark.parametrize("m", [1, 0, -4])
def test_m_below_2_is_unsupported(m: int) -> None:
    with pytest.raises(PatternError, match="M must be between 2 and 16"):
        NMPattern(1, m)


@pytest.mark.parametrize(("n", "m"), [(2.0, 4), (2, 4.0), ("2", 4), (2, "4"), (None, 4)])
def test_non_integer_n_or_m_is_rejected(n: object, m: object) -> None:
    with pytest.raises(PatternError, match="integers"):
        NMPattern(n, m)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "m"), [(True, 4), (1, True), (True, False)])
def test_bools_are_not_accepted_as_integers(n: object, m: object) -> None:
    with pytest.raises(PatternError, match="integers"):
        NMPattern(n, m)  # type: ignore[arg-type]


def test_pattern_error_is_a_value_error() -> None:
    assert issubclass(PatternError, ValueError)


@pytest.mark.parametrize(("text", "expected"), [("2:4", (2, 4)), (" 1:16 ", (1, 16)), ("4 : 8", (4, 8))])
def test_parse_reads_n_colon_m(text: str, expected: tuple[int, int]) -> None:
    pattern = NMPattern.parse(text)
    assert (pattern.n, pattern.m) == expected
    assert pattern == NMPattern(*expected)


@pytest.mark.parametrize(
    "text", ["", "2", "2:4:8", "2/4", "a:b", "2:", ":4", "-1:4", "2.0:4", "2:4x", "²:4", "2:4²"]
)
def test_parse_rejects_garbage_with_a_message_showing_the_expected_form(text: str) -> None:
    with pytest.raises(PatternError, match=r"must look like 'N:M' \(e\.g\. '2:4'\)") as info:
        NMPattern.parse(text)
    assert repr(text) in str(info.value)


def test_parse_of_well_formed_but_invalid_pattern_raises_the_validation_error() -> None:
    with pytest.raises(PatternError, match="1 <= N < M"):
        NMPattern.parse("4:4")
    with pytest.raises(PatternError, match="M must be between"):
        NMPattern.parse("1:32")


# ---------------------------------------------------------------------------------------------
# Combinations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "c"), [("2:4", 6), ("1:4", 4), ("2:8", 28), ("4:8", 70), ("1:16", 16), ("2:16", 120), ("1:2", 2)]
)
def test_num_combinations_is_m_choose_n(text: str, c: int) -> None:
    assert NMPattern.parse(text).num_combinations == c


@pytest.mark.parametrize(
    ("text", "k"), [("2:4", 3), ("1:4", 1), ("2:8", 7), ("4:8", 35), ("1:16", 1), ("2:16", 15)]
)
def test_each_weight_belongs_to_m_minus_1_choose_n_minus_1_combinations(text: str, k: int) -> None:
    assert NMPattern.parse(text).combinations_per_weight == k


def test_combination_table_of_2_4_lists_the_six_pairs_in_lexicographic_order() -> None:
    table = NMPattern(2, 4).combination_table()
    expected = torch.tensor(
        [
            [1, 1, 0, 0],
            [1, 0, 1, 0],
            [1, 0, 0, 1],
            [0, 1, 1, 0],
            [0, 1, 0, 1],
            [0, 0, 1, 1],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(table, expected)


@pytest.mark.parametrize("text", ["2:4", "1:4", "2:8", "4:8", "1:16", "2:16", "3:7"])
def test_combination_table_rows_are_lexicographic_with_n_ones_and_balanced_columns(text: str) -> None:
    pattern = NMPattern.parse(text)
    table = pattern.combination_table()
    assert table.shape == (pattern.num_combinations, pattern.m)
    assert set(table.unique().tolist()) <= {0.0, 1.0}
    rows = [tuple(int(i) for i in torch.nonzero(row).flatten()) for row in table]
    assert rows == list(itertools.combinations(range(pattern.m), pattern.n))
    assert rows == sorted(rows)
    assert torch.all(table.sum(dim=1) == pattern.n)
    assert torch.all(table.sum(dim=0) == math.comb(pattern.m - 1, pattern.n - 1))
    assert torch.all(table.sum(dim=0) == pattern.combinations_per_weight)


# ---------------------------------------------------------------------------------------------
# 2:4 compliance of patterns
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2:4", "1:4", "2:8", "1:8", "1:16", "2:16", "1:2"])
def test_patterns_with_at_most_two_kept_per_aligned_block_of_4_are_24_compliant(text: str) -> None:
    assert NMPattern.parse(text).is_24_compliant


@pytest.mark.parametrize("text", ["4:8", "3:8", "3:4", "3:16", "2:6"])
def test_patterns_that_can_keep_three_or_more_of_an_aligned_block_of_4_are_not_24_compliant(
    text: str,
) -> None:
    assert not NMPattern.parse(text).is_24_compliant


# ---------------------------------------------------------------------------------------------
# Group layout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "m"), [((8, 16), 4), ((3, 32), 8), ((5, 16), 16), ((2, 6), 2)])
def test_linear_groups_are_m_consecutive_input_features_of_one_output_row(
    shape: tuple[int, int], m: int
) -> None:
    out, cin = shape
    weight = torch.arange(out * cin, dtype=torch.float32).reshape(shape)
    groups = to_groups(weight, m)
    assert groups.shape == (out * cin // m, m)
    for g in range(groups.shape[0]):
        row, first = divmod(g * m, cin)
        assert torch.equal(groups[g], weight[row, first : first + m])
    assert torch.equal(from_groups(groups, weight.shape), weight)


def test_conv_groups_run_along_input_channels_in_channels_last_order() -> None:
    out, cin, kh, kw, m = 3, 8, 2, 3, 4
    # Each value encodes its own index: o*1000 + c*100 + h*10 + w.
    o, c, h, w = torch.meshgrid(
        torch.arange(out), torch.arange(cin), torch.arange(kh), torch.arange(kw), indexing="ij"
    )
    weight = (o * 1000 + c * 100 + h * 10 + w).float()
    groups = to_groups(weight, m)
    assert groups.shape == (out * kh * kw * cin // m, m)
    g = 0
    # Groups enumerate (out, kh, kw) positions, then blocks of M channels, in channels-last order.
    for oo in range(out):
        for hh in range(kh):
            for ww in range(kw):
                for block in range(cin // m):
                    expected = torch.tensor(
                        [oo * 1000 + (block * m + j) * 100 + hh * 10 + ww for j in range(m)],
                        dtype=torch.float32,
                    )
                    assert torch.equal(groups[g], expected), (oo, hh, ww, block)
                    g += 1
    assert g == groups.shape[0]


@pytest.mark.parametrize(("shape", "m"), [((4, 8, 3, 3), 4), ((2, 16, 1, 1), 16), ((3, 6, 5, 2), 2)])
def test_conv_groups_round_trip_to_the_original_weight(shape: tuple[int, ...], m: int) -> None:
    weight = torch.randn(shape)
    restored = from_groups(to_groups(weight, m), weight.shape)
    assert restored.shape == weight.shape
    assert torch.equal(restored, weight)


def test_from_groups_accepts_a_plain_tuple_shape() -> None:
    weight = torch.randn(2, 8, 3, 3)
    assert torch.equal(from_groups(to_groups(weight, 4), (2, 8, 3, 3)), weight)


def test_to_groups_rejects_linear_whose_input_features_are_not_a_multiple_of_m() -> None:
    with pytest.raises(PatternError, match=r"input features 6 are not divisible by M=4"):
        to_groups(torch.zeros(4, 6), 4)


def test_to_groups_rejects_conv_whose_input_channels_are_not_a_multiple_of_m() -> None:
    # 3 input channels times 4 spatial positions is 12, divisible by 4, but groups never cross positions.
    with pytest.raises(PatternError, match=r"input channels 3 are not divisible by M=4"):
        to_groups(torch.zeros(2, 3, 2, 2), 4)


@pytest.mark.parametrize("shape", [(16,), (2, 4, 8), (1, 2, 4, 4, 4)])
def test_to_groups_rejects_tensors_that_are_neither_linear_nor_conv2d(shape: tuple[int, ...]) -> None:
    with pytest.raises(PatternError, match=r"only 2-D .* and 4-D .* weights are supported"):
        to_groups(torch.zeros(shape), 4)
    with pytest.raises(PatternError, match=r"only 2-D .* and 4-D .* weights are supported"):
        from_groups(torch.zeros(8, 4), shape)


# ---------------------------------------------------------------------------------------------
# Magnitude masks
# ---------------------------------------------------------------------------------------------


def test_magnitude_mask_keeps_the_n_largest_absolute_values_of_each_group() -> None:
    weight = torch.tensor([[0.1, -5.0, 3.0, 0.2, 7.0, -8.0, 0.0, 1.0]])
    mask = magnitude_mask(weight, NMPattern(2, 4))
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[False, True, True, False, True, True, False, False]]
    mask_1_4 = magnitude_mask(weight, NMPattern(1, 4))
    assert mask_1_4.tolist() == [[False, True, False, False, False, True, False, False]]


@pytest.mark.parametrize("text", ["2:4", "1:4", "2:8", "4:8", "1:16"])
def test_magnitude_mask_matches_an_independent_topn_on_random_conv_weights(text: str) -> None:
    pattern = NMPattern.parse(text)
    torch.manual_seed(0)
    weight = torch.randn(4, 16, 3, 3)
    mask = magnitude_mask(weight, pattern)
    assert mask.shape == weight.shape
    # Independent check: in (out, kh, kw, in) layout, every M-block of channels keeps its N largest |w|.
    cl_weight = weight.permute(0, 2, 3, 1)
    cl_mask = mask.permute(0, 2, 3, 1)
    for idx in itertools.product(range(4), range(3), range(3)):
        for block in range(16 // pattern.m):
            seg = cl_weight[idx][block * pattern.m : (block + 1) * pattern.m].abs()
            kept = cl_mask[idx][block * pattern.m : (block + 1) * pattern.m]
            assert int(kept.sum()) == pattern.n
            assert seg[kept].min() >= seg[~kept].max()


def test_magnitude_mask_breaks_ties_toward_the_lowest_index_deterministically() -> None:
    weight = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 2.0, 1.0, 1.0, 1.0]])
    for _ in range(3):
        mask = magnitude_mask(weight, NMPattern(2, 4))
        assert mask.tolist() == [
            [True, True, False, False, True, True, False, False, True, True, False, False]
        ]


def test_magnitude_mask_does_not_track_gradients_or_modify_the_weight() -> None:
    weight = torch.randn(4, 8, requires_grad=True)
    before = weight.detach().clone()
    mask = magnitude_mask(weight, NMPattern(2, 4))
    assert not mask.requires_grad
    assert torch.equal(weight.detach(), before)


# ---------------------------------------------------------------------------------------------
# Checkers
# ---------------------------------------------------------------------------------------------


def test_count_violations_counts_groups_with_more_than_n_nonzeros() -> None:
    weight = torch.tensor(
        [
            [1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, 0.0],  # 2:4 groups: ok, violation
            [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0],  # 2:4 groups: ok, violation
        ]
    )
    pattern = NMPattern(2, 4)
    assert count_violations(weight, pattern) == 2
    assert not is_nm_sparse(weight, pattern)
    assert count_violations(weight, NMPattern(3, 4)) == 1
    # 1:2 groups: [1,0] [2,0] [1,1] [1,0] / [0,0] [0,0] [1,2] [3,4] -> three violations
    assert count_violations(weight, NMPattern(1, 2)) == 3


def test_is_nm_sparse_accepts_exactly_n_and_fewer_nonzeros_per_group() -> None:
    weight = torch.tensor([[0.5, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0]])
    assert is_nm_sparse(weight, NMPattern(2, 4))
    assert count_violations(weight, NMPattern(2, 4)) == 0
    assert not is_nm_sparse(weight, NMPattern(1, 4))


def test_is_nm_sparse_checks_conv_groups_along_input_channels_not_along_memory_order() -> None:
    # Channel c at spatial position (0, 0) is non-zero for all 4 channels of one block: a violation,
    # even though in memory (out, in, kh, kw) order those values are kh*kw apart.
    weight = torch.zeros(1, 4, 2, 2)
    weight[0, :, 0, 0] = 1.0
    assert count_violations(weight, NMPattern(2, 4)) == 1
    # The same number of non-zeros spread over spatial positions of one channel is fine.
    spread = torch.zeros(1, 4, 2, 2)
    spread[0, 0, :, :] = 1.0
    assert is_nm_sparse(spread, NMPattern(1, 4))


def test_is_24_compliant_tensor_checks_aligned_blocks_of_4_along_the_reduction_dimension() -> None:
    # 2:8 with both kept weights in one half of the group is still 2:4 compliant.
    ok = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert is_24_compliant_tensor(ok)
    # 4:8-sparse but not 2:4 compliant.
    bad = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert is_nm_sparse(bad, NMPattern(4, 8))
    assert not is_24_compliant_tensor(bad)
    conv = torch.zeros(2, 8, 3, 3)
    conv[:, 0:2] = 1.0
    conv[:, 5] = 1.0
    assert is_24_compliant_tensor(conv)
    conv[1, 2, 2, 2] = 1.0  # a third kept channel in block 0..3 at one (out, kh, kw) position
    assert not is_24_compliant_tensor(conv)


@pytest.mark.parametrize("shape", [(4, 6), (2, 6, 3, 3), (8,), (2, 4, 4)])
def test_is_24_compliant_tensor_is_false_for_shapes_without_aligned_blocks_of_4(
    shape: tuple[int, ...],
) -> None:
    assert not is_24_compliant_tensor(torch.zeros(shape))


def test_a_transposed_in_out_weight_is_grouped_along_its_input_dimension() -> None:
    from lbc_core.sparsity.pattern import IN_OUT, from_groups, group_direction, magnitude_mask, to_groups

    linear = torch.randn(6, 8)  # [out, in]
    conv1d = linear.t().contiguous()  # the same layer stored as transformers' Conv1D: [in, out]
    assert torch.equal(to_groups(conv1d, 4, IN_OUT), to_groups(linear, 4))
    assert torch.equal(from_groups(to_groups(conv1d, 4, IN_OUT), conv1d.shape, IN_OUT), conv1d)
    assert torch.equal(
        magnitude_mask(conv1d, NMPattern(2, 4), IN_OUT), magnitude_mask(linear, NMPattern(2, 4)).t()
    )
    assert "(in, out)" in group_direction(conv1d.shape, IN_OUT)
    with pytest.raises(PatternError, match="input features 6 are not divisible by M=4"):
        to_groups(torch.randn(6, 8), 4, IN_OUT)
