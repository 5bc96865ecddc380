"""N:M patterns (keep-N semantics), their combination tables, and the group layout of weights."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

MAX_M = 16


class PatternError(ValueError):
    """An N:M pattern that cannot exist or that this library does not support."""


@dataclass(frozen=True)
class NMPattern:
    """Keep at most ``n`` non-zero weights in every group of ``m`` consecutive weights.

    ``n`` always counts *kept* weights: 2:4 keeps 2 of 4 (50 % sparsity).
    """

    n: int
    m: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or isinstance(self.m, bool):
            raise PatternError("N and M must be integers")
        if not isinstance(self.n, int) or not isinstance(self.m, int):
            raise PatternError(f"N and M must be integers, got N={self.n!r}, M={self.m!r}")
        if not 2 <= self.m <= MAX_M:
            raise PatternError(f"M must be between 2 and {MAX_M}, got M={self.m}")
        if not 1 <= self.n < self.m:
            raise PatternError(
                f"N must satisfy 1 <= N < M (N counts kept weights per group), got {self.n}:{self.m}"
            )

    @classmethod
    def parse(cls, text: str) -> NMPattern:
        """Parse ``"2:4"``."""
        parts = text.strip().split(":")
        if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts):
            raise PatternError(f"pattern must look like 'N:M' (e.g. '2:4'), got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def num_combinations(self) -> int:
        """C(M, N): the number of ways to keep N of M weights."""
        return math.comb(self.m, self.n)

    @property
    def combinations_per_weight(self) -> int:
        """C(M-1, N-1): how many combinations contain a given position."""
        return math.comb(self.m - 1, self.n - 1)

    @property
    def is_24_compliant(self) -> bool:
        """Whether every aligned block of 4 is guaranteed to hold at most 2 kept weights.

        Such patterns run on 2:4 sparse tensor-core kernels (without extra speed beyond 2:4).
        """
        # Worst case over every alignment of a 4-block against the groups: each group segment the
        # block covers can hold min(N, segment length) kept weights.
        for start in range(0, 4 * self.m, 4):
            kept, pos, end = 0, start, start + 4
            while pos < end:
                segment_end = min(end, (pos // self.m + 1) * self.m)
                kept += min(self.n, segment_end - pos)
                pos = segment_end
            if kept > 2:
                return False
        return True

    def combination_table(self, device: torch.device | None = None) -> torch.Tensor:
        """``[C, M]`` 0/1 table; row ``c`` marks combination ``c`` in lexicographic order."""
        combos = list(itertools.combinations(range(self.m), self.n))
        table = torch.zeros(len(combos), self.m, dtype=torch.float32, device=device)
        for row, combo in enumerate(combos):
            table[row, list(combo)] = 1.0
        return table


# How a weight stores its reduction (input) dimension; groups always run along it.
OUT_IN = "out_in"  # nn.Linear: [out, in]
IN_OUT = "in_out"  # transformers' Conv1D (GPT-2): [in, out]
CONV_OUT_IN_KH_KW = "conv_out_in_kh_kw"  # nn.Conv2d: [out, in, kh, kw]
LAYOUTS = (OUT_IN, IN_OUT, CONV_OUT_IN_KH_KW)


def default_layout(weight_shape: torch.Size | tuple[int, ...]) -> str:
    """The layout of a plain Linear (2-D) or Conv2d (4-D) weight of this shape."""
    if len(weight_shape) == 2:
        return OUT_IN
    if len(weight_shape) == 4:
        return CONV_OUT_IN_KH_KW
    raise PatternError(
        f"only 2-D (Linear) and 4-D (Conv2d) weights are supported, got shape {tuple(weight_shape)}"
    )


def _layout(shape: torch.Size | tuple[int, ...], layout: str | None) -> str:
    if layout is None:
        return default_layout(shape)
    if layout not in LAYOUTS:
        raise PatternError(f"unknown weight layout {layout!r}; known: {', '.join(LAYOUTS)}")
    expected = 4 if layout == CONV_OUT_IN_KH_KW else 2
    if len(shape) != expected:
        raise PatternError(f"a {layout} weight is {expected}-D, got shape {tuple(shape)}")
    return layout


def reduction_size(weight_shape: torch.Size | tuple[int, ...], layout: str | None = None) -> int:
    """Length of the reduction (input) dimension, the one N:M groups run along."""
    return int(weight_shape[0] if _layout(weight_shape, layout) == IN_OUT else weight_shape[1])


def linear_shape(weight_shape: torch.Size | tuple[int, ...], layout: str | None = None) -> tuple[int, int]:
    """``(out, in)`` of a 2-D linear-like weight in ``layout``: the shape of its :func:`linear_view`."""
    layout = _layout(weight_shape, layout)
    if layout == CONV_OUT_IN_KH_KW:
        raise PatternError(f"a {layout} weight is not a linear layer's; it has no [out, in] view")
    rows, cols = int(weight_shape[0]), int(weight_shape[1])
    return (cols, rows) if layout == IN_OUT else (rows, cols)


def linear_view(weight: torch.Tensor, layout: str | None = None) -> torch.Tensor:
    """The ``[out, in]`` view of a 2-D linear-like weight (what ``F.linear`` takes): the weight itself for
    ``out_in``, its transpose for ``in_out`` (Conv1D computes ``x @ W``, the same as a Linear holding
    ``W^T``). N:M groups of the layer are M consecutive entries of a row of this view, in every layout."""
    linear_shape(weight.shape, layout)  # refuses Conv2d and malformed weights
    return weight.t() if _layout(weight.shape, layout) == IN_OUT else weight


def group_direction(weight_shape: torch.Size | tuple[int, ...], layout: str | None = None) -> str:
    """Human-readable description of how groups run through a weight of this shape and layout."""
    layout = _layout(weight_shape, layout)
    if layout == OUT_IN:
        return "input features (out, in): M consecutive inputs of one output row"
    if layout == IN_OUT:
        return "input features of a transposed (in, out) weight: M consecutive inputs of one output column"
    return "input channels, (out, kh, kw, in) order: M consecutive channels at one (out, kh, kw)"


def to_groups(weight: torch.Tensor, m: int, layout: str | None = None) -> torch.Tensor:
    """Reshape a weight into ``[G, m]`` groups along its reduction dimension.

    Groups run along the reduction dimension, the one sparse tensor cores need, whatever the layout:
    Linear ``(out, in)`` rows, Conv1D ``(in, out)`` columns (viewed as ``(out, in)``), Conv2d
    ``(out, in, kh, kw)`` viewed channels-last, ``(out, kh, kw, in)``, so a group is ``m`` consecutive
    input channels. Group ``g`` of a layer is the same in every layout's ``(out, ..., in)`` view.
    """
    layout = _layout(weight.shape, layout)
    size = reduction_size(weight.shape, layout)
    if size % m:
        what = "input channels" if layout == CONV_OUT_IN_KH_KW else "input features"
        raise PatternError(f"{what} {size} are not divisible by M={m}")
    if layout == OUT_IN:
        return weight.reshape(-1, m)
    if layout == IN_OUT:
        return weight.t().reshape(-1, m)
    return weight.permute(0, 2, 3, 1).reshape(-1, m)


def from_groups(
    groups: torch.Tensor, shape: torch.Size | tuple[int, ...], layout: str | None = None
) -> torch.Tensor:
    """Inverse of :func:`to_groups`: ``[G, m]`` back to the weight's own shape and layout."""
    layout = _layout(shape, layout)
    if layout == OUT_IN:
        return groups.reshape(shape)
    if layout == IN_OUT:
        rows, cols = shape
        return groups.reshape(cols, rows).t().contiguous()
    out, cin, kh, kw = shape
    return groups.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()


