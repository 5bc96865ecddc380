import pytest
import torch

from lbc_core.data import (
    ArrayDataset,
    Augmentation,
    DatasetError,
    Normalization,
    augment_batch,
    compute_normalization,
    normalize,
)


def test_per_channel_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, 4, 4, generator=generator) * torch.tensor([1.0, 2.0, 0.5])[:, None, None]
    x = x + torch.tensor([0.0, 5.0, -1.0])[:, None, None]
    ds = ArrayDataset(x, torch.zeros(500, dtype=torch.int64), ["a"])
    norm = compute_normalization(ds)
    assert norm.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-5)
    assert norm.std == pytest.approx(tuple(x.std(dim=(0, 2, 3), unbiased=False).tolist()), rel=1e-4)
    out = normalize(ds, norm).x
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (out.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4


def test_flat_data_is_normalised_per_feature_and_constant_features_are_kept() -> None:
    x = torch.tensor([[1.0, 7.0], [3.0, 7.0]])
    norm = compute_normalization(ArrayDataset(x, torch.tensor([0, 0]), ["a"]))
    assert norm.mean == (2.0, 7.0) and norm.std == (1.0, 1.0)
    assert torch.equal(norm.apply(x), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))


def test_normalization_validates() -> None:
    with pytest.raises(DatasetError):
        Normalization((0.0,), (0.0,))
    with pytest.raises(DatasetError):
        Normalization((0.0, 1.0), (1.0,))
    with pytest.raises(DatasetError, match="3 channels"):
        Normalization((0.0,), (1.0,)).apply(torch.zeros(2, 3, 4, 4))


def _distinct_batch(n: int = 16) -> torch.Tensor:
    return torch.arange(n * 2 * 6 * 5, dtype=torch.float32).reshape(n, 2, 6, 5) + 1


def test_crop_is_a_shifted_window_of_the_padded_input() -> None:
    x = _distinct_batch()
    out = augment_batch(x, Augmentation(crop_padding=2), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 5])
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 1


def test_augmentation_is_deterministic_under_a_generator() -> None:
    x = _distinct_batch()
    aug = Augmentation(crop_padding=1, hflip=True)
    first = augment_batch(x, aug, torch.Generator().manual_seed(7))
    second = augment_batch(x, aug, torch.Generator().manual_seed(7))
    third = augment_batch(x, aug, torch.Generator().manual_seed(8))
    assert torch.equal(first, second) and not torch.equal(first, third)


def test_flip_is_off_by_default_and_flips_some_samples_when_on() -> None:
    assert Augmentation().hflip is False and not Augmentation().active
    x = _distinct_batch(32)
    assert augment_batch(x, Augmentation(), torch.Generator()) is x
    out = augment_batch(x, Augmentation(hflip=True), torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(32)]
    kept = [torch.equal(out[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 32


def test_augmentation_needs_images() -> None:
    with pytest.raises(DatasetError, match="N x C x H x W"):
        augment_batch(torch.zeros(4, 10), Augmentation(hflip=True), torch.Generator())
    with pytest.raises(DatasetError):
        Augmentation(crop_padding=-1)


def test_augmentation_is_a_callable_for_the_trainer() -> None:
    x = _distinct_batch()
    aug = Augmentation(crop_padding=2, hflip=True)
    assert torch.equal(
        aug(x, torch.Generator().manual_seed(3)), augment_batch(x, aug, torch.Generator().manual_seed(3))
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_batches_with_a_cpu_generator_match_the_cpu_result() -> None:
    x = _distinct_batch()
    aug = Augmentation(crop_padding=2, hflip=True)
    on_gpu = aug(x.cuda(), torch.Generator().manual_seed(5))
    assert on_gpu.is_cuda
    assert torch.equal(on_gpu.cpu(), aug(x, torch.Generator().manual_seed(5)))
