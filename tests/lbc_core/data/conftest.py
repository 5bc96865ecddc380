"""Builders for small dataset files, shared by the data tests (all written to tmp_path)."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 + array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture
def write_idx() -> Callable[..., Path]:
    """write_idx(path, array, magic=None, gz=False, cut=0, extra=b"") -> path."""

    def write(
        path: Path,
        array: np.ndarray,
        *,
        magic: int | None = None,
        gz: bool = False,
        cut: int = 0,
        extra: bytes = b"",
    ) -> Path:
        payload = _idx_bytes(array, magic)
        payload = payload[: len(payload) - cut] + extra
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
        return path

    return write


@pytest.fixture
def mnist_dir(
    tmp_path: Path, write_idx: Callable[..., Path]
) -> Callable[..., tuple[Path, np.ndarray, np.ndarray]]:
    """mnist_dir(n=30, split="train", gz=True) -> (directory, images, labels)."""

    def build(n: int = 30, split: str = "train", gz: bool = True, seed: int = 0, name: str = "mnist"):
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        directory = tmp_path / name
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, gz=gz)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, gz=gz)
        return directory, images, labels

    return build


@pytest.fixture
def image_tree() -> Callable[..., Path]:
    """image_tree(root, {"cat": [(w, h, mode, ext), ...], ...}) writes random images."""

    def build(root: Path, layout: dict[str, list[tuple[int, int, str, str]]], seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        for class_name, images in layout.items():
            class_dir = root / class_name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i, (width, height, mode, ext) in enumerate(images):
                shape = (height, width) if mode == "L" else (height, width, 3)
                pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(pixels).save(class_dir / f"img_{i:03d}.{ext}")
        return root

    return build


@pytest.fixture
def cifar_dir() -> Callable[..., tuple[Path, np.ndarray, np.ndarray]]:
    """cifar_dir(root, variant, per_batch=4) writes fake python-version batches.

    Returns (batch directory, train data N x 3072, train labels); pickles use
    protocol 2 and bytes keys like the real (Python 2) files.
    """

    def build(root: Path, variant: str = "cifar10", per_batch: int = 4, seed: int = 0, protocol: int = 2):
        rng = np.random.default_rng(seed)
        num_classes = 10 if variant == "cifar10" else 100
        folder = root / ("cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python")
        folder.mkdir(parents=True, exist_ok=True)
        if variant == "cifar10":
            train_names, test_names = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
            label_key, meta_name = b"labels", "batches.meta"
            meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": per_batch}
        else:
            train_names, test_names = ["train"], ["test"]
            label_key, meta_name = b"fine_labels", "meta"
            meta = {
                b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"k{i}".encode() for i in range(20)],
            }
        (folder / meta_name).write_bytes(pickle.dumps(meta, protocol=protocol))
        train_data, train_labels = [], []
        for name in train_names + test_names:
            data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, num_classes, size=per_batch)]
            batch = {b"batch_label": name.encode(), b"data": data, label_key: labels}
            if variant == "cifar100":
                batch[b"coarse_labels"] = [v % 20 for v in labels]
            (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
            if name in train_names:
                train_data.append(data)
                train_labels.extend(labels)
        return folder, np.concatenate(train_data), np.asarray(train_labels)

    return build
