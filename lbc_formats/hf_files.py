"""Which files a Hugging Face model directory may hold: safetensors weights only, never a pickle.

One place for the file-list rules of a model directory (a local one for ``lbc train``; an upload's file
list follows the same rules). Weights are ``model.safetensors`` or the shards a
``model.safetensors.index.json`` names; every pickle-based or code-carrying format is refused with why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lbc_catalog.huggingface import hf_class_for
from lbc_formats.hf_config import CleanConfig, HFConfigError, parse_config

SINGLE_WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
MAX_INDEX_BYTES = 16 << 20
# Suffix -> why the server will not read it. Loading any of these can run code.
REFUSED_SUFFIXES: Mapping[str, str] = {
    ".bin": "PyTorch .bin weights are pickles, and loading a pickle can run code; upload safetensors",
    ".pt": "a .pt file is a pickle, and loading a pickle can run code; upload safetensors",
    ".pth": "a .pth file is a pickle, and loading a pickle can run code; upload safetensors",
    ".pt2": "a .pt2 exported program can run code when loaded; it is not a safe format; upload safetensors",
    ".pkl": "a pickle can run code when loaded; upload safetensors",
    ".pickle": "a pickle can run code when loaded; upload safetensors",
    ".ckpt": "a .ckpt checkpoint is a pickle, and loading a pickle can run code; upload safetensors",
    ".h5": "Keras/TF weights are not read; upload the PyTorch model as safetensors",
    ".msgpack": "Flax weights are not read; upload the PyTorch model as safetensors",
    ".py": "the server never runs code that comes with a model",
}


class HFFileError(ValueError):
    """A model directory whose files the server will not use; the message names the file and why."""


@dataclass(frozen=True)
class ModelFiles:
    """The files to read: the weight files (one, or the index's shards in order) and the index if any."""

    weights: tuple[str, ...]
    index: str | None


def refusal(name: str) -> str | None:
    """Why the file ``name`` is refused, or None when it may be present."""
    suffix = PurePosixPath(name.lower()).suffix
    return REFUSED_SUFFIXES.get(suffix)


def check_file_list(names: Iterable[str], index_weight_map: Mapping[str, str] | None = None) -> ModelFiles:
    """Check the relative file names of a model directory; ``index_weight_map`` is the index's weight_map.

    Raises HFFileError naming every refused file, a missing config.json or missing weights.
    """
    listed = sorted(set(names))
    refused = [f"{name} ({why})" for name in listed if (why := refusal(name))]
    if refused:
        raise HFFileError("refused files: " + "; ".join(refused))
    if "config.json" not in listed:
        raise HFFileError("config.json is missing; it says which architecture to build")
    if INDEX in listed:
        if index_weight_map is None:
            raise HFFileError(f"{INDEX} could not be read")
        shards = sorted(set(index_weight_map.values()))
        bad = [s for s in shards if not isinstance(s, str) or "/" in s or not s.endswith(".safetensors")]
        if bad:
            raise HFFileError(f"{INDEX} names shards that are not safetensors files beside it: {bad[:4]}")
        absent = [s for s in shards if s not in listed]
        if absent:
            raise HFFileError(f"{INDEX} names shards that are missing: {', '.join(absent[:8])}")
        return ModelFiles(tuple(shards), INDEX)
    if SINGLE_WEIGHTS in listed:
        return ModelFiles((SINGLE_WEIGHTS,), None)
    raise HFFileError(f"no weights: expected {SINGLE_WEIGHTS}, or shards listed in {INDEX}")


def check_model_dir(directory: Path) -> ModelFiles:
    """``check_file_list`` on a local directory (every file below it; links are refused)."""
    if not directory.is_dir():
        raise HFFileError(f"{directory} is not a directory")
    names = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise HFFileError(f"{relative} is a link; a model directory holds plain files only")
        if path.is_file():
            names.append(relative)
    weight_map = None
    if INDEX in names:
        weight_map = _read_weight_map(directory / INDEX)
    return check_file_list(names, weight_map)


def _read_weight_map(path: Path) -> Mapping[str, str]:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise HFFileError(f"{INDEX} is larger than {MAX_INDEX_BYTES} bytes")
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError) as exc:
        raise HFFileError(f"{INDEX} is not an index with a weight_map: {exc}") from None
    if not isinstance(weight_map, dict):
        raise HFFileError(f"{INDEX}: weight_map must be an object of tensor name -> shard file")
    return weight_map


def read_model_dir(directory: Path, task: str) -> tuple[ModelFiles, CleanConfig]:
    """A local model directory's files and cleaned config, checked against ``task``: what both ``lbc train``
    (at spec load) and the engine (before building) accept. Raises HFFileError or HFConfigError."""
    files = check_model_dir(directory)
    try:
        data = (directory / "config.json").read_bytes()
    except OSError as exc:
        raise HFFileError(f"config.json cannot be read: {exc.strerror}") from None
    clean = parse_config(data)
    try:
        hf_class_for(clean.model_type, task)
    except ValueError as exc:
        raise HFConfigError(str(exc)) from None
    return files, clean
