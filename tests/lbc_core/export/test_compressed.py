"""Compressed N:M form: kept values + positions, bit-exact rebuild, smaller than dense, model rebuild."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from lbc_core.export import (
    ExportError,
    build_manifest,
    compress_state_dict,
    compressed_size_report,
    export_all,
    load_compressed,
    rebuild_model,
    save_compressed,
    write_manifest,
)
from lbc_core.sparsity import NMPattern, magnitude_mask, to_groups

LENET_ARGS = {"num_classes": 10, "in_channels": 1}


def _nm_weight(
    shape: tuple[int, ...], pattern: NMPattern, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(shape, generator=generator).to(dtype)
    return weight * magnitude_mask(weight, pattern)


def test_hand_example_values_indices_and_padding() -> None:
    weight = torch.tensor(
        [
            [0.0, 3.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0],  # two kept; an all-zero group
            [0.0, 0.0, 5.0, 0.0, 1.0, 0.0, 0.0, -0.0],  # one kept (padded); one kept at 0 (padded)
        ]
    )
    tensors, metadata = compress_state_dict({"fc.weight": weight}, ["fc"], NMPattern(2, 4))
    assert set(tensors) == {"fc.weight::nm_values", "fc.weight::nm_indices"}
    values, indices = tensors["fc.weight::nm_values"], tensors["fc.weight::nm_indices"]
    assert indices.dtype == torch.uint8
    assert indices.tolist() == [[1, 3], [0, 1], [0, 2], [0, 1]]
    assert values.tolist() == [[3.0, -2.0], [0.0, 0.0], [0.0, 5.0], [1.0, 0.0]]
    layers = json.loads(metadata["layers"])
    assert layers == [
        {"name": "fc", "key": "fc.weight", "shape": [2, 8], "dtype": "torch.float32", "layout": "out_in"}
    ]
    assert metadata["pattern"] == "2:4"


def test_conv_groups_follow_the_channels_last_group_layout() -> None:
    pattern = NMPattern(2, 4)
    weight = _nm_weight((6, 8, 3, 3), pattern)
    tensors, _ = compress_state_dict({"conv.weight": weight}, ["conv"], pattern)
    groups = to_groups(weight, pattern.m)
    rebuilt = torch.zeros_like(groups).scatter_(
        1, tensors["conv.weight::nm_indices"].long(), tensors["conv.weight::nm_values"]
    )
    assert torch.equal(rebuilt, groups)


@pytest.mark.parametrize(
    "pattern", [NMPattern(2, 4), NMPattern(1, 4), NMPattern(2, 8), NMPattern(4, 8), NMPattern(1, 16)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_is_bit_exact(
    pattern: NMPattern, dtype: torch.dtype, assert_bits_equal, tmp_path: Path
) -> None:
    state = {
        "conv.weight": _nm_weight((8, 16, 3, 3), pattern, dtype),
        "conv.bias": torch.randn(8).to(dtype),
        "fc.weight": _nm_weight((10, 32), pattern, dtype),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    path = tmp_path / "model.nm.safetensors"
    save_compressed(state, ["conv", "fc"], pattern, path)
    loaded = load_compressed(path)
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        # Pruned positions come back as +0.0; adding +0.0 turns the -0.0 that masking leaves into +0.0
        # and changes nothing else, so this is bit equality for every non-zero.
        expected = tensor + 0 if tensor.is_floating_point() else tensor
        assert_bits_equal(loaded[key], expected)
        assert torch.equal(loaded[key], tensor)


def test_round_trip_of_a_finalized_model(lenet, tmp_path: Path) -> None:
    names = [layer.name for layer in lenet.report.layers]
    path = tmp_path / "model.nm.safetensors"
    save_compressed(lenet.model, names, lenet.pattern, path)
    loaded = load_compressed(path)
    for key, tensor in lenet.model.state_dict().items():
        assert torch.equal(loaded[key], tensor), key
    with safe_open(str(path), framework="pt") as handle:
        assert "features.3.weight" not in set(handle.keys())
        assert "features.3.weight::nm_values" in set(handle.keys())


def test_compressed_is_smaller_than_dense_for_2_4_on_a_realistic_layer(tmp_path: Path) -> None:
    pattern = NMPattern(2, 4)
    layer = nn.Linear(1024, 1024)
    with torch.no_grad():
        layer.weight.mul_(magnitude_mask(layer.weight, pattern))
    report = compressed_size_report(layer.state_dict(), [""], pattern)
    weight_bytes = 1024 * 1024 * 4
    (size,) = report.layers
    assert size.dense_bytes == weight_bytes
    # 2 fp32 values + 2 uint8 positions per group of 4 fp32 weights: 10 bytes instead of 16.
    assert size.compressed_bytes == weight_bytes * 10 // 16
    assert report.compressed_bytes < report.dense_bytes
    assert report.ratio == pytest.approx((weight_bytes * 10 // 16 + 4096) / (weight_bytes + 4096))

    dense_path, nm_path = tmp_path / "dense.safetensors", tmp_path / "nm.safetensors"
    save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, str(dense_path))
    written = save_compressed(layer, [""], pattern, nm_path)
    assert written == report
    assert nm_path.stat().st_size < 0.65 * dense_path.stat().st_size
    assert report.to_dict()["layers"][0]["shape"] == [1024, 1024]


def test_weights_that_are_not_n_m_are_refused_naming_the_layer() -> None:
    state = {"blocks.0.fc.weight": torch.ones(4, 8)}
    with pytest.raises(ExportError, match=r"'blocks.0.fc' is not 2:4 sparse: 8 of 8 groups"):
        compress_state_dict(state, ["blocks.0.fc"], NMPattern(2, 4))


def test_unknown_layers_and_ungroupable_weights_are_refused() -> None:
    with pytest.raises(ExportError, match="'fc' have no weight"):
        compress_state_dict({"other.weight": torch.zeros(4, 4)}, ["fc"], "2:4")
    with pytest.raises(ExportError, match="cannot be grouped"):
        compress_state_dict({"fc.weight": torch.zeros(4, 6)}, ["fc"], "2:4")


def _save_lenet_export(lenet, tmp_path: Path):
    return export_all(
        lenet.model,
        lenet.report,
        tmp_path / "out",
        architecture="lenet5",
        architecture_args=LENET_ARGS,
        metrics={"final_accuracy": 0.5},
        pattern=lenet.pattern,
    )


def test_rebuild_model_gives_identical_outputs(lenet, tmp_path: Path) -> None:
    result = _save_lenet_export(lenet, tmp_path)
    rebuilt = rebuild_model(result.file("manifest.json").path, result.file("model.nm.safetensors").path)
    assert not rebuilt.training
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), lenet.model(x))
    # The manifest can also be passed as a dict.
    again = rebuild_model(result.manifest, result.file("model.nm.safetensors").path)
    with torch.no_grad():
        assert torch.equal(again(x), lenet.model(x))


def test_rebuild_without_an_export_bundle(lenet, tmp_path: Path) -> None:
    names = [layer.name for layer in lenet.report.layers]
    save_compressed(lenet.model, names, lenet.pattern, tmp_path / "m.nm.safetensors")
    manifest = build_manifest(
        architecture="lenet5", architecture_args=LENET_ARGS, report=lenet.report, metrics={}, data=None
    )
    write_manifest(manifest, tmp_path / "manifest.json")
    rebuilt = rebuild_model(tmp_path / "manifest.json", tmp_path / "m.nm.safetensors")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), lenet.model(x))


def test_rebuild_detects_a_replaced_compressed_file(lenet, tmp_path: Path) -> None:
    result = _save_lenet_export(lenet, tmp_path)
    path = result.file("model.nm.safetensors").path
    state = load_compressed(path)
    state["classifier.5.bias"] = state["classifier.5.bias"] + 1
    names = [layer.name for layer in lenet.report.layers]
    save_compressed(state, names, lenet.pattern, path)
    with pytest.raises(ExportError, match="does not match the sha256"):
        rebuild_model(result.manifest, path)


def test_rebuild_refuses_a_pattern_or_architecture_mismatch(lenet, tmp_path: Path) -> None:
    result = _save_lenet_export(lenet, tmp_path)
    path = result.file("model.nm.safetensors").path
    manifest = {**result.manifest, "files": [], "pattern": {**result.manifest["pattern"], "text": "1:4"}}
    with pytest.raises(ExportError, match="holds pattern 2:4 but the manifest says 1:4"):
        rebuild_model(manifest, path)
    manifest = {**result.manifest, "files": [], "architecture": {"name": "resnet20", "args": {}}}
    with pytest.raises(ExportError, match="do not fit 'resnet20'"):
        rebuild_model(manifest, path)
    manifest = {**result.manifest, "files": [], "architecture": {"name": "nonet", "args": {}}}
    with pytest.raises(ExportError, match="cannot build architecture 'nonet'"):
        rebuild_model(manifest, path)
    with pytest.raises(ExportError, match="format"):
        rebuild_model({"format": "something/9"}, path)


def _write_raw(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_file(tensors, str(path), metadata=metadata)


def test_damaged_compressed_files_give_clear_errors(tmp_path: Path) -> None:
    pattern = NMPattern(2, 4)
    tensors, metadata = compress_state_dict({"fc.weight": _nm_weight((4, 8), pattern)}, ["fc"], pattern)
    path = tmp_path / "bad.safetensors"

    bad_indices = dict(tensors)
    bad_indices["fc.weight::nm_indices"] = torch.full((8, 2), 9, dtype=torch.uint8)
    _write_raw(path, bad_indices, metadata)
    with pytest.raises(ExportError, match="out-of-range or unordered positions"):
        load_compressed(path)

    unordered = dict(tensors)
    unordered["fc.weight::nm_indices"] = tensors["fc.weight::nm_indices"].flip(1).contiguous()
    _write_raw(path, unordered, metadata)
    with pytest.raises(ExportError, match="out-of-range or unordered positions"):
        load_compressed(path)

    wrong_shape = dict(tensors)
    wrong_shape["fc.weight::nm_values"] = torch.zeros(7, 2)
    _write_raw(path, wrong_shape, metadata)
    with pytest.raises(ExportError, match="inconsistent with shape"):
        load_compressed(path)

    missing = {"fc.weight::nm_values": tensors["fc.weight::nm_values"]}
    _write_raw(path, missing, metadata)
    with pytest.raises(ExportError, match="lacks its values or indices"):
        load_compressed(path)

    _write_raw(path, tensors, {**metadata, "layers": "{not json"})
    with pytest.raises(ExportError, match="damaged compressed-form metadata"):
        load_compressed(path)

    _write_raw(path, tensors, {"format": "pt"})
    with pytest.raises(ExportError, match="expected a compressed N:M file"):
        load_compressed(path)

    extra = {**tensors, "stray": torch.zeros(1)}
    _write_raw(path, extra, metadata)
    with pytest.raises(ExportError, match="do not match the recorded state_dict keys"):
        load_compressed(path)

    path.write_bytes(b"garbage")
    with pytest.raises(ExportError, match="not a readable safetensors file"):
        load_compressed(path)
    with pytest.raises(FileNotFoundError, match="compressed N:M file not found"):
        load_compressed(tmp_path / "absent.safetensors")


def test_deeply_nested_metadata_in_an_uploaded_file_is_an_export_error(tmp_path: Path) -> None:
    """The compressed form may be a user's upload: metadata nested 100,000 deep is bad input, not a crash."""
    path = tmp_path / "deep.safetensors"
    deep = "[" * 100_000 + "]" * 100_000
    metadata = {"format": "lbc.nm/1", "pattern": "2:4", "layers": deep, "keys": "[]"}
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    with pytest.raises(ExportError, match="damaged compressed-form metadata"):
        load_compressed(path)
