"""Fast, deterministic mini-batches over an in-memory ArrayDataset."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .arrays import ArrayDataset
from .errors import DatasetError
from .transforms import Augmentation, augment_batch


class BatchLoader:
    """Iterable of (x, y) batches cut from the dataset tensors by index.

    Epoch ``e`` shuffles and augments with a torch.Generator seeded ``seed + e``, so a
    run is reproducible and independent of the global RNG. Each ``iter()`` uses the
    current epoch and then advances it; :meth:`set_epoch` pins it (e.g. on resume).
    """

    def __init__(
        self,
        ds: ArrayDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        augment: Augmentation | None = None,
        drop_last: bool = False,
        epoch: int = 0,
    ) -> None:
        if batch_size < 1:
            raise DatasetError(f"batch_size must be >= 1, got {batch_size}")
        if augment is not None and augment.active and ds.x.dim() != 4:
            raise DatasetError(f"{ds.name}: augmentation needs image data, got shape {tuple(ds.x.shape)}")
        self.dataset = ds
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment if augment is not None and augment.active else None
        self.drop_last = drop_last
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``, without touching the loader's epoch counter."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        x, y = self.dataset.x, self.dataset.y
        for batch in range(len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            xb = x.index_select(0, index)
            if self.augment is not None:
                xb = augment_batch(xb, self.augment, generator)
            yield xb, y.index_select(0, index)


def make_loader(
    ds: ArrayDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    augment: Augmentation | None = None,
    *,
    drop_last: bool = False,
    epoch: int = 0,
) -> BatchLoader:
    """Batches of ``ds``; see :class:`BatchLoader` for the determinism contract."""
    return BatchLoader(
        ds, batch_size, shuffle=shuffle, seed=seed, augment=augment, drop_last=drop_last, epoch=epoch
    )
