"""The frozen configuration of one data pipeline, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import DatasetError
from .synthetic import SyntheticSpec

SOURCES = ("digits", "mnist", "npz", "imagefolder", "cifar10", "cifar100", "synthetic")
# Sources read from a file or directory, and the ones whose ``split`` picks a file set.
_PATH_SOURCES = frozenset({"mnist", "npz", "imagefolder", "cifar10", "cifar100"})
_SPLIT_SOURCES = frozenset({"mnist", "cifar10", "cifar100"})


@dataclass(frozen=True)
class DataConfig:
    """What to load and how to split, normalise and augment it.

    ``val_size`` overrides ``val_fraction``; both are ignored when ``val_path`` gives a
    separate validation set (same source kind). ``limit`` keeps the first N samples of
    the main set after a deterministic shuffle, before splitting. ``synthetic`` is only
    read for ``source="synthetic"``.
    """

    source: str
    path: str | None = None
    val_fraction: float = 0.2
    val_size: int | None = None
    val_path: str | None = None
    split: str | None = None
    image_size: int | None = None
    augment: bool = False
    hflip: bool = False
    seed: int = 0
    limit: int | None = None
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise DatasetError(f"unknown data source {self.source!r}; choose one of: {', '.join(SOURCES)}")
        if self.source in _PATH_SOURCES and not self.path:
            raise DatasetError(f"data source {self.source!r} needs a path")
        if self.source not in _PATH_SOURCES and (self.path or self.val_path):
            raise DatasetError(f"data source {self.source!r} takes no path or val_path")
        if self.split is not None and self.source not in _SPLIT_SOURCES:
            raise DatasetError(f"split is only used by sources {', '.join(sorted(_SPLIT_SOURCES))}")
        if self.image_size is not None and self.source != "imagefolder":
            raise DatasetError("image_size is only used by source 'imagefolder'")
        if self.image_size is not None and self.image_size < 1:
            raise DatasetError(f"image_size must be >= 1, got {self.image_size}")
        if not (isinstance(self.val_fraction, int | float) and math.isfinite(self.val_fraction)):
            raise DatasetError(f"val_fraction must be a number, got {self.val_fraction!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.val_size is not None and self.val_size < 1:
            raise DatasetError(f"val_size must be >= 1, got {self.val_size}")
        if self.limit is not None and self.limit < 2:
            raise DatasetError(f"limit must be >= 2 (a train and a validation sample), got {self.limit}")
        if self.seed < 0:
            raise DatasetError(f"seed must be >= 0, got {self.seed}")
        if self.hflip and not self.augment:
            raise DatasetError("hflip=True needs augment=True")
        if not isinstance(self.synthetic, SyntheticSpec):
            raise DatasetError("synthetic must be a SyntheticSpec")
