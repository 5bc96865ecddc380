import dataclasses
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import lbc_core.data as data_pkg
from lbc_core.data import (
    SOURCES,
    ArrayDataset,
    DataBundle,
    DataConfig,
    DatasetError,
    SyntheticSpec,
    compute_normalization,
    load_data,
    make_loader,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"source": "mnst"},
            "unknown data source 'mnst'; choose one of: digits, mnist, npz, imagefolder, cifar10, cifar100, synthetic",
        ),
        ({"source": "mnist"}, "'mnist' needs a path"),
        ({"source": "digits", "path": "/data"}, "takes no path"),
        ({"source": "digits", "val_fraction": 0.0}, r"val_fraction must be in \(0, 1\)"),
        ({"source": "digits", "val_fraction": 1.5}, r"val_fraction must be in \(0, 1\)"),
        ({"source": "digits", "val_fraction": float("nan")}, "val_fraction must be a number"),
        ({"source": "digits", "val_size": 0}, "val_size must be >= 1"),
        ({"source": "digits", "limit": 1}, "limit must be >= 2"),
        ({"source": "digits", "seed": -1}, "seed must be >= 0"),
        ({"source": "digits", "hflip": True}, "hflip=True needs augment=True"),
        ({"source": "npz", "path": "x.npz", "split": "train"}, "split is only used by"),
        (
            {"source": "mnist", "path": "d", "image_size": 32},
            "image_size is only used by source 'imagefolder'",
        ),
        ({"source": "imagefolder", "path": "d", "image_size": 0}, "image_size must be >= 1"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        DataConfig(**kwargs)


def test_config_is_frozen_and_sources_are_listed() -> None:
    config = DataConfig(source="digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]
    assert set(SOURCES) == {"digits", "mnist", "npz", "imagefolder", "cifar10", "cifar100", "synthetic"} | {
        "text",
        "labeled-text",
    }
    assert {"DataConfig", "DataBundle", "load_data", "make_loader", "DatasetError", "ArrayDataset"} <= set(
        data_pkg.__all__
    )
    assert all(hasattr(data_pkg, name) for name in data_pkg.__all__)


def test_digits_bundle() -> None:
    bundle = load_data(DataConfig(source="digits"))
    assert isinstance(bundle, DataBundle)
    assert (len(bundle.train), len(bundle.val)) == (1438, 359)
    assert (
        bundle.input_shape == (1, 8, 8)
        and bundle.num_classes == 10
        and bundle.classes == [str(d) for d in range(10)]
    )
    assert len(bundle.mean) == 1 and 0.0 < bundle.mean[0] < 1.0 and bundle.augment is None
    assert abs(float(bundle.train.x.mean())) < 1e-4


def test_normalisation_uses_the_training_split_only(tmp_path: Path) -> None:
    # Validation samples are far brighter: if they leaked into the statistics the
    # training mean would move away from the raw training mean.
    x = np.concatenate([np.full((40, 1, 2, 2), 0.1, np.float32), np.full((10, 1, 2, 2), 0.9, np.float32)])
    x[:40:2] = 0.3
    y = np.arange(50) % 2
    np.savez(tmp_path / "train.npz", x=x[:40], y=y[:40])
    np.savez(tmp_path / "val.npz", x=x[40:], y=y[40:])
    bundle = load_data(
        DataConfig(source="npz", path=str(tmp_path / "train.npz"), val_path=str(tmp_path / "val.npz"))
    )
    assert bundle.mean == pytest.approx((0.2,)) and bundle.std == pytest.approx((0.1,))
    assert torch.allclose(bundle.val.x, torch.full((10, 1, 2, 2), 7.0), atol=1e-4)


def test_split_statistics_match_the_raw_training_split() -> None:
    config = DataConfig(
        source="synthetic", synthetic=SyntheticSpec(num_samples=200, input_shape=(3, 4, 4), num_classes=4)
    )
    bundle = load_data(config)
    raw_train = (
        bundle.train.x * torch.tensor(bundle.std)[:, None, None] + torch.tensor(bundle.mean)[:, None, None]
    )
    stats = compute_normalization(ArrayDataset(raw_train, bundle.train.y, bundle.classes))
    assert stats.mean == pytest.approx(bundle.mean, abs=1e-5)


def test_synthetic_bundle_is_deterministic_and_augmentable() -> None:
    config = DataConfig(
        source="synthetic", augment=True, hflip=True, seed=2, synthetic=SyntheticSpec(num_samples=120)
    )
    a, b = load_data(config), load_data(config)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert a.augment is not None and a.augment.hflip and a.augment.crop_padding == 1
    batches = list(make_loader(a.train, 32, True, config.seed, a.augment, drop_last=True))
    assert len(batches) == 3 and batches[0][0].shape == (32, 1, 8, 8)


def test_augment_on_flat_data_is_refused() -> None:
    config = DataConfig(
        source="synthetic", augment=True, synthetic=SyntheticSpec(num_samples=50, input_shape=(6,))
    )
    with pytest.raises(DatasetError, match="augmentation needs image inputs"):
        load_data(config)


def test_mnist_with_limit_and_val_size(mnist_dir: Callable) -> None:
    directory, _, _ = mnist_dir(n=60)
    bundle = load_data(DataConfig(source="mnist", path=str(directory), limit=40, val_size=10, split="train"))
    assert (len(bundle.train), len(bundle.val)) == (30, 10)


def test_mnist_separate_validation_directory(mnist_dir: Callable) -> None:
    train_dir, _, _ = mnist_dir(n=30, name="a")
    val_dir, _, _ = mnist_dir(n=20, split="t10k", name="b", seed=1)
    bundle = load_data(DataConfig(source="mnist", path=str(train_dir), val_path=str(val_dir)))
    assert (len(bundle.train), len(bundle.val)) == (30, 20)


def test_imagefolder_validation_follows_training_size_and_mode(tmp_path: Path, image_tree: Callable) -> None:
    train = image_tree(tmp_path / "train", {"a": [(8, 8, "L", "png")] * 3, "b": [(8, 8, "L", "png")] * 3})
    val = image_tree(tmp_path / "val", {"a": [(12, 10, "RGB", "png")], "b": [(5, 5, "L", "png")]})
    bundle = load_data(
        DataConfig(source="imagefolder", path=str(train), val_path=str(val)), scratch_dir=tmp_path / "s"
    )
    assert bundle.val.x.shape == (2, 1, 8, 8) and bundle.input_shape == (1, 8, 8)


def test_imagefolder_archive_with_image_size(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"x": [(8, 8, "RGB", "png")] * 4, "y": [(8, 8, "RGB", "png")] * 4})
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="d")
    bundle = load_data(
        DataConfig(source="imagefolder", path=str(archive), image_size=6, val_size=2), tmp_path / "s"
    )
    assert bundle.input_shape == (3, 6, 6) and len(bundle.mean) == 3 and bundle.classes == ["x", "y"]
    assert bundle.val.class_counts() == [1, 1]


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_sources(tmp_path: Path, cifar_dir: Callable, variant: str) -> None:
    cifar_dir(tmp_path, variant, per_batch=10)
    bundle = load_data(DataConfig(source=variant, path=str(tmp_path)))
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == (10 if variant == "cifar10" else 100)
    test = load_data(DataConfig(source=variant, path=str(tmp_path), split="test", val_size=2))
    assert len(test.train) + len(test.val) == 10


def test_npz_source_and_missing_path(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((20, 5)), y=np.arange(20) % 2)
    bundle = load_data(DataConfig(source="npz", path=str(tmp_path / "d.npz"), val_fraction=0.25))
    assert bundle.input_shape == (5,) and len(bundle.mean) == 5 and len(bundle.val) == 5
    with pytest.raises(DatasetError, match="data path does not exist"):
        load_data(DataConfig(source="npz", path=str(tmp_path / "nope.npz")))


def test_single_class_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "one.npz", x=np.zeros((10, 2), np.float32), y=np.zeros(10, np.int64))
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_data(DataConfig(source="npz", path=str(tmp_path / "one.npz")))
