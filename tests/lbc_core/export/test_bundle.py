"""export_all: every file of a job, verified N:M, manifest written last and listing the others."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from lbc_core.export import (
    ExportError,
    export_all,
    load_compressed,
    load_masks,
    load_state_dict_file,
)
from lbc_core.export import bundle as bundle_module
from lbc_core.sparsity import NMPattern

LENET_ARGS = {"num_classes": 10, "in_channels": 1}
EXPECTED_FILES = ["model.safetensors", "masks.safetensors", "model.nm.safetensors", "manifest.json"]


def _export(lenet, out_dir: Path, **overrides):
    kwargs = {
        "architecture": "lenet5",
        "architecture_args": LENET_ARGS,
        "metrics": {"final_accuracy": 0.97},
        "data": {"name": "digits"},
        "pattern": lenet.pattern,
    }
    return export_all(lenet.model, lenet.report, out_dir, **{**kwargs, **overrides})


def test_export_all_writes_every_file_and_a_manifest_listing_them(lenet, tmp_path: Path) -> None:
    out = tmp_path / "job" / "export"
    result = _export(lenet, out)

    assert [f.name for f in result.files] == EXPECTED_FILES
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED_FILES)
    for exported in result.files:
        data = exported.path.read_bytes()
        assert exported.size == len(data)
        assert exported.sha256 == hashlib.sha256(data).hexdigest()
    assert result.file("manifest.json").content_type == "application/json"
    assert result.file("model.safetensors").content_type == "application/octet-stream"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["verified"] is True
    assert manifest["metrics"] == {"final_accuracy": 0.97}
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert list(listed) == EXPECTED_FILES[:3]
    for exported in result.files[:3]:
        assert listed[exported.name]["sha256"] == exported.sha256
        assert listed[exported.name]["size"] == exported.size
    assert listed["masks.safetensors"]["role"] == "masks"
    assert manifest["compressed_size"]["compressed_bytes"] < manifest["compressed_size"]["dense_bytes"]


def test_exported_files_round_trip(lenet, tmp_path: Path) -> None:
    result = _export(lenet, tmp_path)
    state = lenet.model.state_dict()
    checkpoint = load_state_dict_file(result.file("model.safetensors").path)
    compressed = load_compressed(result.file("model.nm.safetensors").path)
    for key, tensor in state.items():
        assert torch.equal(checkpoint[key], tensor)
        assert torch.equal(compressed[key], tensor)
    masks = load_masks(result.file("masks.safetensors").path)
    assert set(masks) == set(lenet.masks)
    for name, mask in lenet.masks.items():
        assert torch.equal(masks[name], mask)


def test_non_n_m_weights_are_refused_naming_the_layer(lenet, tmp_path: Path) -> None:
    with torch.no_grad():
        lenet.model.classifier[3].weight[0, :4] = 1.0
    with pytest.raises(ExportError, match=r"layer 'classifier.3' is not exactly 2:4: 1 groups"):
        _export(lenet, tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_pattern_must_match_the_report(lenet, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="report is for pattern 2:4"):
        _export(lenet, tmp_path, pattern=NMPattern(1, 4))
    with pytest.raises(ExportError, match="pattern must look like"):
        _export(lenet, tmp_path, pattern="two of four")


def test_the_manifest_is_written_last_and_a_stale_one_is_removed(lenet, tmp_path: Path, monkeypatch) -> None:
    _export(lenet, tmp_path)
    assert (tmp_path / "manifest.json").exists()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module, "save_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        _export(lenet, tmp_path)
    # No manifest may vouch for a directory whose files are half rewritten.
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_reflects_the_exported_weights(lenet, tmp_path: Path) -> None:
    # A layer pruned further after finalize: still N:M, and the manifest counts what is in the file.
    with torch.no_grad():
        lenet.model.classifier[3].weight[:, :8] = 0.0
    result = _export(lenet, tmp_path)
    layer = next(entry for entry in result.manifest["layers"] if entry["name"] == "classifier.3")
    expected = int((lenet.model.classifier[3].weight != 0).sum())
    assert layer["nonzeros"] == expected
    assert layer["density"] == pytest.approx(expected / (84 * 120))
