"""The compressed N:M form: per group the N kept values plus their positions; a loader rebuilds the model.

For every sparsified layer with ``G`` groups (the group layout of :func:`lbc_core.sparsity.to_groups` in the
layer's weight layout, recorded per layer: groups always run along the reduction dimension):

- ``<key>::nm_values``  ``[G, N]`` in the weight's dtype: the kept values, in ascending position order;
- ``<key>::nm_indices`` ``[G, N]`` uint8: each value's position ``0..M-1`` in its group, ascending.

A group with fewer than N non-zeros is padded with zero values at its lowest unused positions, so every
group has exactly N entries and the tensors stay rectangular. Every other tensor is stored dense. The
rebuilt weights equal the originals bit for bit at every non-zero; pruned positions come back as +0.0
(masking can leave -0.0 there, which compares equal and multiplies identically).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lbc_core.export._files import read_safetensors, sha256_file, write_safetensors
from lbc_core.export.errors import ExportError
from lbc_core.export.manifest import check_manifest, read_manifest
from lbc_core.export.sparse_checkpoint import require_finalized, savable_tensors
from lbc_core.sparsity import KEEP_N_SEMANTICS, NMPattern, PatternError, from_groups, to_groups
from lbc_core.sparsity.pattern import default_layout

COMPRESSED_FORMAT = "lbc.nm/1"
VALUES_SUFFIX = "::nm_values"
INDICES_SUFFIX = "::nm_indices"


@dataclass(frozen=True)
class LayerSize:
    name: str
    shape: tuple[int, ...]
    dense_bytes: int
    compressed_bytes: int


@dataclass(frozen=True)
class CompressedSizeReport:
    """Tensor payload bytes of the whole state_dict, dense versus compressed (file headers excluded)."""

    pattern: str
    dense_bytes: int
    compressed_bytes: int
    layers: tuple[LayerSize, ...]

    @property
    def ratio(self) -> float:
        """Compressed / dense; below 1 means the compressed form is smaller."""
        return self.compressed_bytes / self.dense_bytes if self.dense_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "dense_bytes": self.dense_bytes,
            "compressed_bytes": self.compressed_bytes,
            "ratio": self.ratio,
            "layers": [
                {
                    "name": s.name,
                    "shape": list(s.shape),
                    "dense_bytes": s.dense_bytes,
                    "compressed_bytes": s.compressed_bytes,
                }
                for s in self.layers
            ],
        }


def weight_key(layer_name: str) -> str:
    """State_dict key of a layer's weight ("" names the root module)."""
    return f"{layer_name}.weight" if layer_name else "weight"


def as_pattern(pattern: NMPattern | str) -> NMPattern:
    if isinstance(pattern, NMPattern):
        return pattern
    try:
        return NMPattern.parse(pattern)
    except PatternError as exc:
        raise ExportError(str(exc)) from exc


