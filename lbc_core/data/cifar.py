"""CIFAR-10 / CIFAR-100 "python version" batches from a directory or the .tar.gz.

The batches are pickles; they are read with :func:`restricted_loads`, never with a
plain ``pickle.load``. Layouts:

* CIFAR-10:  ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch`` (test),
  ``batches.meta`` (``label_names``), labels under ``labels``;
* CIFAR-100: ``train``, ``test``, ``meta`` (``fine_label_names``), fine labels under
  ``fine_labels``.

``path`` may be the batch directory itself, a directory containing the standard
``cifar-10-batches-py`` / ``cifar-100-python`` folder, or the downloaded tar archive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .archives import ArchiveLimits, archive_kind, extract_archive, scratch_directory
from .arrays import ArrayDataset
from .errors import DatasetError
from .safe_pickle import restricted_loads

_IMAGE_BYTES = 3 * 32 * 32
# The largest real file (CIFAR-100 train) is ~155 MB.
DEFAULT_MAX_BATCH_BYTES = 512 << 20
CIFAR_SPLITS = ("train", "test")


@dataclass(frozen=True)
class _Layout:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int


_LAYOUTS = {
    "cifar10": _Layout(
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": _Layout(
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}


def load_cifar(
    path: str | os.PathLike[str],
    variant: str = "cifar10",
    split: str | None = None,
    *,
    scratch_dir: str | os.PathLike[str] | None = None,
    limits: ArchiveLimits | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> ArrayDataset:
    """Load the ``split`` ("train" by default, or "test") of ``variant`` as N x 3 x 32 x 32 in [0, 1]."""
    if variant not in _LAYOUTS:
        raise DatasetError(f"unknown CIFAR variant {variant!r} (choose from {', '.join(_LAYOUTS)})")
    split = split or "train"
    if split not in CIFAR_SPLITS:
        raise DatasetError(f"unknown CIFAR split {split!r} (choose from {', '.join(CIFAR_SPLITS)})")
    layout = _LAYOUTS[variant]
    source = Path(path)
    if source.is_dir():
        return _load_dir(_batch_dir(source, layout), layout, split, variant, max_batch_bytes)
    if not source.is_file():
        raise DatasetError(f"{source}: CIFAR path does not exist")
    if archive_kind(source) != "tar":
        raise DatasetError(f"{source.name}: expected a directory or the CIFAR .tar.gz archive")
    with scratch_directory(None if scratch_dir is None else Path(scratch_dir), "cifar-") as tmp:
        extract_archive(source, tmp, limits)
        return _load_dir(_batch_dir(tmp, layout, label=source.name), layout, split, variant, max_batch_bytes)


def _batch_dir(root: Path, layout: _Layout, label: str | None = None) -> Path:
    for candidate in (root, root / layout.folder):
        if (candidate / layout.meta).is_file():
            return candidate
    raise DatasetError(
        f"{label or root}: no {layout.meta!r} found here or in {layout.folder!r} "
        "(is this the right CIFAR variant, python version?)"
    )


def _load_dir(directory: Path, layout: _Layout, split: str, variant: str, max_bytes: int) -> ArrayDataset:
    meta = _read_pickle_dict(directory / layout.meta, max_bytes)
    names = _field(meta, layout.names_key, layout.meta)
    if not isinstance(names, list | tuple) or len(names) != layout.num_classes:
        raise DatasetError(f"{layout.meta}: {layout.names_key!r} must list {layout.num_classes} class names")
    classes = [n.decode("utf-8", errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch_name in getattr(layout, split):
        data, batch_labels = _read_batch(directory / batch_name, layout, max_bytes)
        images.append(data)
        labels.append(batch_labels)
    pixels = np.concatenate(images).reshape(-1, 3, 32, 32)
    x = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
    y = torch.from_numpy(np.concatenate(labels))
    return ArrayDataset(x, y, classes, name=f"{variant}-{split}")


def _read_pickle_dict(file: Path, max_bytes: int) -> dict[Any, Any]:
    if not file.is_file():
        raise DatasetError(f"{file.name}: missing CIFAR file in {file.parent}")
    size = file.stat().st_size
    if size > max_bytes:
        raise DatasetError(f"{file.name}: {size} bytes, over the {max_bytes}-byte limit")
    content = restricted_loads(file.read_bytes(), file.name)
    if not isinstance(content, dict):
        raise DatasetError(f"{file.name}: expected a pickled dict, got {type(content).__name__}")
    return content


def _field(content: dict[Any, Any], key: str, file_name: str) -> Any:
    # Real batches (Python 2 pickles) use bytes keys; accept str keys from re-exports too.
    for candidate in (key.encode(), key):
        if candidate in content:
            return content[candidate]
    raise DatasetError(f"{file_name}: missing key {key!r}")


def _read_batch(file: Path, layout: _Layout, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle_dict(file, max_bytes)
    data = _field(batch, "data", file.name)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _IMAGE_BYTES
    ):
        found = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DatasetError(f"{file.name}: 'data' must be a uint8 N x {_IMAGE_BYTES} array, got {found}")
    raw_labels = _field(batch, layout.label_key, file.name)
    if not isinstance(raw_labels, list | tuple | np.ndarray):
        raise DatasetError(f"{file.name}: {layout.label_key!r} must be a list of integers")
    labels = np.asarray(raw_labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{file.name}: {layout.label_key!r} must be a flat list of integers")
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(f"{file.name}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= layout.num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DatasetError(f"{file.name}: label {bad} is out of range [0, {layout.num_classes})")
    return data, labels.astype(np.int64)
