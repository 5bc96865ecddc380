"""The frozen configuration of one data pipeline, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lbc_catalog.tasks import IMAGE_SOURCES, TEXT_SOURCES

from .errors import DatasetError
from .synthetic import SyntheticSpec

SOURCES = IMAGE_SOURCES + TEXT_SOURCES
# Sources read from a file or directory, and the ones whose ``split`` picks a file set.
_PATH_SOURCES = frozenset({"mnist", "npz", "imagefolder", "cifar10", "cifar100", *TEXT_SOURCES})
_SPLIT_SOURCES = frozenset({"mnist", "cifar10", "cifar100"})


@dataclass(frozen=True)
class DataConfig:
    """What to load and how to split, normalise and augment it.

    ``val_size`` overrides ``val_fraction``; both are ignored when ``val_path`` gives a
    separate validation set (same source kind). ``limit`` keeps the first N samples of
    the main set after a deterministic shuffle, before splitting. ``synthetic`` is only
    read for ``source="synthetic"``.

    Text sources: ``text`` (a corpus packed into blocks of ``block_size`` tokens; validation is the
    last blocks, so it never overlaps training text) and ``labeled-text`` (texts truncated and padded
    to ``max_length`` tokens), both tokenized with ``tokenizer`` (a tokenizer.json or a directory
    holding one; None: UTF-8 bytes).
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
    block_size: int = 128
    max_length: int = 128
    tokenizer: str | None = None

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
        if self.tokenizer is not None and self.source not in TEXT_SOURCES:
            raise DatasetError(f"tokenizer is only used by sources {', '.join(TEXT_SOURCES)}")
        for name in ("block_size", "max_length"):
            if getattr(self, name) < 1:
                raise DatasetError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.augment or self.image_size is not None) and self.source in TEXT_SOURCES:
            raise DatasetError("augment and image_size are for image data, not text")
        if not isinstance(self.synthetic, SyntheticSpec):
            raise DatasetError("synthetic must be a SyntheticSpec")