def _state_dict_of(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if isinstance(model_or_state_dict, nn.Module):
        require_finalized(model_or_state_dict)
        return model_or_state_dict.state_dict()
    return model_or_state_dict


def compress_weight(
    weight: torch.Tensor, pattern: NMPattern, name: str = "weight", layout: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values [G, N], indices [G, N] uint8)`` of an exactly N:M weight; ExportError naming ``name`` otherwise."""
    try:
        groups = to_groups(weight.detach().cpu(), pattern.m, layout)
    except PatternError as exc:
        raise ExportError(f"layer {name!r} cannot be grouped for {pattern}: {exc}") from exc
    nonzero = groups != 0
    over = int((nonzero.sum(dim=1) > pattern.n).sum())
    if over:
        raise ExportError(
            f"layer {name!r} is not {pattern} sparse: {over} of {groups.shape[0]} groups hold more than "
            f"{pattern.n} non-zeros ({KEEP_N_SEMANTICS})"
        )
    positions = torch.arange(pattern.m, dtype=torch.int64)
    # Sorting key puts non-zero positions first, then zero positions, each in ascending order: the
    # first N are the kept values plus the lowest unused positions as padding.
    order_key = (~nonzero).to(torch.int64) * pattern.m + positions
    chosen = torch.sort(order_key, dim=1).indices[:, : pattern.n]
    indices = torch.sort(chosen, dim=1).values
    values = groups.gather(1, indices)
    # Padding stores a canonical +0.0 (the weight may hold -0.0 there).
    values = torch.where(nonzero.gather(1, indices), values, torch.zeros_like(values))
    return values.contiguous(), indices.to(torch.uint8).contiguous()


def decompress_weight(
    values: torch.Tensor, indices: torch.Tensor, shape: tuple[int, ...], m: int, layout: str | None = None
) -> torch.Tensor:
    groups = torch.zeros(values.shape[0], m, dtype=values.dtype)
    groups.scatter_(1, indices.to(torch.int64), values)
    return from_groups(groups, shape, layout).contiguous()


def compress_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    layer_names: Iterable[str],
    pattern: NMPattern | str,
    layouts: Mapping[str, str] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the (string) metadata of the compressed file, without writing it.

    ``layouts`` gives a layer's weight layout where it is not the plain Linear/Conv2d one (Conv1D).
    """
    pattern = as_pattern(pattern)
    layouts = layouts or {}
    names = list(layer_names)
    if len(set(names)) != len(names):
        raise ExportError("layer_names contains duplicates")
    compressed_keys = {weight_key(name): name for name in names}
    missing = [name for key, name in compressed_keys.items() if key not in state_dict]
    if missing:
        raise ExportError(f"layer(s) {', '.join(map(repr, missing))} have no weight in the state_dict")
    clashes = [k for k in state_dict if k.endswith((VALUES_SUFFIX, INDICES_SUFFIX))]
    if clashes:
        raise ExportError(f"state_dict keys {clashes[:3]} clash with the compressed-form key suffixes")

    tensors: dict[str, torch.Tensor] = {}
    layers: list[dict[str, Any]] = []
    for key, tensor in state_dict.items():
        if key not in compressed_keys:
            tensors[key] = tensor
            continue
        name = compressed_keys[key]
        try:
            layout = layouts.get(name) or default_layout(tensor.shape)
        except PatternError as exc:
            raise ExportError(f"layer {name!r} cannot be grouped for {pattern}: {exc}") from exc
        values, indices = compress_weight(tensor, pattern, name, layout)
        tensors[key + VALUES_SUFFIX] = values
        tensors[key + INDICES_SUFFIX] = indices
        layers.append(
            {
                "name": name,
                "key": key,
                "shape": list(tensor.shape),
                "dtype": str(tensor.dtype),
                "layout": layout,
            }
        )
    metadata = {
        "format": COMPRESSED_FORMAT,
        "pattern": str(pattern),
        "semantics": KEEP_N_SEMANTICS,
        "layers": json.dumps(layers),
        # The original key order, so a loader returns the state_dict as it was and can spot missing tensors.
        "keys": json.dumps(list(state_dict)),
    }
    return savable_tensors(tensors), metadata


def _size_report(
    state_dict: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> CompressedSizeReport:
    def nbytes(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    layers = tuple(
        LayerSize(
            name=layer["name"],
            shape=tuple(layer["shape"]),
            dense_bytes=nbytes(state_dict[layer["key"]]),
            compressed_bytes=nbytes(tensors[layer["key"] + VALUES_SUFFIX])
            + nbytes(tensors[layer["key"] + INDICES_SUFFIX]),
        )
        for layer in json.loads(metadata["layers"])
    )
    return CompressedSizeReport(
        pattern=metadata["pattern"],
        dense_bytes=sum(nbytes(t) for t in state_dict.values()),
        compressed_bytes=sum(nbytes(t) for t in tensors.values()),
        layers=layers,
    )


def compressed_size_report(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    layer_names: Iterable[str],
    pattern: NMPattern | str,
    layouts: Mapping[str, str] | None = None,
) -> CompressedSizeReport:
    """Dense versus compressed bytes, per layer and in total, without writing a file."""
    state_dict = _state_dict_of(model_or_state_dict)
    tensors, metadata = compress_state_dict(state_dict, layer_names, pattern, layouts)
    return _size_report(state_dict, tensors, metadata)


def save_compressed(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    layer_names: Iterable[str],
    pattern: NMPattern | str,
    path: str | os.PathLike[str],
    layouts: Mapping[str, str] | None = None,
) -> CompressedSizeReport:
    """Write the compressed form to ``path`` (safetensors) and return its size report."""
    state_dict = _state_dict_of(model_or_state_dict)
    tensors, metadata = compress_state_dict(state_dict, layer_names, pattern, layouts)
    write_safetensors(tensors, path, metadata)
    return _size_report(state_dict, tensors, metadata)


def _read_compressed(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], NMPattern]:
    tensors, metadata = read_safetensors(path, "compressed N:M file")
    if metadata.get("format") != COMPRESSED_FORMAT:
        raise ExportError(
            f"{path} has format {metadata.get('format')!r}; expected a compressed N:M file ({COMPRESSED_FORMAT!r})"
        )
    try:
        pattern = NMPattern.parse(metadata["pattern"])
        layers = json.loads(metadata["layers"])
        keys = json.loads(metadata["keys"])
    except (KeyError, json.JSONDecodeError, PatternError, RecursionError) as exc:
        # RecursionError: metadata nested past the interpreter's recursion limit (json.loads recurses
        # once per level); the file may be a user's upload, so this is bad input, not a crash.
        raise ExportError(f"{path}: damaged compressed-form metadata ({exc})") from exc

    rebuilt: dict[str, torch.Tensor] = {}
    for layer in layers:
        rebuilt[layer["key"]] = _rebuild_layer(tensors, layer, pattern, path)
    for key, tensor in tensors.items():
        if not key.endswith((VALUES_SUFFIX, INDICES_SUFFIX)):
            rebuilt[key] = tensor
    if set(rebuilt) != set(keys) or len(tensors) != len(keys) + len(layers):
        raise ExportError(f"{path}: the stored tensors do not match the recorded state_dict keys")
    return {key: rebuilt[key] for key in keys}, pattern


def _rebuild_layer(
    tensors: Mapping[str, torch.Tensor], layer: Mapping[str, Any], pattern: NMPattern, path: Any
) -> torch.Tensor:
    key, shape = layer["key"], tuple(layer["shape"])
    values, indices = tensors.get(key + VALUES_SUFFIX), tensors.get(key + INDICES_SUFFIX)
    if values is None or indices is None:
        raise ExportError(f"{path}: layer {layer['name']!r} lacks its values or indices")
    numel = math.prod(shape)
    groups = numel // pattern.m
    if (
        groups * pattern.m != numel
        or values.shape != (groups, pattern.n)
        or indices.shape != (groups, pattern.n)
        or indices.dtype != torch.uint8
        or str(values.dtype) != layer["dtype"]
    ):
        raise ExportError(
            f"{path}: layer {layer['name']!r} has values {tuple(values.shape)} {values.dtype} and indices "
            f"{tuple(indices.shape)} {indices.dtype}, inconsistent with shape {shape} under {pattern}"
        )
    wide = indices.to(torch.int64)
    if groups and (int(wide.max()) >= pattern.m or not bool((wide[:, 1:] > wide[:, :-1]).all())):
        raise ExportError(f"{path}: layer {layer['name']!r} has out-of-range or unordered positions")
    try:
        # Files written before layouts were recorded hold only Linear/Conv2d weights: their default layout.
        layout = layer.get("layout") or default_layout(shape)
        return decompress_weight(values, indices, shape, pattern.m, layout)
    except PatternError as exc:
        raise ExportError(f"{path}: layer {layer['name']!r}: {exc}") from exc


def load_compressed(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The dense state_dict back from a compressed file (non-zeros bit-exact; see the module docstring)."""
    state_dict, _ = _read_compressed(path)
    return state_dict


@dataclass(frozen=True, eq=False)
class CompressedLayer:
    """One compressed layer as stored: ``values``/``indices`` ``[G, N]`` for a weight of ``shape`` in
    ``layout``, grouped as :func:`lbc_core.sparsity.to_groups` groups that layout (rows of its ``[out, in]``
    view for the 2-D layouts, whichever way the weight itself is stored)."""

    name: str
    shape: tuple[int, ...]
    values: torch.Tensor
    indices: torch.Tensor
    layout: str


def load_compressed_layers(path: str | os.PathLike[str]) -> tuple[dict[str, CompressedLayer], NMPattern]:
    """The compressed layers of a file as stored (no decompression), by layer name, with the pattern:
    the operand sparse kernels pack from (lbc_core.kernels). Validated like :func:`load_compressed`."""
    _, pattern = _read_compressed(path)
    tensors, metadata = read_safetensors(path, "compressed N:M file")
    layers = {}
    for layer in json.loads(metadata["layers"]):
        key = layer["key"]
        shape = tuple(layer["shape"])
        layers[layer["name"]] = CompressedLayer(
            layer["name"],
            shape,
            tensors[key + VALUES_SUFFIX],
            tensors[key + INDICES_SUFFIX],
            # As _rebuild_layer (which validated it): files without layouts hold Linear/Conv2d weights only.
            layer.get("layout") or default_layout(shape),
        )
    return layers, pattern


def _check_listed_hash(manifest: Mapping[str, Any], path: Path) -> None:
    # When the manifest lists this file, its hash must match: catches a swapped or damaged download.
    for entry in manifest.get("files") or []:
        if isinstance(entry, dict) and entry.get("name") == path.name and "sha256" in entry:
            if sha256_file(path) != entry["sha256"]:
                raise ExportError(
                    f"{path} does not match the sha256 recorded in the manifest (damaged or replaced)"
                )
            return


def rebuild_model(
    manifest_path_or_dict: str | os.PathLike[str] | Mapping[str, Any], compressed_path: str | os.PathLike[str]
) -> nn.Module:
    """Build the manifest's architecture and load the decompressed weights (strict); returned in eval mode."""
    # Imported here so that reading and writing export files never needs the model zoo.
    from lbc_core.models.source import ModelSourceError, rebuild_skeleton

    if isinstance(manifest_path_or_dict, Mapping):
        manifest = dict(manifest_path_or_dict)
        check_manifest(manifest)
    else:
        manifest = read_manifest(manifest_path_or_dict)
    state_dict, pattern = _read_compressed(compressed_path)
    if str(pattern) != manifest["pattern"]["text"]:
        raise ExportError(
            f"{compressed_path} holds pattern {pattern} but the manifest says {manifest['pattern']['text']}"
        )
    _check_listed_hash(manifest, Path(compressed_path))
    arch = manifest["architecture"]
    try:
        model = rebuild_skeleton(arch)
    except ModelSourceError as exc:
        raise ExportError(f"cannot build architecture {arch['name']!r} from the manifest: {exc}") from exc
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"weights in {compressed_path} do not fit {arch['name']!r}: {exc}") from exc
    return model.eval()
