import pytest
import torch

from lbc_core.data import ArrayDataset, DatasetError


def _ds(n: int = 6, classes: int = 3) -> ArrayDataset:
    return ArrayDataset(torch.rand(n, 1, 4, 4), torch.arange(n) % classes, [str(c) for c in range(classes)])


def test_holds_float32_images_and_int64_labels() -> None:
    ds = ArrayDataset(
        torch.rand(4, 2, 3, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0], dtype=torch.uint8), ["a", "b"]
    )
    assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert len(ds) == 4 and ds.input_shape == (2, 3, 3) and ds.num_classes == 2
    x, y = ds[2]
    assert x.shape == (2, 3, 3) and int(y) == 1
    assert ds.class_counts() == [2, 2]


def test_flat_data_is_accepted() -> None:
    ds = ArrayDataset(torch.rand(5, 7), torch.zeros(5, dtype=torch.int64), ["only"])
    assert ds.input_shape == (7,)


def test_subset_copies_rows_and_keeps_classes() -> None:
    ds = _ds()
    sub = ds.subset([4, 1])
    assert torch.equal(sub.x, ds.x[[4, 1]]) and sub.y.tolist() == [1, 1]
    assert sub.classes == ds.classes


@pytest.mark.parametrize(
    ("x", "y", "classes", "message"),
    [
        (torch.rand(3, 4, 4), torch.zeros(3, dtype=torch.int64), ["a"], "N x F or N x C x H x W"),
        (torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), ["a"], "floating-point"),
        (torch.rand(3, 4), torch.zeros(2, dtype=torch.int64), ["a"], "3 samples in x but 2 labels"),
        (torch.rand(3, 4), torch.zeros(3), ["a"], "integer labels"),
        (torch.rand(3, 4), torch.tensor([0, 1, 2]), ["a", "b"], "label 2 is out of range [0, 2)"),
        (torch.rand(3, 4), torch.tensor([0, -1, 1]), ["a", "b"], "label -1 is out of range"),
        (torch.rand(3, 4), torch.tensor([0, 0, 0]), [], "at least one class"),
        (torch.rand(3, 4), torch.tensor([0, 0, 0]), ["a", "a"], "not unique"),
        (torch.full((3, 4), float("nan")), torch.tensor([0, 0, 0]), ["a"], "NaN"),
    ],
)
def test_rejects_malformed_arrays(x: torch.Tensor, y: torch.Tensor, classes: list[str], message: str) -> None:
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace(")", r"\)")):
        ArrayDataset(x, y, classes, name="t")


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)
