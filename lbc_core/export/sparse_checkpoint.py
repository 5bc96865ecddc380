"""The sparse checkpoint: a finalized model's state_dict as safetensors, dense layout with exact zeros."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.export._files import read_safetensors, require_file, write_safetensors
from lbc_core.export.errors import ExportError

SPARSE_CHECKPOINT_FORMAT = "lbc.sparse_checkpoint/1"

_SAFETENSORS_MIN_SIZE = 8
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_MAGIC = b"\x80"  # torch.save's legacy format starts with a pickle protocol opcode


def require_finalized(model: nn.Module) -> None:
    """A model still carrying N:M parametrizations would export its dense weights plus masks, not the result."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise ExportError(
                f"layer {name or '<root>'!r} still has an N:M parametrization; "
                "call sparsifier.finalize() before exporting"
            )


def savable_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors that share no memory, with values bit-for-bit unchanged.

    Tied weights (one Parameter under two names) share storage, which safetensors refuses; each
    later name gets its own copy, so loading restores both names with equal values.
    """
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ExportError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        shares = storage.data_ptr() in seen or storage.nbytes() != tensor.numel() * tensor.element_size()
        if shares and tensor.numel():
            tensor = tensor.clone()
            storage = tensor.untyped_storage()
        if tensor.numel():
            seen.add(storage.data_ptr())
        out[key] = tensor
    return out


def save_sparse_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model.state_dict()`` of a finalized model to ``path`` (safetensors), zeros included."""
    require_finalized(model)
    # "format": "pt" is the convention other safetensors readers (e.g. transformers) check for.
    metadata = {"format": "pt", "lbc_format": SPARSE_CHECKPOINT_FORMAT}
    write_safetensors(savable_tensors(model.state_dict()), path, metadata)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    # Layout: 8-byte little-endian header length, then a JSON header starting with "{".
    if len(head) < _SAFETENSORS_MIN_SIZE + 1:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - _SAFETENSORS_MIN_SIZE and head[8:9] == b"{"


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from safetensors, or from a torch file without unpickling arbitrary objects.

    Torch files go through ``torch.load(weights_only=True)``; any other content is an ExportError.
    """
    file = require_file(path, "checkpoint")
    with open(file, "rb") as handle:
        head = handle.read(16)
    size = file.stat().st_size
    if _looks_like_safetensors(head, size):
        tensors, _ = read_safetensors(file, "checkpoint")
        return tensors
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC):
        return _load_torch_file(file)
    raise ExportError(f"checkpoint {file} is neither a safetensors file nor a PyTorch checkpoint")


def _load_torch_file(file: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for forbidden globals, RuntimeError for a damaged archive
        raise ExportError(f"checkpoint {file} could not be loaded as plain tensors: {exc}") from exc
    if not isinstance(loaded, Mapping):
        raise ExportError(f"checkpoint {file} holds a {type(loaded).__name__}, not a state_dict")
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ExportError(
            f"checkpoint {file} is not a flat state_dict of tensors; offending entries: {', '.join(bad[:5])}"
        )
    return dict(loaded)
