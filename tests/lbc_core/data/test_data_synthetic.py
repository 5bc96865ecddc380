import pytest
import torch

from lbc_core.data import DatasetError, SyntheticSpec, make_synthetic, split_dataset


def test_deterministic_and_balanced() -> None:
    a = make_synthetic(300, (3, 5, 5), 6, seed=1)
    b = make_synthetic(300, (3, 5, 5), 6, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape == (300, 3, 5, 5) and a.class_counts() == [50] * 6
    assert float(a.x.min()) >= 0.0 and float(a.x.max()) <= 1.0
    assert not torch.equal(make_synthetic(300, (3, 5, 5), 6, seed=2).x, a.x)


def test_learnable_by_nearest_class_mean() -> None:
    # Default shape and noise: well above the 10% chance level on held-out samples.
    train, val = split_dataset(make_synthetic(2000, seed=0), val_fraction=0.25)
    means = torch.stack([train.x[train.y == c].flatten(1).mean(0) for c in range(10)])
    predicted = torch.cdist(val.x.flatten(1), means).argmin(1)
    assert (predicted == val.y).float().mean() > 0.9


def test_spec_validation_and_list_shapes() -> None:
    assert SyntheticSpec(input_shape=[1, 4, 4]).input_shape == (1, 4, 4)  # type: ignore[arg-type]
    for bad in (
        {"num_samples": 0},
        {"num_classes": 1},
        {"input_shape": (2, 3)},
        {"input_shape": (0,)},
        {"noise": -1.0},
    ):
        with pytest.raises(DatasetError):
            SyntheticSpec(**bad)
