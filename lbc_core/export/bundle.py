"""Everything a finished job exports, in one directory, with the manifest written last.

A directory holding ``manifest.json`` is complete: the manifest is written only after every file it
lists (with size and sha256), and a stale one is removed before anything is rewritten.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Mapping
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
from lbc_core.export.onnx_export import ONNX_FILE, ONNX_FP16_FILE, OnnxInputs, export_onnx
from lbc_core.export.sparse_checkpoint import require_finalized, save_sparse_checkpoint
from lbc_core.sparsity import NMPattern, SparsityReport, count_violations

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.safetensors"
MASKS_FILE = "masks.safetensors"
COMPRESSED_FILE = "model.nm.safetensors"
MANIFEST_FILE = "manifest.json"

# safetensors has no registered media type; octet-stream makes browsers download rather than display.
SAFETENSORS_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
# ONNX has no registered media type either.
ONNX_CONTENT_TYPE = "application/octet-stream"
ONNX_ROLES = {ONNX_FILE: "onnx", ONNX_FP16_FILE: "onnx_fp16"}
# The model in its owner's format (a Hugging Face directory): beside the exports as a directory, and as one
# archive that the service can publish and a user downloads, unpacks and hands to from_pretrained.
USER_FORMAT_DIR = "hf_model"
USER_FORMAT_ARCHIVE = "hf_model.zip"
ZIP_CONTENT_TYPE = "application/zip"
# Writes the model in its owner's format into the given directory (lbc_core.models.source.ModelSource.save).
UserFormatWriter = Callable[[Path], object]


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


def _write_user_format(model: nn.Module, writer: UserFormatWriter, directory: Path) -> ExportedFile:
    """The owner's format as a directory and as a zip of it (stored, not deflated: weights do not shrink)."""
    target = directory / USER_FORMAT_DIR
    shutil.rmtree(target, ignore_errors=True)
    writer(target)
    archive = directory / USER_FORMAT_ARCHIVE
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as bundle:
        for path in sorted(p for p in target.rglob("*") if p.is_file()):
            bundle.write(path, f"{USER_FORMAT_DIR}/{path.relative_to(target).as_posix()}")
    os.replace(tmp, archive)
    return _describe(archive, ZIP_CONTENT_TYPE)


def _stale_onnx(directory: Path) -> list[Path]:
    """ONNX files of an earlier export into the same directory (with their external weight data)."""
    return [directory / name for name in ONNX_ROLES] + [directory / f"{name}.data" for name in ONNX_ROLES]


def _export_onnx(
    model: nn.Module, inputs: OnnxInputs, directory: Path, pattern: NMPattern, names: list[str]
) -> tuple[dict[str, Any], list[ExportedFile], dict[str, str]]:
    """The manifest's ``onnx`` section and the files written; a failure is recorded, never raised.

    ONNX is an extra deliverable: a model with an op the exporter cannot translate still has its
    verified safetensors exports, and its owner learns why there is no model.onnx.
    """
    try:
        result = export_onnx(model, inputs, directory, pattern=pattern, sparsified=names)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
        log.warning("ONNX export failed: %s", reason)
        for path in _stale_onnx(directory):
            path.unlink(missing_ok=True)
        return {"status": "failed", "reason": reason}, [], {}
    files: list[ExportedFile] = []
    roles: dict[str, str] = {}
    for variant in result.variants:
        if variant.path is None:
            log.warning("ONNX export: %s %s: %s", variant.file, variant.status, variant.reason)
            continue
        files.append(_describe(variant.path, ONNX_CONTENT_TYPE))
        roles[variant.file] = ONNX_ROLES[variant.file]
        for extra in variant.extra_files:
            files.append(_describe(extra, ONNX_CONTENT_TYPE))
            roles[extra.name] = f"{ONNX_ROLES[variant.file]}_external_data"
    return result.to_dict(), files, roles


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
    onnx: OnnxInputs | None = None,
    user_format: UserFormatWriter | None = None,
) -> ExportResult:
    """Write the sparse checkpoint, masks, compressed form and manifest (last) into ``out_dir``.

    With ``onnx`` (the graph's example inputs), also ``model.onnx`` and ``model.fp16.onnx``; the manifest's
    ``onnx`` section says which were written, how they were checked, or why the export failed.
    With ``user_format``, also the model in its owner's format under ``hf_model/`` and as ``hf_model.zip``
    (listed in the manifest with its digest like every other file).
    """
    pattern = as_pattern(pattern)
    require_finalized(model)
    checked = verified_report(model, report, pattern)
    names = [layer.name for layer in checked.layers]

    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    # Drop an old manifest first, so a crash below cannot leave it vouching for half-rewritten files.
    (directory / MANIFEST_FILE).unlink(missing_ok=True)
    for stale in _stale_onnx(directory):
        stale.unlink(missing_ok=True)

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
    if user_format is not None:
        files.append(_write_user_format(model, user_format, directory))
        roles[USER_FORMAT_ARCHIVE] = "user_format"
    onnx_section: dict[str, Any] | None = None
    if onnx is not None:
        onnx_section, onnx_files, onnx_roles = _export_onnx(model, onnx, directory, pattern, names)
        files.extend(onnx_files)
        roles.update(onnx_roles)

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
    if onnx_section is not None:
        manifest["onnx"] = onnx_section
    write_manifest(manifest, directory / MANIFEST_FILE)
    files.append(_describe(directory / MANIFEST_FILE, JSON_CONTENT_TYPE))
    return ExportResult(files=tuple(files), manifest=manifest)
