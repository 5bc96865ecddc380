"""MNIST-format IDX files (images idx3 + labels idx1, raw or gzip) from a directory."""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .arrays import ArrayDataset
from .errors import DatasetError

IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# 1 GiB of uint8 pixels is ~20x the full 60k MNIST training set: a generous cap that
# still stops a forged header (or a gzip bomb behind a valid one) from exhausting memory.
DEFAULT_MAX_IDX_BYTES = 1 << 30

# "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", and the dotted variant
# "train-images.idx3-ubyte" some mirrors use; the prefix names the split.
_IMAGES_RE = re.compile(r"^(?P<split>.+?)[-.]images[-.]idx3[-.]ubyte(?P<gz>\.gz)?$")
_LABELS_RE = re.compile(r"^(?P<split>.+?)[-.]labels[-.]idx1[-.]ubyte(?P<gz>\.gz)?$")


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def load_mnist(
    path: str | os.PathLike[str],
    split: str | None = None,
    *,
    num_classes: int = 10,
    max_bytes: int = DEFAULT_MAX_IDX_BYTES,
) -> ArrayDataset:
    """Load one image/label IDX pair from ``path`` as N x 1 x H x W images in [0, 1].

    ``split`` is the file-name prefix ("train", "t10k", ...). When it is None the
    directory must hold exactly one pair. Labels must lie in ``[0, num_classes)``.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: MNIST path must be a directory holding IDX files")
    images_path, labels_path = _find_pair(directory, split)
    images = read_idx(images_path, IDX_IMAGES_MAGIC, max_bytes=max_bytes)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, max_bytes=max_bytes)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images_path.name}: {images.shape[0]} images but {labels_path.name} "
            f"holds {labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        index = int(np.argmax(labels >= num_classes))
        raise DatasetError(
            f"{labels_path.name}: label {int(labels[index])} at index {index} is out of "
            f"range [0, {num_classes})"
        )
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return ArrayDataset(x, y, [str(c) for c in range(num_classes)], name=images_path.name)


def _find_pair(directory: Path, split: str | None) -> tuple[Path, Path]:
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for entry in sorted(directory.iterdir()):
        if not entry.is_file():
            continue
        for pattern, found in ((_IMAGES_RE, images), (_LABELS_RE, labels)):
            match = pattern.match(entry.name)
            # When both raw and .gz copies exist, prefer the raw one: same data, no inflate.
            if match and (match["split"] not in found or not match["gz"]):
                found[match["split"]] = entry
    splits = sorted(images.keys() & labels.keys())
    if split is not None:
        if split not in splits:
            available = ", ".join(splits) or "none"
            raise DatasetError(
                f"{directory}: no IDX image/label pair for split {split!r} "
                f"(expected {split}-images-idx3-ubyte[.gz] and {split}-labels-idx1-ubyte[.gz]; "
                f"available: {available})"
            )
        return images[split], labels[split]
    if not splits:
        raise DatasetError(
            f"{directory}: no IDX image/label pair found (expected e.g. "
            "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz])"
        )
    if len(splits) > 1:
        raise DatasetError(
            f"{directory}: holds several IDX splits ({', '.join(splits)}); choose one with split"
        )
    return images[splits[0]], labels[splits[0]]


def read_idx(path: Path, expected_magic: int, *, max_bytes: int = DEFAULT_MAX_IDX_BYTES) -> np.ndarray:
    """Read an unsigned-byte IDX file (raw or gzip), checking header, length and magic."""
    name = path.name
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _parse_idx(stream, name, expected_magic, max_bytes)
            return _parse_idx(raw, name, expected_magic, max_bytes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"{name}: corrupt gzip stream ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"{name}: cannot read file ({exc})") from exc


def _parse_idx(stream: _Reader, name: str, expected_magic: int, max_bytes: int) -> np.ndarray:
    header = _read_exact(stream, 4)
    if len(header) < 4:
        raise DatasetError(f"{name}: truncated IDX header ({len(header)} of 4 bytes)")
    magic = int.from_bytes(header, "big")
    if magic != expected_magic:
        kinds = {IDX_IMAGES_MAGIC: "an image file", IDX_LABELS_MAGIC: "a label file"}
        if magic in kinds:
            raise DatasetError(
                f"{name}: IDX magic {magic} is not {kinds[expected_magic]} (expected {expected_magic})"
            )
        raise DatasetError(
            f"{name}: not an unsigned-byte MNIST IDX file (magic {magic:#010x}, expected {expected_magic})"
        )
    ndim = header[3]
    dims_bytes = _read_exact(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DatasetError(f"{name}: truncated IDX header (dimension sizes missing)")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    if dims[0] == 0:
        raise DatasetError(f"{name}: IDX file holds no samples")
    if any(d == 0 for d in dims[1:]):
        raise DatasetError(f"{name}: IDX dimensions {dims} include a zero")
    size = math.prod(dims)
    if size > max_bytes:
        raise DatasetError(f"{name}: IDX header declares {size} bytes, over the {max_bytes}-byte limit")
    data = _read_exact(stream, size)
    if len(data) < size:
        raise DatasetError(
            f"{name}: truncated IDX data (header declares {dims}, {size} bytes; found {len(data)})"
        )
    if stream.read(1):
        raise DatasetError(f"{name}: trailing bytes after the {size} bytes the IDX header declares")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _read_exact(stream: _Reader, size: int) -> bytes:
    # Read in chunks so a forged size never becomes one huge up-front allocation.
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
