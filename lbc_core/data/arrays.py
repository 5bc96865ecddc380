"""In-memory dataset of a feature tensor and integer labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .errors import DatasetError


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A whole dataset held as two tensors.

    ``x`` is float32, N x C x H x W for images or N x F for flat data; ``y`` is int64 of
    length N with every label in ``[0, len(classes))``. Everything the loaders produce
    fits in memory, so batches are cut by indexing these tensors directly instead of
    going through per-sample ``__getitem__`` calls.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, classes: Sequence[str], *, name: str = "dataset"
    ) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise DatasetError(f"{name}: x and y must be torch tensors")
        if not x.is_floating_point():
            raise DatasetError(f"{name}: x must be a floating-point tensor, got {x.dtype}")
        if x.dim() not in (2, 4):
            raise DatasetError(f"{name}: x must be N x F or N x C x H x W, got shape {tuple(x.shape)}")
        if any(d == 0 for d in x.shape[1:]):
            raise DatasetError(f"{name}: x has an empty dimension, shape {tuple(x.shape)}")
        if y.dim() != 1:
            raise DatasetError(f"{name}: y must be one-dimensional, got shape {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise DatasetError(f"{name}: y must hold integer labels, got {y.dtype}")
        if x.shape[0] != y.shape[0]:
            raise DatasetError(f"{name}: {x.shape[0]} samples in x but {y.shape[0]} labels in y")
        classes = [str(c) for c in classes]
        if not classes:
            raise DatasetError(f"{name}: needs at least one class name")
        if len(set(classes)) != len(classes):
            raise DatasetError(f"{name}: class names are not unique")
        x = x.to(torch.float32).contiguous()
        y = y.to(torch.int64).contiguous()
        if y.numel():
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= len(classes):
                bad = low if low < 0 else high
                raise DatasetError(f"{name}: label {bad} is out of range [0, {len(classes)})")
        # NaN or inf would silently poison normalisation statistics and training.
        if not bool(torch.isfinite(x).all()):
            raise DatasetError(f"{name}: x contains NaN or infinite values")
        self.x = x
        self.y = y
        self.classes = classes
        self.name = name

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) or (F,)."""
        return tuple(int(d) for d in self.x.shape[1:])

    def class_counts(self) -> list[int]:
        """Number of samples per class, indexed by label."""
        return torch.bincount(self.y, minlength=self.num_classes).tolist()

    def subset(self, indices: torch.Tensor | Sequence[int], *, name: str | None = None) -> ArrayDataset:
        """A new dataset holding copies of the given rows, with the same classes."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return ArrayDataset(
            self.x.index_select(0, index),
            self.y.index_select(0, index),
            self.classes,
            name=name or self.name,
        )
