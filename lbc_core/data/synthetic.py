"""A deterministic, learnable synthetic classification set for smoke tests and benchmarks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .arrays import ArrayDataset
from .errors import DatasetError


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of a synthetic set; ``input_shape`` is (C, H, W) or (F,)."""

    num_samples: int = 2048
    input_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int = 10
    # Per-pixel Gaussian noise around each class template (templates lie in [0, 1]).
    # 0.5 keeps the task learnable yet not trivially separable by a single pixel.
    noise: float = 0.5

    def __post_init__(self) -> None:
        # Configs often come from JSON/YAML, where tuples arrive as lists.
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.num_samples < 1:
            raise DatasetError(f"synthetic num_samples must be >= 1, got {self.num_samples}")
        if self.num_classes < 2:
            raise DatasetError(f"synthetic num_classes must be >= 2, got {self.num_classes}")
        if len(self.input_shape) not in (1, 3) or any(d < 1 for d in self.input_shape):
            raise DatasetError(
                f"synthetic input_shape must be (C, H, W) or (F,) with positive sizes, got {self.input_shape}"
            )
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise DatasetError(f"synthetic noise must be a finite number >= 0, got {self.noise}")


def make_synthetic(
    num_samples: int = 2048,
    input_shape: tuple[int, ...] = (1, 8, 8),
    num_classes: int = 10,
    seed: int = 0,
    *,
    noise: float = 0.5,
) -> ArrayDataset:
    """``num_samples`` noisy copies of one random template per class, balanced classes.

    The same arguments always give the same tensors (a private torch.Generator is used,
    the global RNG is untouched). Values are clamped to [0, 1] like image pixels.
    """
    spec = SyntheticSpec(num_samples, tuple(input_shape), num_classes, noise)
    generator = torch.Generator().manual_seed(seed)
    templates = torch.rand((spec.num_classes, *spec.input_shape), generator=generator)
    labels = torch.arange(spec.num_samples) % spec.num_classes
    labels = labels[torch.randperm(spec.num_samples, generator=generator)]
    noise_values = torch.randn((spec.num_samples, *spec.input_shape), generator=generator)
    x = (templates[labels] + spec.noise * noise_values).clamp_(0.0, 1.0)
    return ArrayDataset(x, labels, [f"class_{c}" for c in range(spec.num_classes)], name="synthetic")
