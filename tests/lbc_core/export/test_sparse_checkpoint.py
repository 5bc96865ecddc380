"""Sparse checkpoint: the finalized state_dict as safetensors, and a loader that never unpickles."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from lbc_core.export import (
    ExportError,
    MissingExportFileError,
    load_state_dict_file,
    save_sparse_checkpoint,
)
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, build_sparsifier


def test_round_trip_is_bit_exact_and_keeps_the_zeros(lenet, assert_bits_equal, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_sparse_checkpoint(lenet.model, path)
    loaded = load_state_dict_file(path)

    expected = lenet.model.state_dict()
    assert set(loaded) == set(expected)
    for key, tensor in expected.items():
        assert_bits_equal(loaded[key], tensor)
    sparse_weight = loaded["features.3.weight"]
    assert (sparse_weight == 0).float().mean().item() == pytest.approx(0.5)


def test_loaded_checkpoint_restores_the_model_strictly(lenet, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_sparse_checkpoint(lenet.model, path)
    fresh = build_model("lenet5", num_classes=10, in_channels=1).eval()
    fresh.load_state_dict(load_state_dict_file(path), strict=True)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(fresh(x), lenet.model(x))


def test_tied_weights_are_saved_by_copying(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    model[1].weight = model[0].weight  # tied: one Parameter under two names
    path = tmp_path / "tied.safetensors"
    save_sparse_checkpoint(model, path)
    loaded = load_state_dict_file(path)
    assert torch.equal(loaded["0.weight"], loaded["1.weight"])
    assert torch.equal(loaded["0.weight"], model[0].weight.detach())


def test_a_model_that_was_not_finalized_is_refused(tmp_path: Path) -> None:
    model = build_model("lenet5", num_classes=10, in_channels=1)
    build_sparsifier(SparsityConfig(method="asp", pattern=NMPattern(2, 4))).prepare(model)
    with pytest.raises(ExportError, match=r"finalize\(\)"):
        save_sparse_checkpoint(model, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_torch_files_load_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    state = {"w": torch.tensor([0.0, -1.5, 0.0, 2.0]), "n": torch.tensor(3)}
    torch.save(state, path)
    loaded = load_state_dict_file(path)
    assert set(loaded) == {"w", "n"}
    assert torch.equal(loaded["w"], state["w"])


class _NotATensor:
    pass


def test_pickled_objects_are_refused_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": _NotATensor()}, path)
    with pytest.raises(ExportError, match="could not be loaded as plain tensors"):
        load_state_dict_file(path)


def test_torch_file_that_is_not_a_flat_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ExportError, match="not a flat state_dict"):
        load_state_dict_file(path)


def test_unknown_content_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(ExportError, match="neither a safetensors file nor a PyTorch checkpoint"):
        load_state_dict_file(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingExportFileError, match="checkpoint not found"):
        load_state_dict_file(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "absent.safetensors")


def test_truncated_safetensors_is_a_clear_error(lenet, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_sparse_checkpoint(lenet.model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="not a readable safetensors file"):
        load_state_dict_file(path)


def test_damaged_safetensors_header_is_a_clear_error(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 999]}}).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(ExportError, match="not a readable safetensors file"):
        load_state_dict_file(path)


def test_damaged_torch_archive_is_a_clear_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(64)}, buffer)
    path = tmp_path / "cut.pt"
    path.write_bytes(buffer.getvalue()[:100])
    with pytest.raises(ExportError, match="could not be loaded"):
        load_state_dict_file(path)
