"""The packed format: code widths per pattern, exact round trips, and the export as the packed operand."""

from __future__ import annotations

import pytest
import torch

from lbc_core.export.compressed import compress_weight
from lbc_core.kernels.packing import (
    CodeFormat,
    PackingError,
    code_format,
    pack_compressed,
    pack_weight,
    unpack,
)
from lbc_core.sparsity import NMPattern
from lbc_core.sparsity.pattern import IN_OUT, linear_shape, linear_view

from .conftest import PATTERNS, nm_weight


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("2:4", CodeFormat(bitmask=False, bits=2)),
        ("1:4", CodeFormat(bitmask=False, bits=2)),
        ("2:8", CodeFormat(bitmask=False, bits=3)),
        ("1:16", CodeFormat(bitmask=False, bits=4)),
        ("1:2", CodeFormat(bitmask=False, bits=1)),
        # A bitmask where it takes fewer bits per group than the positions: 8 < 4 x 3, 16 < 8 x 4, 4 < 3 x 2.
        ("4:8", CodeFormat(bitmask=True, bits=8)),
        ("8:16", CodeFormat(bitmask=True, bits=16)),
        ("3:4", CodeFormat(bitmask=True, bits=4)),
        ("3:7", CodeFormat(bitmask=True, bits=8)),
    ],
)
def test_code_format_takes_the_fewest_bits_per_group(pattern: str, expected: CodeFormat) -> None:
    assert code_format(NMPattern.parse(pattern)) == expected


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unpack_gives_the_weight_back_bit_for_bit(pattern: str, dtype: torch.dtype) -> None:
    nm = NMPattern.parse(pattern)
    for out in (1, 16, 37):
        weight = nm_weight(out, nm.m * 5, nm, dtype, seed=out)
        packed = pack_weight(weight, nm)
        assert packed.values.shape == (-(-out // 16), 5, nm.n, 16)
        assert packed.codes.shape == (-(-out // 16), 5, packed.code.bytes_per_group(nm.n))
        restored = unpack(packed)
        assert restored.dtype == dtype
        assert torch.equal(restored, weight)


def test_packed_bytes_are_the_kept_values_plus_the_codes() -> None:
    nm = NMPattern(2, 4)
    packed = pack_weight(nm_weight(4096, 4096, nm, torch.float32), nm)
    dense_bytes = 4096 * 4096 * 4
    # Half the values, plus 2 bits per kept value: 53.1 % of the dense weight.
    assert packed.nbytes == dense_bytes // 2 + 4096 * 2048 * 2 // 8
    assert packed.nbytes / dense_bytes == pytest.approx(0.53125)


def test_the_compressed_export_is_the_packed_operand() -> None:
    nm = NMPattern(2, 8)
    weight = nm_weight(40, 64, nm, torch.float32)
    values, indices = compress_weight(weight, nm)
    from_export = pack_compressed(values, indices, 40, 64, nm)
    direct = pack_weight(weight, nm)
    assert torch.equal(from_export.values, direct.values)
    assert torch.equal(from_export.codes, direct.codes)


def test_an_in_out_layer_packs_from_its_compressed_groups_as_its_out_in_view() -> None:
    # A Conv1D weight is stored [in, out]; the export groups it along rows of its [out, in] view, so its
    # values/indices pack as they are, with out and in read from the stored shape the other way round.
    nm = NMPattern(2, 4)
    out_in = nm_weight(24, 32, nm, torch.float32)
    stored = out_in.t().contiguous()  # [in, out] = [32, 24]
    values, indices = compress_weight(stored, nm, layout=IN_OUT)
    from_export = pack_compressed(values, indices, *linear_shape(stored.shape, IN_OUT), nm)
    direct = pack_weight(linear_view(stored, IN_OUT).contiguous(), nm)
    assert (from_export.out_features, from_export.in_features) == (24, 32)
    assert torch.equal(from_export.values, direct.values)
    assert torch.equal(from_export.codes, direct.codes)
    assert torch.equal(unpack(from_export), out_in)


def test_groups_with_fewer_than_n_nonzeros_pack_and_unpack() -> None:
    nm = NMPattern(4, 8)  # bitmask codes: padding positions must still give exactly N set bits
    weight = nm_weight(16, 32, nm, torch.float32)
    weight[3] = 0.0
    weight[5, :8] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 2.5])
    assert torch.equal(unpack(pack_weight(weight, nm)), weight)


def test_bad_weights_are_refused_with_the_reason() -> None:
    nm = NMPattern(2, 4)
    with pytest.raises(PackingError, match="not divisible by M=4"):
        pack_compressed(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.uint8), 1, 6, nm)
    with pytest.raises(PackingError, match=r"float32 or bfloat16 weights, not torch\.float16"):
        pack_weight(torch.zeros(4, 8, dtype=torch.float16), nm)
    with pytest.raises(PackingError, match="2-D"):
        pack_weight(torch.zeros(4, 8, 1, 1), nm)
    with pytest.raises(PackingError, match="is not 2:4 sparse"):
        pack_weight(torch.ones(4, 8), nm)
