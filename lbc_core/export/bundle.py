"""Everything a finished job exports, in one directory, with the manifest written last.

A directory holding ``manifest.json`` is complete: the manifest is written only after every file it
lists (with size and sha256), and a stale one is removed before anything is rewritten.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lbc_core.export._files import sha256_file
from lbc_core.export._layers import layer_weight
from lbc_core.export.compressed import as_pattern, save_compressed
from lbc_core.export.errors import ExportError
from lbc_core.export.manifest import build_manifest, write_manifest
from lbc_core.export.masks import masks_from_model, save_masks
from lbc_core.export.sparse_checkpoint import require_finalized, save_sparse_checkpoint
from lbc_core.sparsity import NMPattern, SparsityReport, count_violations

CHECKPOINT_FILE = "model.safetensors"
MASKS_FILE = "masks.safetensors"
COMPRESSED_FILE = "model.nm.safetensors"
MANIFEST_FILE = "manifest.json"

# safetensors has no registered media type; octet-stream makes browsers download rather than display.
SAFETENSORS_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class ExportedFile:
    name: str
    path: Path
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class ExportResult:
    files: tuple[ExportedFile, ...]
    manifest: dict[str, Any]

    def file(self, name: str) -> ExportedFile:
        for exported in self.files:
            if exported.name == name:
                return exported
        raise KeyError(name)


def verified_report(model: nn.Module, report: SparsityReport, pattern: NMPattern) -> SparsityReport:
    """The report re-measured on the weights actually exported; ExportError if any layer is not N:M.

    The report may predate later edits of the model, so the file's claims come from the weights.
    """
    if report.pattern != str(pattern):
        raise ExportError(f"the report is for pattern {report.pattern}, but export was asked for {pattern}")
    layers = []
    for layer in report.layers:
        weight = layer_weight(model, layer.name)
        violations = count_violations(weight, pattern, layer.layout)
        if violations:
            raise ExportError(
                f"layer {layer.name!r} is not exactly {pattern}: {violations} groups hold more than "
                f"{pattern.n} non-zeros; refusing to export"
            )
        nonzeros = int((weight != 0).sum())
        layers.append(
            replace(
                layer,
                shape=tuple(weight.shape),
                density=nonzeros / weight.numel(),
                nonzeros=nonzeros,
                verified_nm=True,
                violating_groups=0,
            )
        )
    dense_params = sum(p.numel() for p in model.parameters())
    selected = sum(torch.Size(layer.shape).numel() for layer in layers)
    return replace(
        report,
        layers=tuple(layers),
        sparse_params=selected,
        dense_params=dense_params,
        nonzero_params=dense_params - selected + sum(layer.nonzeros for layer in layers),
    )


def _describe(path: Path, content_type: str) -> ExportedFile:
    return ExportedFile(path.name, path, path.stat().st_size, sha256_file(path), content_type)


def export_all(
    model: nn.Module,
    report: SparsityReport,
    out_dir: str | os.PathLike[str],
    *,
    architecture: str,
    architecture_args: dict[str, Any],
    metrics: dict[str, Any],
    data: dict[str, Any] | None = None,
    pattern: NMPattern | str,
    extra: dict[str, Any] | None = None,
    source_record: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Write the sparse checkpoint, masks, compressed form and manifest (last) into ``out_dir``."""
    pattern = as_pattern(pattern)
    require_finalized(model)
    checked = verified_report(model, report, pattern)
    names = [layer.name for layer in checked.layers]

    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    # Drop an old manifest first, so a crash below cannot leave it vouching for half-rewritten files.
    (directory / MANIFEST_FILE).unlink(missing_ok=True)

    save_sparse_checkpoint(model, directory / CHECKPOINT_FILE)
    save_masks(masks_from_model(model, names), directory / MASKS_FILE)
    layouts = {layer.name: layer.layout for layer in checked.layers}
    sizes = save_compressed(model, names, pattern, directory / COMPRESSED_FILE, layouts)
    files = [
        _describe(directory / CHECKPOINT_FILE, SAFETENSORS_CONTENT_TYPE),
        _describe(directory / MASKS_FILE, SAFETENSORS_CONTENT_TYPE),
        _describe(directory / COMPRESSED_FILE, SAFETENSORS_CONTENT_TYPE),
    ]
    roles = {CHECKPOINT_FILE: "sparse_checkpoint", MASKS_FILE: "masks", COMPRESSED_FILE: "compressed_nm"}

    manifest = build_manifest(
        architecture=architecture,
        architecture_args=architecture_args,
        report=checked,
        metrics=metrics,
        data=data,
        extra=extra,
        source_record=source_record,
    )
    manifest["files"] = [
        {
            "name": f.name,
            "role": roles[f.name],
            "size": f.size,
            "sha256": f.sha256,
            "content_type": f.content_type,
        }
        for f in files
    ]
    manifest["compressed_size"] = {
        "file": COMPRESSED_FILE,
        "dense_bytes": sizes.dense_bytes,
        "compressed_bytes": sizes.compressed_bytes,
        "ratio": sizes.ratio,
    }
    write_manifest(manifest, directory / MANIFEST_FILE)
    files.append(_describe(directory / MANIFEST_FILE, JSON_CONTENT_TYPE))
    return ExportResult(files=tuple(files), manifest=manifest)
