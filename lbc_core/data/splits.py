"""Deterministic train/validation splits."""

from __future__ import annotations

import torch

from lbc_catalog.data_rules import val_size_problem

from .arrays import ArrayDataset
from .errors import DatasetError


def split_dataset(
    ds: ArrayDataset,
    *,
    val_fraction: float | None = None,
    val_size: int | None = None,
    seed: int = 0,
    stratify: bool = True,
    val_dataset: ArrayDataset | None = None,
) -> tuple[ArrayDataset, ArrayDataset]:
    """Split ``ds`` into (train, val), or pair it with a separately given ``val_dataset``.

    Exactly one of ``val_fraction`` / ``val_size`` is used (``val_size`` wins when both
    are set). With ``stratify`` every class keeps its share of the validation set
    (largest-remainder rounding, so the total is exact). The result depends only on
    ``seed`` and the data; both parts keep the original sample order.
    """
    if val_dataset is not None:
        check_compatible(ds, val_dataset)
        return ds, val_dataset
    n = len(ds)
    if n < 2:
        raise DatasetError(f"{ds.name}: needs at least 2 samples to split, has {n}")
    if val_size is not None:
        problem = val_size_problem(n, val_size)
        if problem:
            raise DatasetError(f"{ds.name}: val_size {problem}")
        n_val = val_size
    elif val_fraction is not None:
        if not 0.0 < val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n_val = min(max(round(val_fraction * n), 1), n - 1)
    else:
        raise DatasetError("split_dataset needs val_fraction or val_size")

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    val_index = _stratified_pick(ds.y[order], order, n_val, ds.num_classes) if stratify else order[:n_val]
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val_index] = True
    train = ds.subset(torch.nonzero(~is_val).flatten(), name=f"{ds.name}[train]")
    val = ds.subset(torch.nonzero(is_val).flatten(), name=f"{ds.name}[val]")
    return train, val


def _stratified_pick(
    shuffled_labels: torch.Tensor, order: torch.Tensor, n_val: int, num_classes: int
) -> torch.Tensor:
    counts = torch.bincount(shuffled_labels, minlength=num_classes)
    n = int(counts.sum())
    exact = counts.double() * n_val / n
    quota = exact.floor().long()
    # Hand the leftover slots to the largest fractional parts (ties: lower label), so
    # the validation size is exactly n_val.
    remainder = exact - quota.double()
    for label in sorted(range(num_classes), key=lambda c: (-float(remainder[c]), c)):
        if int(quota.sum()) >= n_val:
            break
        if quota[label] < counts[label]:
            quota[label] += 1
    picked = [order[shuffled_labels == label][: int(quota[label])] for label in range(num_classes)]
    return torch.cat(picked)


def check_compatible(train: ArrayDataset, val: ArrayDataset) -> None:
    """Raise DatasetError unless ``val`` has the same classes and sample shape as ``train``."""
    if train.classes != val.classes:
        raise DatasetError(
            f"{val.name}: validation classes {val.classes[:10]} differ from training classes {train.classes[:10]}"
        )
    if train.input_shape != val.input_shape:
        raise DatasetError(
            f"{val.name}: validation samples have shape {val.input_shape}, training samples {train.input_shape}"
        )
    if len(val) == 0:
        raise DatasetError(f"{val.name}: validation set is empty")


def take_first(ds: ArrayDataset, limit: int, seed: int = 0) -> ArrayDataset:
    """The first ``limit`` samples after a deterministic shuffle (all of them if fewer)."""
    if limit < 1:
        raise DatasetError(f"limit must be >= 1, got {limit}")
    if limit >= len(ds):
        return ds
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(ds), generator=generator)[:limit].sort().values
    return ds.subset(index)
