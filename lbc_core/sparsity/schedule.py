"""The LBC removal schedule: how many combinations per group stay alive at training time ``t``."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RemovalSchedule:
    """Polynomial decay of alive combinations from ``C`` (at ``t_i``) to 1 (at ``t_f``).

    ``t`` is measured in epochs. With ``per_step`` the schedule is evaluated at fractional epochs
    (``epoch + step / steps_per_epoch``), so removal happens gradually inside epochs too.
    """

    t_i: float = 0.0
    t_f: float = 1.0
    power: float = 3.0
    per_step: bool = False

    def __post_init__(self) -> None:
        if self.t_i < 0:
            raise ValueError(f"t_i must be >= 0, got {self.t_i}")
        if self.t_f <= self.t_i:
            raise ValueError(f"t_f must be greater than t_i, got t_i={self.t_i}, t_f={self.t_f}")
        if self.power <= 0:
            raise ValueError(f"power must be > 0, got {self.power}")

    def time(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """The schedule's clock: integer epochs, or fractional epochs with ``per_step``."""
        if self.per_step and steps_per_epoch > 0:
            return epoch + step / steps_per_epoch
        return float(epoch)

    def alive_per_group(self, t: float, num_combinations: int) -> int:
        """Combinations per group allowed to stay alive at time ``t``, clamped to ``[1, C]``.

        The authors' formula goes negative for ``t_i > 0`` before ``t_i``; clamping keeps it sane.
        """
        c = num_combinations
        if t < self.t_i:
            return c
        if t >= self.t_f:
            return 1
        remaining = 1.0 - (t - self.t_i) / (self.t_f - self.t_i)
        alive = 1 + math.ceil((c - 1) * remaining**self.power)
        return max(1, min(c, alive))
