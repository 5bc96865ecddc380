"""Masks: one bit per weight, exact round trip, derived from a finalized model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lbc_core.export import ExportError, load_masks, masks_from_model, save_masks


def test_round_trip_is_exact_for_odd_sizes(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    masks = {
        "a": torch.rand(7, 13, generator=generator) > 0.5,  # 91 bits: last byte padded
        "conv": torch.rand(4, 8, 3, 3, generator=generator) > 0.5,
        "one": torch.tensor([True]),
        "empty": torch.zeros(0, 4, dtype=torch.bool),
    }
    path = tmp_path / "masks.safetensors"
    save_masks(masks, path)
    loaded = load_masks(path)
    assert set(loaded) == set(masks)
    for name, mask in masks.items():
        assert loaded[name].dtype == torch.bool
        assert torch.equal(loaded[name], mask), name


def test_masks_are_stored_bit_packed_with_shapes_in_metadata(tmp_path: Path) -> None:
    mask = torch.ones(120, 256, dtype=torch.bool)
    path = tmp_path / "masks.safetensors"
    save_masks({"classifier.1": mask}, path)
    with safe_open(str(path), framework="pt") as handle:
        packed = handle.get_tensor("classifier.1")
        metadata = handle.metadata()
    assert packed.dtype == torch.uint8
    assert packed.numel() == mask.numel() // 8
    assert json.loads(metadata["shapes"]) == {"classifier.1": [120, 256]}
    assert path.stat().st_size < mask.numel() // 8 + 1024


def test_masks_from_a_finalized_model_match_the_learned_masks(lenet, tmp_path: Path) -> None:
    names = [layer.name for layer in lenet.report.layers]
    masks = masks_from_model(lenet.model, names)
    assert set(masks) == set(lenet.masks) == {"features.3", "classifier.1", "classifier.3"}
    for name in names:
        assert torch.equal(masks[name], lenet.masks[name])
    path = tmp_path / "masks.safetensors"
    save_masks(masks, path)
    for name, mask in load_masks(path).items():
        assert torch.equal(mask, masks[name])


def test_unknown_layer_and_non_boolean_masks_are_refused(lenet, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="'nope' is not in the model"):
        masks_from_model(lenet.model, ["nope"])
    with pytest.raises(ExportError, match="must be boolean"):
        save_masks({"w": torch.ones(4)}, tmp_path / "m.safetensors")


def test_a_file_that_is_not_a_masks_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(4, dtype=torch.uint8)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ExportError, match=r"expected 'lbc\.masks/1'"):
        load_masks(path)


def test_packed_length_must_match_the_recorded_shape(tmp_path: Path) -> None:
    path = tmp_path / "masks.safetensors"
    metadata = {"format": "lbc.masks/1", "bit_order": "big", "shapes": json.dumps({"w": [4, 8]})}
    save_file({"w": torch.zeros(3, dtype=torch.uint8)}, str(path), metadata=metadata)
    with pytest.raises(ExportError, match="should be 4 packed bytes"):
        load_masks(path)


def test_missing_masks_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="masks file not found"):
        load_masks(tmp_path / "none.safetensors")
