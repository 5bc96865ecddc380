from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lbc_core.data import DataConfig, DatasetError, load_data, load_mnist

# tests/lbc_core/data/<this file>: parents[3] is the repository root.
REPO_ROOT = Path(__file__).resolve().parents[3]
MNIST_T10K = REPO_ROOT / ".." / "shared" / "data" / "mnist-t10k"
T10K_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_repo_root_is_computed_correctly() -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file()


@pytest.fixture(scope="module")
def real_t10k() -> Path:
    assert MNIST_T10K.is_dir(), f"real MNIST t10k files missing at {MNIST_T10K} (they live in ../shared/data)"
    return MNIST_T10K


def test_real_mnist_t10k(real_t10k: Path) -> None:
    ds = load_mnist(real_t10k)  # the only IDX pair there: split auto-detected
    assert ds.x.shape == (10000, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.class_counts() == T10K_CLASS_COUNTS
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert ds.classes == [str(d) for d in range(10)]
    assert torch.equal(load_mnist(real_t10k, split="t10k").y, ds.y)


def test_real_mnist_8k_2k_split(real_t10k: Path) -> None:
    bundle = load_data(DataConfig(source="mnist", path=str(real_t10k), val_size=2000, seed=0))
    assert len(bundle.train) == 8000 and len(bundle.val) == 2000
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    combined = [a + b for a, b in zip(bundle.train.class_counts(), bundle.val.class_counts(), strict=True)]
    assert combined == T10K_CLASS_COUNTS
    # Stratified: every class holds ~20% of its samples out.
    for held, total in zip(bundle.val.class_counts(), T10K_CLASS_COUNTS, strict=True):
        assert abs(held - 0.2 * total) <= 1
    assert abs(float(bundle.train.x.mean())) < 1e-3


@pytest.mark.parametrize("gz", [True, False])
def test_generated_idx_raw_and_gzip(mnist_dir: Callable, gz: bool) -> None:
    directory, images, labels = mnist_dir(n=25, gz=gz)
    ds = load_mnist(directory)
    assert ds.x.shape == (25, 1, 28, 28)
    assert torch.allclose(ds.x[:, 0], torch.from_numpy(images).float() / 255)
    assert ds.y.tolist() == labels.tolist()


def test_split_selection_between_train_and_t10k(tmp_path: Path, write_idx: Callable) -> None:
    for split, n in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.zeros((n, 4, 4), np.uint8), gz=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.zeros(n, np.uint8), gz=True)
    assert len(load_mnist(tmp_path, split="train")) == 12
    assert len(load_mnist(tmp_path, split="t10k")) == 5
    with pytest.raises(DatasetError, match=r"several IDX splits \(t10k, train\)"):
        load_mnist(tmp_path)
    with pytest.raises(DatasetError, match="no IDX image/label pair for split 'test'"):
        load_mnist(tmp_path, split="test")


def test_dotted_file_names_and_non_square_images(tmp_path: Path, write_idx: Callable) -> None:
    write_idx(tmp_path / "train-images.idx3-ubyte", np.full((3, 5, 7), 255, np.uint8))
    write_idx(tmp_path / "train-labels.idx1-ubyte", np.array([1, 2, 3], np.uint8))
    ds = load_mnist(tmp_path)
    assert ds.x.shape == (3, 1, 5, 7) and float(ds.x.min()) == 1.0


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no IDX image/label pair found"):
        load_mnist(tmp_path)


def test_path_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="must be a directory"):
        load_mnist(tmp_path / "missing")


def _pair(
    tmp_path: Path, write_idx: Callable, images: np.ndarray, labels: np.ndarray, **image_kwargs
) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, gz=True, **image_kwargs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, gz=True)


def test_wrong_magic_names_the_file(tmp_path: Path, write_idx: Callable) -> None:
    # Images and labels swapped: the image file carries the label magic.
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(4, np.uint8), gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), gz=True)
    with pytest.raises(
        DatasetError,
        match=r"^t10k-images-idx3-ubyte\.gz: IDX magic 2049 is not an image file \(expected 2051\)$",
    ):
        load_mnist(tmp_path)


def test_unknown_magic(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((2, 3, 3), np.uint8), np.zeros(2, np.uint8), magic=0x0D03)
    with pytest.raises(DatasetError, match="not an unsigned-byte MNIST IDX file"):
        load_mnist(tmp_path)


def test_truncated_data(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((4, 3, 3), np.uint8), np.zeros(4, np.uint8), cut=5)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: truncated IDX data"):
        load_mnist(tmp_path)


def test_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        load_mnist(tmp_path)


def test_trailing_bytes(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((4, 3, 3), np.uint8), np.zeros(4, np.uint8), extra=b"\x00")
    with pytest.raises(DatasetError, match="trailing bytes"):
        load_mnist(tmp_path)


def test_image_label_count_mismatch(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((4, 3, 3), np.uint8), np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match=r"4 images but t10k-labels-idx1-ubyte\.gz holds 5 labels"):
        load_mnist(tmp_path)


def test_label_out_of_range(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((3, 3, 3), np.uint8), np.array([0, 10, 1], np.uint8))
    with pytest.raises(DatasetError, match=r"label 10 at index 1 is out of range \[0, 10\)"):
        load_mnist(tmp_path)


def test_corrupt_gzip(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((3, 3, 3), np.uint8), np.zeros(3, np.uint8))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: corrupt gzip stream"):
        load_mnist(tmp_path)


def test_header_over_the_size_limit_is_rejected_before_reading(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((8, 8, 8), np.uint8), np.zeros(8, np.uint8))
    with pytest.raises(DatasetError, match="over the 100-byte limit"):
        load_mnist(tmp_path, max_bytes=100)


def test_zero_samples(tmp_path: Path, write_idx: Callable) -> None:
    _pair(tmp_path, write_idx, np.zeros((0, 3, 3), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(DatasetError, match="holds no samples"):
        load_mnist(tmp_path)
