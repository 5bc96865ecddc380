"""N:M sparsity methods (LBC and baselines) behind one optimizer-like lifecycle."""

from __future__ import annotations

from dataclasses import dataclass, field

from lbc_core.sparsity.base import (
    KEEP_N_SEMANTICS,
    LayerResult,
    MaskedWeight,
    Sparsifier,
    SparsifierStateError,
    SparsityReport,
)
from lbc_core.sparsity.baselines import DenseSparsifier, MagnitudeSparsifier, SRSTESparsifier
from lbc_core.sparsity.lbc import LBCSparsifier, ScoreOptimizer
from lbc_core.sparsity.pattern import (
    NMPattern,
    PatternError,
    count_violations,
    from_groups,
    is_24_compliant_tensor,
    is_nm_sparse,
    magnitude_mask,
    to_groups,
)
from lbc_core.sparsity.schedule import RemovalSchedule
from lbc_core.sparsity.selection import (
    LayerPolicy,
    LayerSelection,
    LayerSelectionError,
    LayerTarget,
    SkippedLayer,
    select_layers,
)

METHODS = ("lbc", "srste", "asp", "dense")


@dataclass(frozen=True)
class SparsityConfig:
    """Which method, which pattern, which layers, and the method's own knobs."""

    method: str = "lbc"
    pattern: NMPattern = field(default_factory=lambda: NMPattern(2, 4))
    layers: LayerPolicy = field(default_factory=LayerPolicy)
    schedule: RemovalSchedule = field(default_factory=RemovalSchedule)
    # None: follow the training optimizer (the pipeline fills it in); see ScoreOptimizer.
    score_optimizer: ScoreOptimizer | None = None
    srste_decay: float = 2e-4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown sparsity method {self.method!r}; choose one of {', '.join(METHODS)}")


def build_sparsifier(config: SparsityConfig) -> Sparsifier:
    if config.method == "lbc":
        return LBCSparsifier(
            config.pattern, config.layers, config.schedule, config.score_optimizer or ScoreOptimizer()
        )
    if config.method == "srste":
        return SRSTESparsifier(config.pattern, config.layers, config.srste_decay)
    if config.method == "asp":
        return MagnitudeSparsifier(config.pattern, config.layers)
    return DenseSparsifier(config.pattern, config.layers)


__all__ = [
    "KEEP_N_SEMANTICS",
    "METHODS",
    "DenseSparsifier",
    "LBCSparsifier",
    "LayerPolicy",
    "LayerResult",
    "LayerSelection",
    "LayerSelectionError",
    "LayerTarget",
    "MagnitudeSparsifier",
    "MaskedWeight",
    "NMPattern",
    "PatternError",
    "RemovalSchedule",
    "SRSTESparsifier",
    "ScoreOptimizer",
    "SkippedLayer",
    "Sparsifier",
    "SparsifierStateError",
    "SparsityConfig",
    "SparsityReport",
    "build_sparsifier",
    "count_violations",
    "from_groups",
    "is_24_compliant_tensor",
    "is_nm_sparse",
    "magnitude_mask",
    "select_layers",
    "to_groups",
]
