"""The CPU N:M kernel's packed weight: kept values plus bit-packed in-group positions, row-block interleaved.

A weight ``[out, in]`` (``in`` the reduction dimension, groups of M consecutive inputs) is cut into blocks
of 16 output rows (the last block padded with zero rows). Per block and group:

- ``values [blocks, groups, N, 16]``: the k-th kept value of each of the 16 rows, so one vector load
  feeds 16 (AVX-512) or 2 x 8 (AVX2) output rows;
- ``codes [blocks, groups, bytes]`` uint8: either N records of 16 positions of ``ceil(log2 M)`` bits
  (2 bits for M=4, 3 for M=8, 4 for M=16), or, where smaller, one record of 16 bitmasks of 4, 8 or 16
  bits (4:8 takes 8 mask bits per group against 4 x 3 index bits). A record packs lane l's field at bits
  ``[l * width, (l + 1) * width)``, little-endian.

The packed operand is made from the compressed N:M export's ``values``/``indices`` (the kept values in
ascending position, padded with zeros at unused positions), so what is exported is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from lbc_core.export.compressed import compress_weight
from lbc_core.export.errors import ExportError
from lbc_core.sparsity import NMPattern

LANES = 16  # rows per block; nm_block.h's kLanes
DTYPES = (torch.float32, torch.bfloat16)
MASK_WIDTHS = (4, 8, 16)


class PackingError(ValueError):
    """A weight that cannot be packed for the N:M kernel; the message names the problem."""


@dataclass(frozen=True)
class CodeFormat:
    bitmask: bool
    bits: int  # per position (index records) or per mask (bitmask record)

    def bytes_per_group(self, n: int) -> int:
        return 2 * self.bits if self.bitmask else n * 2 * self.bits


def code_format(pattern: NMPattern) -> CodeFormat:
    """Index records of ceil(log2 M) bits, or a bitmask where that takes fewer bits per group."""
    index_bits = max(1, (pattern.m - 1).bit_length())
    mask_bits = next(w for w in MASK_WIDTHS if w >= pattern.m)
    if mask_bits < pattern.n * index_bits:
        return CodeFormat(bitmask=True, bits=mask_bits)
    return CodeFormat(bitmask=False, bits=index_bits)


@dataclass(frozen=True, eq=False)
class PackedNM:
    values: torch.Tensor  # [blocks, groups, n, 16], float32 or bfloat16
    codes: torch.Tensor  # [blocks, groups, bytes] uint8
    out_features: int
    in_features: int
    pattern: NMPattern
    code: CodeFormat

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        """Bytes the kernel streams per call (values plus codes, padding rows included)."""
        return self.values.numel() * self.values.element_size() + self.codes.numel()

    def clone(self) -> PackedNM:
        """A copy with its own storage (benchmarks cycle through copies so each call reads from DRAM)."""
        return replace(self, values=self.values.clone(), codes=self.codes.clone())


def _pack_fields(fields: torch.Tensor, width: int) -> torch.Tensor:
    """``[..., 16]`` integers below 2**width -> ``[..., 2 * width]`` bytes (lane l at bits l*width..)."""
    shifts = torch.arange(width, dtype=torch.int64)
    bits = (fields.to(torch.int64).unsqueeze(-1) >> shifts) & 1  # [..., 16, width]
    bits = bits.reshape(*fields.shape[:-1], 2 * width, 8)
    return (bits << torch.arange(8, dtype=torch.int64)).sum(-1).to(torch.uint8)


def _unpack_fields(records: torch.Tensor, width: int) -> torch.Tensor:
    bits = (records.to(torch.int64).unsqueeze(-1) >> torch.arange(8, dtype=torch.int64)) & 1
    bits = bits.reshape(*records.shape[:-1], LANES, width)
    return (bits << torch.arange(width, dtype=torch.int64)).sum(-1)


def pack_compressed(
    values: torch.Tensor,
    indices: torch.Tensor,
    out_features: int,
    in_features: int,
    pattern: NMPattern,
) -> PackedNM:
    """Pack the compressed form (``values``/``indices`` ``[out * in / M, N]``, groups along ``in``)."""
    n, m = pattern.n, pattern.m
    if values.dtype not in DTYPES:
        raise PackingError(f"the N:M kernel takes float32 or bfloat16 weights, not {values.dtype}")
    if in_features % m:
        raise PackingError(f"input features {in_features} are not divisible by M={m} ({pattern})")
    groups = in_features // m
    expected = (out_features * groups, n)
    if tuple(values.shape) != expected or tuple(indices.shape) != expected:
        raise PackingError(
            f"values {tuple(values.shape)} / indices {tuple(indices.shape)} do not match a "
            f"[{out_features}, {in_features}] weight under {pattern} (expected {expected})"
        )
    blocks = -(-out_features // LANES)
    pad = blocks * LANES - out_features
    vals = values.detach().cpu().reshape(out_features, groups, n)
    idx = indices.detach().cpu().to(torch.int64).reshape(out_features, groups, n)
    if pad:
        vals = torch.cat([vals, vals.new_zeros(pad, groups, n)])
        # Padding rows keep positions 0..N-1 with zero values: distinct, ascending, N bits in a mask.
        idx = torch.cat([idx, torch.arange(n, dtype=torch.int64).expand(pad, groups, n)])
    # [blocks, 16, groups, n] -> [blocks, groups, n, 16]: a vector load reads one k of 16 rows.
    vals = vals.reshape(blocks, LANES, groups, n).permute(0, 2, 3, 1).contiguous()
    idx = idx.reshape(blocks, LANES, groups, n).permute(0, 2, 3, 1)
    fmt = code_format(pattern)
    if fmt.bitmask:
        masks = (torch.ones((), dtype=torch.int64) << idx).sum(dim=2)  # [blocks, groups, 16]
        codes = _pack_fields(masks, fmt.bits)
    else:
        codes = _pack_fields(idx, fmt.bits).reshape(blocks, groups, n * 2 * fmt.bits)
    return PackedNM(vals, codes.contiguous(), out_features, in_features, pattern, fmt)


def pack_weight(weight: torch.Tensor, pattern: NMPattern, name: str = "weight") -> PackedNM:
    """Pack an N:M-sparse ``[out, in]`` weight (``in`` the reduction dimension) as the export compresses it."""
    if weight.dim() != 2:
        raise PackingError(f"{name}: the N:M kernel packs 2-D [out, in] weights, got {tuple(weight.shape)}")
    try:
        values, indices = compress_weight(weight, pattern, name)
    except ExportError as exc:
        raise PackingError(str(exc)) from exc
    return pack_compressed(values, indices, weight.shape[0], weight.shape[1], pattern)


def unpack(packed: PackedNM) -> torch.Tensor:
    """The dense ``[out, in]`` weight back (pruned positions are +0.0)."""
    n, m = packed.pattern.n, packed.pattern.m
    blocks, groups = packed.values.shape[:2]
    if packed.code.bitmask:
        masks = _unpack_fields(packed.codes, packed.code.bits)  # [blocks, groups, 16]
        kept = (masks.unsqueeze(-1) >> torch.arange(m)) & 1  # [blocks, groups, 16, m]
        # The k-th set bit is the k-th value: rank positions by (not kept, position), take the first n.
        order = torch.sort((1 - kept) * m + torch.arange(m), dim=-1).indices[..., :n]
        idx = order.permute(0, 1, 3, 2)  # [blocks, groups, n, 16]
    else:
        records = packed.codes.reshape(blocks, groups, n, 2 * packed.code.bits)
        idx = _unpack_fields(records, packed.code.bits)
    dense = torch.zeros(blocks, groups, m, LANES, dtype=packed.values.dtype)
    dense.scatter_(2, idx, packed.values)
    weight = dense.permute(0, 3, 1, 2).reshape(blocks * LANES, groups * m)
    return weight[: packed.out_features].contiguous()


def reference_linear(x: torch.Tensor, packed: PackedNM, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The kernel's result in pure PyTorch (the path used where the native library cannot be built):
    unpacks the weight on every call, so it is correct but not fast."""
    return F.linear(x, unpack(packed), bias)
