"""N:M sparsity methods (LBC and baselines) behind one optimizer-like lifecycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lbc_core.sparsity.base import (
    KEEP_N_SEMANTICS,
    LayerResult,
    MaskedWeight,
    Sparsifier,
    SparsifierStateError,
    SparsityReport,
)
from lbc_core.sparsity.baselines import DenseSparsifier, MagnitudeSparsifier, SRSTESparsifier
from lbc_core.sparsity.calibration import CalibrationError, InputFeatures, input_features, input_norms
from lbc_core.sparsity.lbc import SCORE_INITS, LBCSparsifier, ScoreInit, ScoreOptimizer, prior_scores
from lbc_core.sparsity.lbc_revival import RevivalLBCSparsifier
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
from lbc_core.sparsity.wanda import WandaSparsifier, wanda_importance, wanda_mask

METHODS = ("lbc", "srste", "asp", "wanda", "dense")
# "permanent" is the method (and the product). The others are ABLATIONS reproducing the authors'
# code, where dead scores are zeroed and can revive (lbc_revival.py); "revival_grad" also feeds
# dead combinations the loss signal.
REMOVALS = ("permanent", "revival", "revival_grad")


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
    removal: Literal["permanent", "revival", "revival_grad"] = "permanent"
    # Where LBC's scores start: uniform (published method) or from a magnitude / Wanda importance prior.
    score_init: ScoreInit = "uniform"
    # Scales the prior's deviation from the uniform start (library and experiments only for now).
    prior_strength: float = 1.0
    # Training samples whose activations calibrate Wanda masks or a Wanda prior (seeded choice).
    calibration_samples: int = 128

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown sparsity method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.removal not in REMOVALS:
            raise ValueError(f"unknown LBC removal {self.removal!r}; choose one of {', '.join(REMOVALS)}")
        if self.removal != "permanent" and self.method != "lbc":
            raise ValueError(f"removal {self.removal!r} only applies to method 'lbc', not {self.method!r}")
        if self.score_init not in SCORE_INITS:
            raise ValueError(
                f"unknown LBC score_init {self.score_init!r}; choose one of {', '.join(SCORE_INITS)}"
            )
        if self.score_init != "uniform" and (self.method != "lbc" or self.removal != "permanent"):
            raise ValueError(
                f"score_init {self.score_init!r} only applies to method 'lbc' with permanent removal"
            )
        if not self.prior_strength > 0:
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength}")
        if self.prior_strength != 1.0 and self.score_init == "uniform":
            raise ValueError("prior_strength only applies with score_init 'magnitude' or 'wanda'")
        if self.calibration_samples < 1:
            raise ValueError(f"calibration_samples must be >= 1, got {self.calibration_samples}")

    @property
    def uses_calibration(self) -> bool:
        """Whether the method reads activations of calibration samples before training."""
        return self.method == "wanda" or self.score_init == "wanda"


def build_sparsifier(config: SparsityConfig) -> Sparsifier:
    if config.method == "lbc" and config.removal != "permanent":
        return RevivalLBCSparsifier(
            config.pattern,
            config.layers,
            config.schedule,
            config.score_optimizer or ScoreOptimizer(),
            dead_gradient=config.removal == "revival_grad",
        )
    if config.method == "lbc":
        return LBCSparsifier(
            config.pattern,
            config.layers,
            config.schedule,
            config.score_optimizer or ScoreOptimizer(),
            score_init=config.score_init,
            prior_strength=config.prior_strength,
        )
    if config.method == "srste":
        return SRSTESparsifier(config.pattern, config.layers, config.srste_decay)
    if config.method == "asp":
        return MagnitudeSparsifier(config.pattern, config.layers)
    if config.method == "wanda":
        return WandaSparsifier(config.pattern, config.layers)
    return DenseSparsifier(config.pattern, config.layers)


__all__ = [
    "KEEP_N_SEMANTICS",
    "METHODS",
    "REMOVALS",
    "SCORE_INITS",
    "CalibrationError",
    "DenseSparsifier",
    "InputFeatures",
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
    "RevivalLBCSparsifier",
    "SRSTESparsifier",
    "ScoreInit",
    "ScoreOptimizer",
    "SkippedLayer",
    "Sparsifier",
    "SparsifierStateError",
    "SparsityConfig",
    "SparsityReport",
    "WandaSparsifier",
    "build_sparsifier",
    "count_violations",
    "from_groups",
    "input_features",
    "input_norms",
    "is_24_compliant_tensor",
    "is_nm_sparse",
    "magnitude_mask",
    "prior_scores",
    "select_layers",
    "to_groups",
    "wanda_importance",
    "wanda_mask",
]
