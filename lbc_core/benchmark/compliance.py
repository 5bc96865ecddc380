"""Whether a layer's actual weight can run on 2:4 sparse tensor cores, and what it would take if not.

Sparse tensor cores need every aligned block of 4 weights along the reduction dimension to hold at most
2 non-zeros. The pattern a layer was trained with decides whether that is guaranteed (1:4, 2:8 always;
4:8 generally not), but only the weight itself decides whether it holds, so both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lbc_core.sparsity import NMPattern, PatternError, to_groups
from lbc_core.sparsity.pattern import reduction_size

BLOCK = 4
MAX_KEPT_PER_BLOCK = 2
HARDWARE_PATTERN = NMPattern(MAX_KEPT_PER_BLOCK, BLOCK)


@dataclass(frozen=True)
class Compliance:
    """2:4 compliance of one weight. ``blocks`` is 0 when the weight cannot be cut into blocks of 4."""

    compliant: bool
    blocks: int
    violating_blocks: int
    pattern_guarantees: bool  # the layer's N:M pattern alone guarantees compliance
    explanation: str


def max_kept_per_block(pattern: NMPattern) -> int:
    """The most weights ``pattern`` may keep in one aligned block of 4 (worst case over alignments)."""
    worst = 0
    # A block of 4 at offset ``start`` overlaps one or two groups of M; each overlap keeps at most
    # min(N, overlap length). Offsets repeat with period lcm(4, M), and 4*M covers it.
    for start in range(0, BLOCK * pattern.m, BLOCK):
        kept, pos, end = 0, start, start + BLOCK
        while pos < end:
            segment_end = min(end, (pos // pattern.m + 1) * pattern.m)
            kept += min(pattern.n, segment_end - pos)
            pos = segment_end
        worst = max(worst, kept)
    return worst


def compliant_alternatives(pattern: NMPattern) -> list[NMPattern]:
    """2:4 (the same 50 % density as the hardware), 1:4, then the compliant patterns with ``pattern``'s M."""
    options = [HARDWARE_PATTERN, NMPattern(1, BLOCK)]
    for n in range(pattern.m - 1, 0, -1):
        candidate = NMPattern(n, pattern.m)
        if candidate.is_24_compliant and candidate not in options:
            options.append(candidate)
    return options


def pattern_explanation(pattern: NMPattern) -> str:
    """One sentence on what ``pattern`` means for 2:4 sparse tensor cores."""
    kept = max_kept_per_block(pattern)
    if pattern == HARDWARE_PATTERN:
        return "2:4 is the pattern sparse tensor cores run natively"
    if pattern.is_24_compliant:
        return (
            f"{pattern} keeps at most {kept} in every aligned block of 4, so it runs on 2:4 kernels, "
            "at 2:4 speed (its extra sparsity brings no extra speedup)"
        )
    alternatives = ", ".join(str(p) for p in compliant_alternatives(pattern))
    return (
        f"{pattern} keeps up to {kept} in an aligned block of 4; needs {alternatives} or another pattern with "
        f"at most {MAX_KEPT_PER_BLOCK} kept per block of 4 to run on sparse tensor cores"
    )


def check_24_compliance(
    weight: torch.Tensor, pattern: NMPattern | None = None, layout: str | None = None
) -> Compliance:
    """2:4 compliance of a layer's weight as it is now, in its ``layout`` (``lbc_core.sparsity.pattern``;
    the layer adapter's or the manifest's ``layout``): Linear ``(out, in)``, transformers' Conv1D
    ``(in, out)`` or Conv2d ``(out, in, kh, kw)``; None means Linear for 2-D weights, Conv2d for 4-D.

    Blocks run along the reduction dimension: input features (a Conv1D's rows, dim 0), or input channels
    at each (out, kh, kw), the same layout as the N:M groups (see :func:`lbc_core.sparsity.to_groups`).
    """
    guarantees = pattern is not None and pattern.is_24_compliant
    about = f" ({pattern_explanation(pattern)})" if pattern is not None else ""
    if weight.dim() not in (2, 4):
        return Compliance(False, 0, 0, guarantees, f"a {weight.dim()}-D weight has no 2:4 layout")
    try:
        reduction = reduction_size(weight.shape, layout)
    except PatternError as exc:  # an unknown layout, or one that does not fit the weight's rank
        return Compliance(False, 0, 0, guarantees, str(exc))
    if reduction % BLOCK:
        return Compliance(
            False,
            0,
            0,
            guarantees,
            f"the reduction dimension ({reduction} inputs) is not a multiple of 4, so it cannot be cut into "
            "the aligned blocks of 4 that 2:4 kernels need",
        )
    blocks = to_groups(weight.detach(), BLOCK, layout)
    total = int(blocks.shape[0])
    violating = int(((blocks != 0).sum(dim=1) > MAX_KEPT_PER_BLOCK).sum())
    if violating == 0:
        if pattern is not None and not guarantees:
            text = f"2:4-compliant by chance: every aligned block of 4 holds at most 2 non-zeros{about}"
        else:
            text = f"every aligned block of 4 holds at most 2 non-zeros{about}"
        return Compliance(True, total, 0, guarantees, text)
    counted = f"{violating} of {total} aligned blocks of 4 hold more than 2 non-zeros"
    if pattern is None:
        text = f"not 2:4-compliant: {counted}"
    elif guarantees:
        text = (
            f"not 2:4-compliant: {counted}, although {pattern} guarantees at most "
            f"{max_kept_per_block(pattern)}; the weight is not (or no longer) {pattern} sparse"
        )
    else:
        text = f"not 2:4-compliant: {counted}; {pattern_explanation(pattern)}"
    return Compliance(False, total, violating, guarantees, text)
