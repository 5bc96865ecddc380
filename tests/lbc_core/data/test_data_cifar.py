import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lbc_core.data import DatasetError, load_cifar, restricted_loads


def test_cifar10_train_and_test_from_directory(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, data, labels = cifar_dir(tmp_path, per_batch=4)
    train = load_cifar(folder, "cifar10")
    assert train.x.shape == (20, 3, 32, 32) and train.y.tolist() == labels.tolist()
    assert train.classes == [f"c{i}" for i in range(10)]
    # Rows are 1024 red, then green, then blue values, each row-major.
    assert torch.allclose(train.x[7, 1, 0, :5], torch.from_numpy(data[7, 1024:1029]).float() / 255)
    test = load_cifar(tmp_path, "cifar10", "test")  # the parent directory works too
    assert len(test) == 4


def test_cifar100_fine_labels(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, _, labels = cifar_dir(tmp_path, "cifar100", per_batch=6)
    ds = load_cifar(folder, "cifar100")
    assert ds.num_classes == 100 and ds.classes[3] == "f3" and ds.y.tolist() == labels.tolist()


def test_from_tar_gz_archive(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, _, labels = cifar_dir(tmp_path / "src", per_batch=3)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="cifar-10-batches-py")
    scratch = tmp_path / "scratch"
    ds = load_cifar(archive, "cifar10", scratch_dir=scratch)
    assert ds.y.tolist() == labels.tolist()
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols(tmp_path: Path, cifar_dir: Callable, protocol: int) -> None:
    folder, data, _ = cifar_dir(tmp_path, per_batch=2, protocol=protocol)
    ds = load_cifar(folder)
    assert torch.allclose(ds.x.reshape(10, -1), torch.from_numpy(data).float() / 255)


def test_legacy_numpy_module_names_load() -> None:
    # The published batches were pickled by numpy 1.x, which lived in numpy.core.
    data = np.arange(6, dtype=np.uint8).reshape(2, 3)
    blob = pickle.dumps({b"data": data}, protocol=2)
    assert b"numpy._core.multiarray" in blob
    legacy = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert np.array_equal(restricted_loads(legacy, "legacy")[b"data"], data)


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_rejected_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps({b"data": _Evil(f"touch {marker}")}, protocol=2)
    with pytest.raises(
        DatasetError, match=r"evil: pickle refers to (posix|os)\.system, which is not allowed"
    ):
        restricted_loads(blob, "evil")
    assert not marker.exists()


@pytest.mark.parametrize(
    "target",
    [
        ("builtins", "eval"),
        ("numpy", "load"),
        ("subprocess", "Popen"),
        ("_codecs", "decode"),
        ("numpy.lib.npyio", "load"),
    ],
)
def test_only_array_globals_are_resolvable(target: tuple[str, str]) -> None:
    blob = b"\x80\x02c" + f"{target[0]}\n{target[1]}\n".encode() + b"."
    with pytest.raises(DatasetError, match="not allowed"):
        restricted_loads(blob, "x")


def test_codecs_encode_only_allows_latin1() -> None:
    blob = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(DatasetError, match="only latin1"):
        restricted_loads(blob, "x")


def test_malicious_batch_file_is_rejected(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, _, _ = cifar_dir(tmp_path, per_batch=2)
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps(_Evil(f"touch {marker}")))
    with pytest.raises(DatasetError, match="data_batch_3: pickle refers to"):
        load_cifar(folder)
    assert not marker.exists()


def _rewrite(folder: Path, name: str, content: object) -> None:
    (folder / name).write_bytes(pickle.dumps(content, protocol=2))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"label 10 is out of range \[0, 10\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, "2 images but 3 labels"),
        (
            {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
            "must be a uint8 N x 3072 array, got float32",
        ),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "must be a uint8 N x 3072 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "flat list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key 'labels'"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_malformed_batches(tmp_path: Path, cifar_dir: Callable, content: object, message: str) -> None:
    folder, _, _ = cifar_dir(tmp_path, per_batch=2)
    _rewrite(folder, "data_batch_2", content)
    with pytest.raises(DatasetError, match=f"data_batch_2: .*{message}"):
        load_cifar(folder)


def test_truncated_pickle_and_missing_batch(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, _, _ = cifar_dir(tmp_path, per_batch=2)
    blob = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="data_batch_1: malformed pickle"):
        load_cifar(folder)
    (folder / "data_batch_1").unlink()
    with pytest.raises(DatasetError, match="data_batch_1: missing CIFAR file"):
        load_cifar(folder)


def test_wrong_variant_and_bad_meta(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, _, _ = cifar_dir(tmp_path, per_batch=2)
    with pytest.raises(DatasetError, match="no 'meta' found"):
        load_cifar(folder, "cifar100")
    _rewrite(folder, "batches.meta", {b"label_names": [b"only", b"two"]})
    with pytest.raises(DatasetError, match="must list 10 class names"):
        load_cifar(folder)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown CIFAR variant"):
        load_cifar(tmp_path, "cifar1000")
    with pytest.raises(DatasetError, match="unknown CIFAR split"):
        load_cifar(tmp_path, "cifar10", "validation")
    with pytest.raises(DatasetError, match="does not exist"):
        load_cifar(tmp_path / "missing")
    (tmp_path / "x.zip").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"expected a directory or the CIFAR \.tar\.gz"):
        load_cifar(tmp_path / "x.zip")


def test_size_limit_per_file(tmp_path: Path, cifar_dir: Callable) -> None:
    folder, _, _ = cifar_dir(tmp_path, per_batch=2)
    with pytest.raises(DatasetError, match="over the 1000-byte limit"):
        load_cifar(folder, max_batch_bytes=1000)


def test_restricted_loads_handles_plain_containers() -> None:
    value = {b"k": [1, 2.5, "s", b"b", (None, True)], "n": {"x": -(2**70)}}
    for protocol in (2, pickle.DEFAULT_PROTOCOL, 5):
        assert restricted_loads(pickle.dumps(value, protocol=protocol), "plain") == value


def test_bytearray_is_not_constructible() -> None:
    # bytearray(10**12) would be a one-line memory bomb.
    with pytest.raises(DatasetError, match=r"builtins\.bytearray, which is not allowed"):
        restricted_loads(pickle.dumps(bytearray(b"z"), protocol=4), "x")
