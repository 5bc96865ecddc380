"""NumPy ``.npz`` archives holding arrays ``x`` (inputs) and ``y`` (integer labels).

Layout of ``x`` (N is the number of samples):

* ``N x F``            flat feature vectors, kept as they are;
* ``N x H x W``        single-channel images, become N x 1 x H x W;
* ``N x H x W x C``    channels-last images, when the last dimension is 1, 3 or 4 and
  dimension 1 is not (e.g. N x 32 x 32 x 3), transposed to N x C x H x W;
* ``N x C x H x W``    every other 4-D array is taken as channels-first already.

The rule only looks at which end of the shape could plausibly be a channel count;
when both could (e.g. N x 3 x 8 x 3) channels-first wins, the PyTorch convention.

``uint8`` inputs are pixels and are scaled to [0, 1]; floating-point inputs are kept as
they are (cast to float32). Other dtypes are rejected rather than guessing a scale.
An optional 1-D string array ``classes`` names the labels; otherwise the classes are
"0" .. str(max(y)).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy_format

from .arrays import ArrayDataset
from .errors import DatasetError

_CHANNEL_COUNTS = (1, 3, 4)
# Same order of magnitude as the IDX cap: enough for any dataset meant to sit in memory.
DEFAULT_MAX_NPZ_ARRAY_BYTES = 4 << 30


def load_npz(
    path: str | os.PathLike[str], *, max_array_bytes: int = DEFAULT_MAX_NPZ_ARRAY_BYTES
) -> ArrayDataset:
    """Load ``x``/``y`` (and optionally ``classes``) from an .npz file; see the module doc."""
    file = Path(path)
    name = file.name
    if not file.is_file():
        raise DatasetError(f"{file}: .npz file does not exist")
    _check_headers(file, max_array_bytes)
    try:
        # allow_pickle=False always: object arrays in an upload would run arbitrary code.
        with np.load(file, allow_pickle=False) as archive:
            x = archive["x"]
            y = archive["y"]
            classes_array = archive["classes"] if "classes" in archive.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{name}: cannot read .npz ({exc})") from exc
    x_tensor = _inputs_to_tensor(x, name)
    labels = _labels(y, name, x.shape[0])
    classes = _class_names(classes_array, labels, name)
    return ArrayDataset(x_tensor, torch.from_numpy(labels), classes, name=name)


def _check_headers(file: Path, max_array_bytes: int) -> None:
    """Read the .npy headers inside the zip to reject bad arrays before allocating them."""
    name = file.name
    try:
        with zipfile.ZipFile(file) as archive:
            members = set(archive.namelist())
            for key in ("x", "y"):
                if f"{key}.npy" not in members:
                    raise DatasetError(f"{name}: missing array {key!r} (the .npz must hold 'x' and 'y')")
            for key in ("x", "y", "classes"):
                if f"{key}.npy" not in members:
                    continue
                with archive.open(f"{key}.npy") as member:
                    version = npy_format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = npy_format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = npy_format.read_array_header_2_0(member)
                    else:
                        raise DatasetError(f"{name}: array {key!r} uses unsupported .npy version {version}")
                if dtype.hasobject:
                    raise DatasetError(f"{name}: array {key!r} holds Python objects, which are not allowed")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > max_array_bytes:
                    raise DatasetError(
                        f"{name}: array {key!r} of shape {shape} needs {nbytes} bytes, "
                        f"over the {max_array_bytes}-byte limit"
                    )
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{name}: not an .npz (zip) archive ({exc})") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{name}: malformed .npy header ({exc})") from exc


def _inputs_to_tensor(x: np.ndarray, name: str) -> torch.Tensor:
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0:
        raise DatasetError(
            f"{name}: x must be N x F, N x H x W or 4-D images with N > 0, got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        values = x.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(x.dtype, np.floating):
        values = x.astype(np.float32)
    else:
        raise DatasetError(
            f"{name}: x has dtype {x.dtype}; store uint8 pixels (0-255) or floating-point values"
        )
    if values.ndim == 3:
        values = values[:, np.newaxis]
    elif values.ndim == 4 and values.shape[3] in _CHANNEL_COUNTS and values.shape[1] not in _CHANNEL_COUNTS:
        values = values.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(values))


def _labels(y: np.ndarray, name: str, count: int) -> np.ndarray:
    if y.ndim != 1:
        raise DatasetError(f"{name}: y must be one-dimensional, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise DatasetError(f"{name}: y must hold integer labels, got dtype {y.dtype}")
    if y.shape[0] != count:
        raise DatasetError(f"{name}: x holds {count} samples but y holds {y.shape[0]} labels")
    labels = y.astype(np.int64)
    if labels.size and int(labels.min()) < 0:
        raise DatasetError(f"{name}: label {int(labels.min())} is negative")
    return labels


def _class_names(classes: np.ndarray | None, labels: np.ndarray, name: str) -> list[str]:
    if classes is None:
        return [str(c) for c in range(int(labels.max()) + 1)]
    if classes.ndim != 1 or classes.dtype.kind not in "US":
        raise DatasetError(
            f"{name}: classes must be a 1-D array of strings, got {classes.dtype} {classes.shape}"
        )
    names = [c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in classes.tolist()]
    if int(labels.max()) >= len(names):
        raise DatasetError(
            f"{name}: label {int(labels.max())} is out of range [0, {len(names)}) given {len(names)} class names"
        )
    return names
