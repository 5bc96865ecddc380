import pytest
import torch

from lbc_core.data import ArrayDataset, Augmentation, DatasetError, make_loader


def _ds(n: int = 50) -> ArrayDataset:
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 1, 4, 4).clone()
    return ArrayDataset(x, torch.arange(n) % 3, ["a", "b", "c"])


def _order(loader) -> list[int]:
    return [int(v) for x, _ in loader for v in x[:, 0, 0, 0]]


def test_each_epoch_is_a_permutation_with_matching_labels() -> None:
    ds = _ds()
    loader = make_loader(ds, 8, shuffle=True, seed=0)
    assert len(loader) == 7
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [8] * 6 + [2]
    seen = [int(v) for x, _ in batches for v in x[:, 0, 0, 0]]
    assert sorted(seen) == list(range(50)) and seen != list(range(50))
    for x, y in batches:
        assert torch.equal(y, x[:, 0, 0, 0].long() % 3)


def test_same_seed_and_epoch_give_the_same_batches() -> None:
    ds = _ds()
    first = make_loader(ds, 8, shuffle=True, seed=3)
    second = make_loader(ds, 8, shuffle=True, seed=3)
    epoch0, epoch1 = _order(first), _order(first)
    assert epoch0 != epoch1  # iterating again advances the epoch
    assert _order(second) == epoch0 and _order(second) == epoch1
    assert _order(first.batches(1)) == epoch1 and first.epoch == 2  # batches() is pure
    first.set_epoch(0)
    assert _order(first) == epoch0
    assert _order(make_loader(ds, 8, shuffle=True, seed=3, epoch=1)) == epoch1
    assert _order(make_loader(ds, 8, shuffle=True, seed=4)) != epoch0


def test_no_shuffle_and_drop_last() -> None:
    loader = make_loader(_ds(), 8, shuffle=False, drop_last=True)
    assert len(loader) == 6
    assert _order(loader) == list(range(48))


def test_augmentation_is_reproducible_per_epoch() -> None:
    ds = _ds()
    aug = Augmentation(crop_padding=1, hflip=True)
    a = [x for x, _ in make_loader(ds, 16, True, 5, aug)]
    b = [x for x, _ in make_loader(ds, 16, True, 5, aug)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert any(bool((x == 0).any()) for x in a)  # some padding was cropped in


def test_global_rng_is_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(make_loader(_ds(), 8, True, 0, Augmentation(crop_padding=1)))
    assert torch.equal(torch.rand(3), expected)


def test_invalid_arguments() -> None:
    with pytest.raises(DatasetError, match="batch_size"):
        make_loader(_ds(), 0, shuffle=True)
    flat = ArrayDataset(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), ["a"])
    with pytest.raises(DatasetError, match="augmentation needs image data"):
        make_loader(flat, 2, True, augment=Augmentation(hflip=True))
    assert len(list(make_loader(flat, 2, True, augment=Augmentation()))) == 2
