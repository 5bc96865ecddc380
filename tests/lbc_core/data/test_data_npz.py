import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lbc_core.data import DatasetError, load_npz


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_uint8_images_are_scaled(tmp_path: Path) -> None:
    x = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    ds = load_npz(_save(tmp_path / "a.npz", x=x, y=np.array([0, 1, 2, 1])))
    assert ds.x.shape == (4, 1, 5, 6)
    assert torch.allclose(ds.x[:, 0], torch.from_numpy(x).float() / 255)
    assert ds.classes == ["0", "1", "2"] and ds.y.dtype == torch.int64


def test_channels_last_is_transposed(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    ds = load_npz(_save(tmp_path / "a.npz", x=x, y=np.zeros(3, np.int64)))
    assert ds.x.shape == (3, 3, 8, 6)
    assert torch.allclose(ds.x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 1, 5, 5), (2, 3, 4, 3), (2, 8, 5, 5)])
def test_other_4d_arrays_are_channels_first(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    ds = load_npz(_save(tmp_path / "a.npz", x=x, y=np.zeros(2, np.int64)))
    assert ds.input_shape == shape[1:]
    assert torch.equal(ds.x, torch.from_numpy(x))


def test_float_flat_data_is_kept_and_classes_are_read(tmp_path: Path) -> None:
    x = np.array([[-3.5, 2.0], [0.25, 9.0]], dtype=np.float64)
    path = tmp_path / "flat.npz"
    np.savez_compressed(path, x=x, y=np.array([1, 0], np.uint8), classes=np.array(["neg", "pos"]))
    ds = load_npz(path)
    assert ds.input_shape == (2,) and ds.x.dtype == torch.float32
    assert torch.equal(ds.x, torch.from_numpy(x).float())
    assert ds.classes == ["neg", "pos"]


def test_missing_y(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"a\.npz: missing array 'y'"):
        load_npz(_save(tmp_path / "a.npz", x=np.zeros((2, 3), np.float32)))


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(DatasetError, match="holds Python objects"):
        load_npz(path)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((3, 2), np.float32), np.zeros(4, np.int64), "x holds 3 samples but y holds 4 labels"),
        (np.zeros((3, 2), np.float32), np.zeros(3, np.float32), "integer labels"),
        (np.zeros((3, 2), np.float32), np.zeros((3, 1), np.int64), "one-dimensional"),
        (np.zeros((3, 2), np.float32), np.array([0, -1, 0]), "label -1 is negative"),
        (np.zeros((3, 2), np.int32), np.zeros(3, np.int64), "dtype int32"),
        (np.zeros(3, np.float32), np.zeros(3, np.int64), "must be N x F"),
        (np.zeros((0, 2), np.float32), np.zeros(0, np.int64), "N > 0"),
        (np.full((2, 2), np.inf, np.float32), np.zeros(2, np.int64), "NaN or infinite"),
    ],
)
def test_malformed_arrays(tmp_path: Path, x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_npz(_save(tmp_path / "bad.npz", x=x, y=y))


def test_label_beyond_given_class_names(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "a.npz", x=np.zeros((2, 2), np.float32), y=np.array([0, 2]), classes=np.array(["a", "b"])
    )
    with pytest.raises(DatasetError, match=r"label 2 is out of range \[0, 2\)"):
        load_npz(path)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))  # a bare .npy under an .npz name
    with pytest.raises(DatasetError, match=r"plain\.npz: not an \.npz \(zip\) archive"):
        load_npz(path)


def test_array_over_size_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    path = _save(tmp_path / "big.npz", x=np.zeros((10, 100), np.float32), y=np.zeros(10, np.int64))
    with pytest.raises(DatasetError, match=r"array 'x' of shape \(10, 100\) needs 4000 bytes"):
        load_npz(path, max_array_bytes=1000)


def test_corrupt_member(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"not an npy file")
        zf.writestr("y.npy", b"neither")
    with pytest.raises(DatasetError, match=r"corrupt\.npz: malformed \.npy header"):
        load_npz(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_npz(tmp_path / "nope.npz")
