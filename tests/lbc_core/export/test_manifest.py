"""Manifest: content, strict JSON, and the checks a reader makes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lbc_core.export import ExportError, build_manifest, read_manifest, write_manifest
from lbc_core.sparsity import KEEP_N_SEMANTICS

LENET_ARGS = {"num_classes": 10, "in_channels": 1}


def _manifest(lenet, **overrides):
    kwargs = {
        "architecture": "lenet5",
        "architecture_args": LENET_ARGS,
        "report": lenet.report,
        "metrics": {"final_accuracy": 0.9812, "loss": 0.07},
        "data": {"name": "mnist-t10k", "train": 8000, "val": 2000},
        "extra": None,
    }
    return build_manifest(**{**kwargs, **overrides})


def test_manifest_content(lenet) -> None:
    manifest = _manifest(lenet)
    assert manifest["format"] == "lbc.manifest/1"
    assert manifest["schema_version"] == 1
    assert manifest["architecture"] == {"name": "lenet5", "args": LENET_ARGS}
    assert manifest["pattern"] == {"text": "2:4", "n": 2, "m": 4, "semantics": KEEP_N_SEMANTICS}
    assert manifest["method"] == "asp"
    assert manifest["verified"] is True
    assert manifest["metrics"] == {"final_accuracy": 0.9812, "loss": 0.07}
    assert manifest["data"]["name"] == "mnist-t10k"
    assert manifest["files"] == []

    layers = {layer["name"]: layer for layer in manifest["layers"]}
    assert set(layers) == {"features.3", "classifier.1", "classifier.3"}
    conv = layers["features.3"]
    assert conv["kind"] == "Conv2d"
    assert conv["shape"] == [16, 8, 5, 5]
    assert "input channels" in conv["group_direction"]
    assert conv["density"] == pytest.approx(0.5)
    assert conv["nonzeros"] == 16 * 8 * 25 // 2
    assert conv["verified_nm"] is True
    assert conv["violating_groups"] == 0

    skipped = {entry["name"]: entry for entry in manifest["skipped"]}
    assert "stem" in skipped["features.0"]["reason"]
    assert "classifier" in skipped["classifier.5"]["reason"]
    assert skipped["features.0"]["shape"] == [8, 1, 5, 5]

    totals = manifest["totals"]
    dense = sum(p.numel() for p in lenet.model.parameters())
    sparsified = sum(math.prod(layer["shape"]) for layer in manifest["layers"])
    assert totals["dense_params"] == dense
    assert totals["sparsified_params"] == sparsified
    assert totals["sparsified_nonzeros"] == sparsified // 2
    assert totals["nonzero_params"] == dense - sparsified // 2
    assert totals["overall_density"] == pytest.approx((dense - sparsified // 2) / dense)


def test_manifest_is_strict_json(lenet, tmp_path: Path) -> None:
    metrics = {
        "history": [(1, 0.5), (2, 0.25)],
        "diverged_loss": float("nan"),
        "best": np.float32(0.75),
        "steps": torch.tensor(12),
        "dtype": torch.float16,
    }
    manifest = _manifest(lenet, metrics=metrics, extra={"job_id": "j-1", "tags": ("a", "b")})
    path = tmp_path / "manifest.json"
    write_manifest(manifest, path)
    text = path.read_text()
    assert "NaN" not in text
    parsed = json.loads(text)
    assert parsed == manifest
    assert parsed["metrics"] == {
        "history": [[1, 0.5], [2, 0.25]],
        "diverged_loss": None,
        "best": 0.75,
        "steps": 12,
        "dtype": "torch.float16",
    }
    assert parsed["extra"] == {"job_id": "j-1", "tags": ["a", "b"]}
    assert read_manifest(path) == manifest
    assert not list(tmp_path.glob(".*.tmp"))


def test_unserialisable_values_are_named(lenet) -> None:
    with pytest.raises(ExportError, match=r"manifest.metrics.model: Linear is not JSON"):
        _manifest(lenet, metrics={"model": torch.nn.Linear(2, 2)})
    with pytest.raises(ExportError, match="keys must be strings"):
        _manifest(lenet, metrics={1: 0.5})
    with pytest.raises(ExportError, match="clash with standard ones: metrics"):
        _manifest(lenet, extra={"metrics": {}})
    with pytest.raises(ExportError, match="architecture must be"):
        _manifest(lenet, architecture="")


def test_unverified_report_is_reported_as_such(lenet) -> None:
    from dataclasses import replace

    bad = replace(lenet.report.layers[0], verified_nm=False, violating_groups=3)
    report = replace(lenet.report, layers=(bad, *lenet.report.layers[1:]))
    manifest = _manifest(lenet, report=report)
    assert manifest["verified"] is False
    assert manifest["layers"][0]["violating_groups"] == 3


def test_reading_a_bad_manifest(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{ not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        read_manifest(path)
    path.write_text(json.dumps({"format": "other/2"}))
    with pytest.raises(ExportError, match=r"expected 'lbc\.manifest/1'"):
        read_manifest(path)
    path.write_text(json.dumps({"format": "lbc.manifest/1", "architecture": "lenet5"}))
    with pytest.raises(ExportError, match=r"architecture\.name"):
        read_manifest(path)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "absent.json")
