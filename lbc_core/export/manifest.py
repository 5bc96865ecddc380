"""The JSON manifest that describes an exported model: architecture, pattern, per-layer verification, metrics."""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from lbc_core.export._files import atomic_path, require_file
from lbc_core.export.errors import ExportError
from lbc_core.sparsity import KEEP_N_SEMANTICS, NMPattern, PatternError, SparsityReport

MANIFEST_FORMAT = "lbc.manifest/1"
MANIFEST_SCHEMA_VERSION = 1


def to_json_safe(value: Any, where: str = "manifest") -> Any:
    """A copy of ``value`` that ``json.dumps(allow_nan=False)`` accepts.

    Tuples become lists, numpy/torch scalars become Python numbers, paths and dtypes become strings.
    Non-finite floats become None: strict JSON has no NaN/Infinity and a diverged loss must still be
    exportable. Anything else that JSON cannot hold is an ExportError naming where it sits.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_json_safe(value.value, where)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ExportError(f"{where}: a tensor of shape {tuple(value.shape)} is not JSON; pass numbers")
        return to_json_safe(value.item(), where)
    if isinstance(value, torch.dtype | torch.device | os.PathLike):
        return str(value)
    if isinstance(value, NMPattern):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return to_json_safe(asdict(value), where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExportError(f"{where}: JSON object keys must be strings, got {key!r}")
            out[key] = to_json_safe(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [to_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return to_json_safe(item(), where)
    raise ExportError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def _pattern_section(report: SparsityReport) -> dict[str, Any]:
    try:
        pattern = NMPattern.parse(report.pattern)
    except PatternError as exc:
        raise ExportError(f"report has an invalid pattern {report.pattern!r}: {exc}") from exc
    return {"text": str(pattern), "n": pattern.n, "m": pattern.m, "semantics": KEEP_N_SEMANTICS}


def _totals(report: SparsityReport) -> dict[str, Any]:
    return {
        "dense_params": report.dense_params,
        "nonzero_params": report.nonzero_params,
        # Parameters inside the sparsified layers (their weights' element count), and how many survive.
        "sparsified_params": report.sparse_params,
        "sparsified_nonzeros": sum(layer.nonzeros for layer in report.layers),
        "overall_density": report.nonzero_params / report.dense_params if report.dense_params else 1.0,
    }


def build_manifest(
    *,
    architecture: str,
    architecture_args: dict[str, Any],
    report: SparsityReport,
    metrics: dict[str, Any],
    data: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    source_record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a JSON-safe dict; ``files`` stays empty until :func:`export_all` fills it.

    ``source_record`` adds what a non-catalog model source needs to rebuild the architecture (for a
    Hugging Face model: ``source``, its class, task and cleaned config) to the ``architecture`` section.
    """
    if not isinstance(architecture, str) or not architecture:
        raise ExportError("architecture must be a non-empty model name (as given to build_model)")
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "architecture": {**(source_record or {}), "name": architecture, "args": dict(architecture_args)},
        "pattern": _pattern_section(report),
        "method": report.method,
        "verified": report.all_verified,
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "shape": layer.shape,
                "group_direction": layer.group_direction,
                "layout": layer.layout,
                "density": layer.density,
                "nonzeros": layer.nonzeros,
                "verified_nm": layer.verified_nm,
                "violating_groups": layer.violating_groups,
            }
            for layer in report.layers
        ],
        "skipped": list(report.skipped),
        "totals": _totals(report),
        "metrics": dict(metrics),
        "data": data,
        "files": [],
        "producer": {"library": "lbc_core", "torch": torch.__version__},
    }
    if extra:
        clashes = sorted(set(extra) & set(manifest))
        if clashes:
            raise ExportError(f"extra manifest keys clash with standard ones: {', '.join(clashes)}")
        manifest["extra"] = dict(extra)
    return to_json_safe(manifest)


def write_manifest(manifest: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write strict JSON atomically (a reader never sees half a manifest)."""
    text = json.dumps(to_json_safe(manifest), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and sanity-check a manifest written by :func:`write_manifest`."""
    file = require_file(path, "manifest")
    try:
        manifest = json.loads(Path(file).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"manifest {file} is not valid JSON: {exc}") from exc
    check_manifest(manifest, str(file))
    return manifest


def check_manifest(manifest: Any, where: str = "manifest") -> None:
    if not isinstance(manifest, dict):
        raise ExportError(f"{where} is not a JSON object")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"{where} has format {manifest.get('format')!r}; expected {MANIFEST_FORMAT!r}")
    arch = manifest.get("architecture")
    if (
        not isinstance(arch, dict)
        or not isinstance(arch.get("name"), str)
        or not isinstance(arch.get("args"), dict)
    ):
        raise ExportError(f"{where} lacks architecture.name / architecture.args")
    pattern = manifest.get("pattern")
    if not isinstance(pattern, dict) or not isinstance(pattern.get("text"), str):
        raise ExportError(f"{where} lacks pattern.text")
