import pytest
import torch

from lbc_core.data import ArrayDataset, DatasetError, split_dataset, take_first


def _ds(n: int = 100, classes: int = 4) -> ArrayDataset:
    # Unequal class sizes make stratification observable; x encodes the sample index.
    y = torch.tensor([min(i % 7, classes - 1) for i in range(n)])
    return ArrayDataset(torch.arange(n, dtype=torch.float32)[:, None], y, [str(c) for c in range(classes)])


def _ids(ds: ArrayDataset) -> list[int]:
    return ds.x[:, 0].long().tolist()


@pytest.mark.parametrize("stratify", [True, False])
def test_split_is_deterministic_disjoint_and_complete(stratify: bool) -> None:
    ds = _ds()
    train, val = split_dataset(ds, val_fraction=0.25, seed=3, stratify=stratify)
    again_train, again_val = split_dataset(ds, val_fraction=0.25, seed=3, stratify=stratify)
    assert _ids(train) == _ids(again_train) and _ids(val) == _ids(again_val)
    assert len(val) == 25 and len(train) == 75
    assert not set(_ids(train)) & set(_ids(val))
    assert sorted(_ids(train) + _ids(val)) == list(range(100))
    assert _ids(val) == sorted(_ids(val))  # original order is kept
    other_train, _ = split_dataset(ds, val_fraction=0.25, seed=4, stratify=stratify)
    assert _ids(other_train) != _ids(train)


def test_labels_follow_their_samples() -> None:
    ds = _ds()
    train, val = split_dataset(ds, val_size=30, seed=0)
    for part in (train, val):
        assert torch.equal(part.y, ds.y[part.x[:, 0].long()])
        assert part.classes == ds.classes


def test_stratified_split_keeps_class_proportions() -> None:
    ds = _ds(700)
    counts = ds.class_counts()  # [100, 100, 100, 400]
    _, val = split_dataset(ds, val_size=140, seed=1)
    assert len(val) == 140
    assert val.class_counts() == [c // 5 for c in counts]


def test_val_size_is_exact_with_uneven_classes() -> None:
    ds = _ds(101)
    for size in (1, 7, 33, 100):
        _, val = split_dataset(ds, val_size=size, seed=size)
        assert len(val) == size


def test_val_size_overrides_fraction() -> None:
    _, val = split_dataset(_ds(), val_fraction=0.5, val_size=10)
    assert len(val) == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\)"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\)"),
        ({"val_size": 0}, r"val_size must be in \[1, 99\]"),
        ({"val_size": 100}, r"val_size must be in \[1, 99\]"),
        ({}, "needs val_fraction or val_size"),
    ],
)
def test_invalid_split_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        split_dataset(_ds(), **kwargs)


def test_too_small_to_split() -> None:
    with pytest.raises(DatasetError, match="at least 2 samples"):
        split_dataset(_ds(1), val_fraction=0.5)


def test_separate_validation_set() -> None:
    train, val = _ds(50), _ds(20)
    assert split_dataset(train, val_dataset=val, val_fraction=0.5) == (train, val)
    with pytest.raises(DatasetError, match="validation classes"):
        split_dataset(train, val_dataset=_ds(20, classes=3))
    wide = ArrayDataset(torch.zeros(5, 2), torch.zeros(5, dtype=torch.int64), train.classes)
    with pytest.raises(DatasetError, match=r"shape \(2,\)"):
        split_dataset(train, val_dataset=wide)


def test_take_first_is_a_deterministic_subset() -> None:
    ds = _ds()
    a, b = take_first(ds, 10, seed=5), take_first(ds, 10, seed=5)
    assert _ids(a) == _ids(b) and len(set(_ids(a))) == 10
    assert _ids(take_first(ds, 10, seed=6)) != _ids(a)
    assert take_first(ds, 500) is ds
    with pytest.raises(DatasetError):
        take_first(ds, 0)