def magnitude_mask(weight: torch.Tensor, pattern: NMPattern, layout: str | None = None) -> torch.Tensor:
    """Boolean mask keeping the ``n`` largest-magnitude weights of every group (ties: lowest index)."""
    groups = to_groups(weight.detach(), pattern.m, layout).abs()
    # A stable sort makes ties deterministic (zeros in a freshly zeroed group, for instance).
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, : pattern.n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True)
    return from_groups(keep, weight.shape, layout)


def count_violations(weight: torch.Tensor, pattern: NMPattern, layout: str | None = None) -> int:
    """Number of groups holding more than ``n`` non-zero weights."""
    nonzero = (to_groups(weight.detach(), pattern.m, layout) != 0).sum(dim=1)
    return int((nonzero > pattern.n).sum())


def is_nm_sparse(weight: torch.Tensor, pattern: NMPattern, layout: str | None = None) -> bool:
    """Exact check: every group of ``m`` along the reduction dimension has at most ``n`` non-zeros."""
    return count_violations(weight, pattern, layout) == 0


def is_24_compliant_tensor(weight: torch.Tensor, layout: str | None = None) -> bool:
    """Whether every aligned block of 4 along the reduction dimension (of ``layout``) holds at most 2
    non-zeros."""
    if weight.dim() not in (2, 4):
        return False
    try:
        return is_nm_sparse(weight, NMPattern(2, 4), layout)
    except PatternError:  # the reduction dimension is not a multiple of 4, or the layout does not fit
        return False
