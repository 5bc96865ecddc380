"""Masks as compact files: one bit per weight (``numpy.packbits``), shapes in the safetensors metadata."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from lbc_core.export._files import read_safetensors, write_safetensors
from lbc_core.export._layers import layer_weight
from lbc_core.export.errors import ExportError

MASKS_FORMAT = "lbc.masks/1"


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Row-major bits, most significant bit first, last byte zero-padded (``numpy.packbits`` defaults)."""
    flat = mask.detach().to(device="cpu", dtype=torch.bool).reshape(-1).numpy()
    return torch.from_numpy(np.packbits(flat))


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    numel = math.prod(shape)
    bits = np.unpackbits(packed.numpy(), count=numel).astype(np.bool_)
    return torch.from_numpy(bits).reshape(shape)


def save_masks(masks: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write boolean masks by layer name; 8x smaller than storing them as bool tensors."""
    packed: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, mask in masks.items():
        if mask.dtype != torch.bool:
            raise ExportError(f"mask {name!r} has dtype {mask.dtype}; masks must be boolean")
        packed[name] = pack_mask(mask)
        shapes[name] = list(mask.shape)
    # safetensors metadata values must be strings, hence JSON inside.
    metadata = {"format": MASKS_FORMAT, "bit_order": "big", "shapes": json.dumps(shapes)}
    write_safetensors(packed, path, metadata)


def load_masks(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Exact inverse of :func:`save_masks`."""
    tensors, metadata = read_safetensors(path, "masks file")
    if metadata.get("format") != MASKS_FORMAT:
        raise ExportError(
            f"masks file {path} has format {metadata.get('format')!r}; expected {MASKS_FORMAT!r}"
        )
    try:
        shapes = json.loads(metadata["shapes"])
    except (KeyError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ExportError(f"masks file {path} has no readable 'shapes' metadata") from exc
    if not isinstance(shapes, dict) or set(shapes) != set(tensors):
        raise ExportError(f"masks file {path}: the recorded shapes do not match the stored masks")
    masks: dict[str, torch.Tensor] = {}
    for name, packed in tensors.items():
        shape = tuple(shapes[name])
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ExportError(f"masks file {path}: mask {name!r} has an invalid shape {shapes[name]!r}")
        expected = (math.prod(shape) + 7) // 8
        if packed.dtype != torch.uint8 or packed.shape != (expected,):
            raise ExportError(
                f"masks file {path}: mask {name!r} should be {expected} packed bytes for shape {shape}, "
                f"found {packed.dtype} {tuple(packed.shape)}"
            )
        masks[name] = unpack_mask(packed, shape)
    return masks


def masks_from_model(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """``weight != 0`` of each named layer: after finalize, exactly the learned N:M masks."""
    masks: dict[str, torch.Tensor] = {}
    for name in names:
        masks[name] = (layer_weight(model, name) != 0).cpu()
    return masks
