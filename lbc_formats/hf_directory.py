"""A Hugging Face model directory checked as data, before anything builds or loads it.

The same checks run on an uploaded archive (member by member, as it streams past: ``check_model_files``),
on the directory a worker extracted from it, and on a local directory given to ``lbc train``
(``check_model_dir``); the engine runs them again right before it builds the model.

What a model directory may hold (its top level; files in subdirectories are ignored):

- ``config.json`` (required), read by :mod:`lbc_formats.hf_config`: allowed families only, remote code refused;
- weights as ``model.safetensors``, or as shards ``model-XXXXX-of-YYYYY.safetensors`` with
  ``model.safetensors.index.json`` naming, for every tensor, the one shard that holds it;
- tokenizer and processor files read as JSON data (``tokenizer.json``, ``tokenizer_config.json``,
  ``special_tokens_map.json``, ``added_tokens.json``, ``vocab.json``, ``preprocessor_config.json``,
  ``generation_config.json``) or UTF-8 text (``vocab.txt``, ``merges.txt``); an ``auto_map`` (code that
  ships with the model) is refused in every one of them.

Refused anywhere in the upload, with the reason: pickles (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``,
and any file whose first bytes are a pickle's, whatever its name), ``.pt2`` exported programs, code
(``.py``, ``.so``, ...), other frameworks' weights (``.h5``, ``.msgpack``), and archives or zip-based files
hidden inside the upload (a torch checkpoint and a ``.pt2`` are zips). Anything else (README.md, LICENSE,
.gitattributes, files in subdirectories, other tokenizer formats) is IGNORED: listed, never extracted by a
worker, never read by the engine.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Protocol

from lbc_catalog.huggingface import HF_FAMILIES
from lbc_formats.errors import FormatError
from lbc_formats.hf_config import REFUSED_KEYS, CleanConfig, parse_config
from lbc_formats.json_data import load_json_data
from lbc_formats.safetensors_header import HeaderLimits, SafetensorsHeader, TensorEntry, read_header
from lbc_formats.tokenizer_json import (
    MAX_TOKENIZER_BYTES,
    MAX_TOKENIZER_DEPTH,
    TOKENIZER_FILE,
    check_tokenizer,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_RE = re.compile(r"^model-(?P<index>\d{5})-of-(?P<total>\d{5})\.safetensors$")
# Side files read as JSON objects; a key asking for shipped code is refused in each.
JSON_FILES = frozenset(
    {
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "preprocessor_config.json",
        "generation_config.json",
    }
)
TEXT_FILES = frozenset({"vocab.txt", "merges.txt"})
# Keys of side files that point at code shipped with the model (transformers imports it with
# trust_remote_code); generation configs can name a generation method fetched from a repository.
CODE_KEYS: Mapping[str, str] = MappingProxyType(
    {
        **{key: why for key, why in REFUSED_KEYS.items() if key != "quantization_config"},
        "custom_generate": "it names generation code to fetch and run, which the server never does",
    }
)
_PICKLE = (
    "is a pickle (loading a pickle can run any code, so the server never does); save the weights as "
    "safetensors, e.g. model.save_pretrained(dir, safe_serialization=True)"
)
_CODE = "is code; the server never runs code that came with a model"
REFUSED_SUFFIXES: Mapping[str, str] = MappingProxyType(
    {
        ".bin": f"PyTorch .bin weights: a .bin {_PICKLE}",
        ".pt": f"a .pt file {_PICKLE}",
        ".pth": f"a .pth file {_PICKLE}",
        ".pkl": f"a .pkl file {_PICKLE}",
        ".pickle": f"a .pickle file {_PICKLE}",
        ".joblib": f"a .joblib file {_PICKLE}",
        ".ckpt": f"a .ckpt training checkpoint {_PICKLE}",
        ".pt2": "a .pt2 exported program can run code when it is loaded; it is not a safe format, upload "
        "safetensors",
        ".h5": "Keras/TensorFlow HDF5 weights can carry code (Lambda layers) and are not read; upload safetensors",
        ".keras": "Keras model files can carry code and are not read; upload safetensors",
        ".msgpack": "Flax msgpack weights are not read; upload safetensors",
        ".py": f"Python source {_CODE}",
        ".pyc": f"compiled Python {_CODE}",
        ".so": f"a shared library {_CODE}",
        ".dll": f"a shared library {_CODE}",
        ".dylib": f"a shared library {_CODE}",
        ".pyd": f"a Python extension {_CODE}",
    }
)
# First bytes of what may not hide under another name (sniffed in every file but the safetensors ones,
# whose first 8 bytes are a length that can look like anything).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (
        b"PK\x03\x04",
        "is a zip archive (torch checkpoints and .pt2 programs are zips holding pickles or code)",
    ),
    (
        b"PK\x05\x06",
        "is a zip archive (torch checkpoints and .pt2 programs are zips holding pickles or code)",
    ),
    (b"\x1f\x8b", "is a gzip stream; archives inside the upload are not unpacked"),
    (b"BZh", "is a bzip2 stream; archives inside the upload are not unpacked"),
    (b"\xfd7zXZ\x00", "is an xz stream; archives inside the upload are not unpacked"),
    (b"7z\xbc\xaf\x27\x1c", "is a 7-zip archive; archives inside the upload are not unpacked"),
    (b"Rar!", "is a RAR archive; archives inside the upload are not unpacked"),
    (b"\x7fELF", f"is an executable or shared library and {_CODE}"),
    (b"\xcf\xfa\xed\xfe", f"is a Mach-O binary and {_CODE}"),
    (b"MZ", f"is a Windows executable or library and {_CODE}"),
)
_SNIFF_BYTES = 8
_DATA_CHUNK = 16 << 20


@dataclass(frozen=True)
class ModelDirLimits:
    """Caps on one model directory (the service sets ``max_total_bytes`` from ``LBC_MAX_MODEL_BYTES``)."""

    max_files: int = 4096
    max_total_bytes: int = 4 << 30
    max_shards: int = 1024
    max_tensors: int = 65_536
    max_tokenizer_bytes: int = MAX_TOKENIZER_BYTES
    max_tokenizer_depth: int = MAX_TOKENIZER_DEPTH
    max_side_file_bytes: int = 16 << 20
    max_side_file_depth: int = 16
    max_index_bytes: int = 16 << 20
    header: HeaderLimits = field(default_factory=HeaderLimits)


class ModelFile(Protocol):
    """One file of a model directory or archive: its path components, size, and a way to read it."""

    @property
    def parts(self) -> tuple[str, ...]: ...

    @property
    def size(self) -> int: ...

    def open(self) -> IO[bytes]: ...


@dataclass(frozen=True)
class ModelDirInfo:
    """A checked model directory: what it is, what it holds, and which of its files the engine reads."""

    model_type: str
    tasks: tuple[str, ...]
    config: CleanConfig = field(hash=False)
    parameter_count: int
    tensor_count: int
    dtypes: Mapping[str, int] = field(hash=False)
    total_bytes: int  # of the files used (config, weights, tokenizer and processor files)
    files: tuple[str, ...]  # names within ``root`` that the engine reads
    ignored: tuple[str, ...]  # paths (relative to the upload) that are never extracted nor read
    root: tuple[str, ...]  # the folder holding the model within the upload (an archive's wrapper folder)
    weights: tuple[str, ...]  # the safetensors files, in shard order
    tensors: Mapping[str, tuple[str, tuple[int, ...]]] = field(hash=False)  # name -> (dtype, shape)

    @property
    def stripped(self) -> tuple[str, ...]:
        """The config.json keys dropped before building (private keys, implementation selectors)."""
        return self.config.stripped

    def summary(self) -> dict[str, Any]:
        """The JSON record of an upload: what a person (and the service's checks) need to know."""
        return {
            "model_type": self.model_type,
            "tasks": list(self.tasks),
            "parameter_count": self.parameter_count,
            "tensor_count": self.tensor_count,
            # Elements of the matrices (rank 2 and up): the weights a sparsity method keeps state for.
            "matrix_parameters": sum(_numel(shape) for _, shape in self.tensors.values() if len(shape) >= 2),
            "sizes": self.config.sizes(),
            "dtypes": dict(self.dtypes),
            "total_bytes": self.total_bytes,
            "stripped_config_keys": list(self.stripped),
            "num_labels": self.config.num_labels,
            "root": "/".join(self.root),
            "files": list(self.files),
            "ignored": list(self.ignored),
            "weights": list(self.weights),
        }


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def check_model_dir(path: str | os.PathLike[str], limits: ModelDirLimits | None = None) -> ModelDirInfo:
    """Check the Hugging Face model directory ``path`` (its files at its top level); see the module doc.

    Raises :class:`FormatError` naming the file and the problem. Links and special files are refused.
    """
    root = Path(path)
    if not root.is_dir():
        raise FormatError(f"{root}: not a directory (a Hugging Face model is a directory with config.json)")
    return check_model_files(_directory_files(root), limits, descend=False)


# Called with (file name, tensor name, dtype, the tensor's raw bytes in chunks) for every tensor of every
# weights file, in file order, when a caller wants to look at the values (the service refuses NaN and
# infinity with numpy, which this package does not import). It must consume the chunks.
TensorDataCheck = Callable[[str, str, str, Iterator[bytes]], None]


def check_model_files(
    files: Iterable[ModelFile],
    limits: ModelDirLimits | None = None,
    *,
    descend: bool = True,
    tensor_data: TensorDataCheck | None = None,
) -> ModelDirInfo:
    """Check a model given as files (e.g. the members of an uploaded archive, read as they stream past).

    Each file is read at most once, in the order given. ``descend``: the model may sit in a folder that is
    the only entry at the top (archives are often made of a directory); its path is ``ModelDirInfo.root``.
    ``tensor_data``: also read the weights' values and hand them to this check (see ``TensorDataCheck``).
    """
    limits = limits or ModelDirLimits()
    seen: dict[tuple[str, ...], _Seen] = {}
    for count, item in enumerate(files, start=1):
        if count > limits.max_files:
            raise FormatError(f"the model has more than {limits.max_files} files")
        parts = tuple(item.parts)
        if parts in seen:
            raise FormatError(f"{'/'.join(parts)} appears twice")
        seen[parts] = _inspect(item, limits, tensor_data)
    root = _wrapper_root(list(seen)) if descend else ()
    return _assemble(seen, root, limits)


# -- one file ---------------------------------------------------------------------------------------


@dataclass
class _Seen:
    name: str
    size: int
    value: Any = None  # what parsing found: a CleanConfig, a SafetensorsHeader, a JSON value, text
    error: FormatError | None = None  # kept, raised only when the file turns out to be one the model uses

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _inspect(item: ModelFile, limits: ModelDirLimits, tensor_data: TensorDataCheck | None) -> _Seen:
    """Refuse what is unsafe anywhere; parse what the model could use (errors kept for later)."""
    name = "/".join(item.parts)
    base = item.parts[-1]
    suffix = os.path.splitext(base)[1].lower()
    why = REFUSED_SUFFIXES.get(suffix)
    if why is not None:
        raise FormatError(f"{name} is refused: {why}")
    seen = _Seen(name, item.size)
    reader = _PARSERS.get(base) or (_read_weights if _is_weights(base) else None)
    with item.open() as stream:
        head = stream.read(_SNIFF_BYTES)
        if not _is_weights(base):
            _refuse_disguised(name, head)
        if reader is None:
            return seen  # ignored: never extracted nor read, so its content does not matter past the sniff
        try:
            seen.value = reader(name, head, stream, item.size, limits)
        except FormatError as exc:
            if _is_weights(base):
                _refuse_disguised(name, head)  # a pickle named .safetensors: say so, not "bad header"
            seen.error = exc
        else:
            if tensor_data is not None and isinstance(seen.value, SafetensorsHeader):
                _read_tensor_data(name, seen.value, stream, tensor_data)
    return seen


def _read_tensor_data(
    name: str, header: SafetensorsHeader, stream: IO[bytes], check: TensorDataCheck
) -> None:
    """Hand every tensor's bytes to ``check``; the stream sits right after the header, and the ranges were
    checked to tile the data section in order."""
    for tensor, entry in sorted(header.tensors.items(), key=lambda item: item[1].start):
        check(name, tensor, entry.dtype, _span(stream, entry.end - entry.start, name))


def _span(stream: IO[bytes], length: int, name: str) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = stream.read(min(_DATA_CHUNK, left))
        if not chunk:
            raise FormatError(f"{name} ends {left} bytes before its header says")
        left -= len(chunk)
        yield chunk


def _refuse_disguised(name: str, head: bytes) -> None:
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise FormatError(
            f"{name} is refused: its content is a pickle (protocol {head[1]}) whatever its name says; "
            "loading a pickle can run any code, so the server never does"
        )
    for magic, why in _MAGIC:
        if head.startswith(magic):
            raise FormatError(f"{name} is refused: its content {why}")


def _is_weights(base: str) -> bool:
    return base == WEIGHTS_FILE or SHARD_RE.match(base) is not None


def _read_all(name: str, head: bytes, stream: IO[bytes], size: int, limit: int) -> bytes:
    if size > limit:
        raise FormatError(f"{name} is {size} bytes, over the limit of {limit}")
    data = head + stream.read(limit + 1 - len(head))
    if len(data) > limit:
        raise FormatError(f"{name} is over the limit of {limit} bytes")
    return data


def _read_weights(name: str, head: bytes, stream: IO[bytes], size: int, limits: ModelDirLimits) -> Any:
    return read_header(_Prefixed(head, stream), size, limits.header, what=name)


def _read_config(name: str, head: bytes, stream: IO[bytes], size: int, limits: ModelDirLimits) -> Any:
    return parse_config(_read_all(name, head, stream, size, limits.max_side_file_bytes))


def _read_tokenizer(name: str, head: bytes, stream: IO[bytes], size: int, limits: ModelDirLimits) -> Any:
    data = _read_all(name, head, stream, size, limits.max_tokenizer_bytes)
    check_tokenizer(
        data, what=name, max_bytes=limits.max_tokenizer_bytes, max_depth=limits.max_tokenizer_depth
    )
    return None  # the engine reads the file itself with the tokenizers library


def _read_side_json(name: str, head: bytes, stream: IO[bytes], size: int, limits: ModelDirLimits) -> Any:
    data = _read_all(name, head, stream, size, limits.max_side_file_bytes)
    value = load_json_data(
        data, what=name, max_bytes=limits.max_side_file_bytes, max_depth=limits.max_side_file_depth
    )
    if not isinstance(value, dict):
        raise FormatError(f"{name} must hold a JSON object")
    refused = [f"{key} ({why})" for key, why in CODE_KEYS.items() if key in value]
    if refused:
        raise FormatError(f"{name} has keys the server refuses: " + "; ".join(refused))
    return None


def _read_text(name: str, head: bytes, stream: IO[bytes], size: int, limits: ModelDirLimits) -> Any:
    data = _read_all(name, head, stream, size, limits.max_side_file_bytes)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{name} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return None


def _read_index(name: str, head: bytes, stream: IO[bytes], size: int, limits: ModelDirLimits) -> Any:
    data = _read_all(name, head, stream, size, limits.max_index_bytes)
    value = load_json_data(data, what=name, max_bytes=limits.max_index_bytes, max_depth=4)
    if not isinstance(value, dict) or not isinstance(value.get("weight_map"), dict):
        raise FormatError(f"{name} must hold a JSON object with a 'weight_map' object")
    extra = sorted(set(value) - {"metadata", "weight_map"})
    if extra:
        raise FormatError(f"{name} has unexpected keys: {', '.join(extra[:10])}")
    if not isinstance(value.get("metadata", {}), dict):
        raise FormatError(f"{name}: metadata must be an object")
    weight_map: dict[str, Any] = value["weight_map"]
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or SHARD_RE.match(shard) is None:
            raise FormatError(
                f"{name}: tensor {tensor!r} is mapped to {shard!r}, which is not a shard file name "
                "model-XXXXX-of-YYYYY.safetensors in the same folder"
            )
    return weight_map


_Reader = Callable[[str, bytes, IO[bytes], int, ModelDirLimits], Any]
_PARSERS: Mapping[str, _Reader] = MappingProxyType(
    {
        CONFIG_FILE: _read_config,
        INDEX_FILE: _read_index,
        TOKENIZER_FILE: _read_tokenizer,
        **dict.fromkeys(JSON_FILES, _read_side_json),
        **dict.fromkeys(TEXT_FILES, _read_text),
    }
)


class _Prefixed:
    """A stream whose first bytes were already read for sniffing."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            data, self._head = self._head + self._stream.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data + (self._stream.read(size - len(data)) if len(data) < size else b"")


# -- the whole directory ----------------------------------------------------------------------------


def _wrapper_root(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Down through folders that are the only entry at their level (``mymodel/config.json`` -> mymodel).

    Hidden entries and macOS's ``__MACOSX`` resource folder do not count: a zip made in the Finder has one
    beside the model's folder.
    """
    root: tuple[str, ...] = ()
    while True:
        depth = len(root)
        entries = {
            (p[depth], len(p) > depth + 1)
            for p in paths
            if p[:depth] == root
            and len(p) > depth
            and not p[depth].startswith(".")
            and p[depth] != "__MACOSX"
        }
        if len(entries) != 1:
            return root
        ((name, is_dir),) = entries
        if not is_dir:
            return root
        root = (*root, name)


def _assemble(
    seen: dict[tuple[str, ...], _Seen], root: tuple[str, ...], limits: ModelDirLimits
) -> ModelDirInfo:
    depth = len(root)
    top = {
        parts[-1]: item for parts, item in seen.items() if len(parts) == depth + 1 and parts[:depth] == root
    }
    where = f" in {'/'.join(root)}/" if root else ""
    config_file = top.get(CONFIG_FILE)
    if config_file is None:
        raise FormatError(
            f"no {CONFIG_FILE}{where}; a Hugging Face model directory needs config.json beside its safetensors"
        )
    config: CleanConfig = config_file.get()
    used = [name for name in top if name in _PARSERS or _is_weights(name)]
    for name in used:
        top[name].get()  # every file the engine reads must have passed its check
    weights, tensors = _weights(top, where, limits)
    total = sum(top[name].size for name in used)
    if total > limits.max_total_bytes:
        raise FormatError(
            f"the model's files hold {total} bytes, over the limit of {limits.max_total_bytes} "
            "(LBC_MAX_MODEL_BYTES)"
        )
    dtypes: dict[str, int] = {}
    for entry in tensors.values():
        dtypes[entry.dtype] = dtypes.get(entry.dtype, 0) + 1
    quantized = sorted(d for d in dtypes if d.startswith(("F8", "F6", "F4")))
    if quantized:
        raise FormatError(
            f"the weights hold quantized tensors ({', '.join(quantized)}), which cannot be sparsified; "
            "upload the unquantized model"
        )
    used_paths = {(*root, name) for name in used}
    ignored = sorted("/".join(parts) for parts in seen if parts not in used_paths)
    return ModelDirInfo(
        model_type=config.model_type,
        tasks=HF_FAMILIES[config.model_type].tasks,
        config=config,
        parameter_count=sum(entry.numel for entry in tensors.values()),
        tensor_count=len(tensors),
        dtypes=MappingProxyType(dtypes),
        total_bytes=total,
        files=tuple(sorted(used)),
        ignored=tuple(ignored),
        root=root,
        weights=weights,
        tensors=MappingProxyType({name: (e.dtype, e.shape) for name, e in tensors.items()}),
    )


def _weights(
    top: Mapping[str, _Seen], where: str, limits: ModelDirLimits
) -> tuple[tuple[str, ...], dict[str, TensorEntry]]:
    """The weight files and every tensor in them, after the single-file / sharded layout checks."""
    shards = sorted(name for name in top if SHARD_RE.match(name))
    index = top.get(INDEX_FILE)
    if WEIGHTS_FILE in top:
        if shards or index is not None:
            raise FormatError(
                f"both {WEIGHTS_FILE} and sharded weights{where}; keep one: a single file, or the shards "
                f"with {INDEX_FILE}"
            )
        header: SafetensorsHeader = top[WEIGHTS_FILE].get()
        _check_tensor_count(len(header.tensors), limits)
        return (WEIGHTS_FILE,), dict(header.tensors)
    if not shards and index is None:
        raise FormatError(
            f"no weights{where}: expected {WEIGHTS_FILE}, or model-XXXXX-of-YYYYY.safetensors shards with "
            f"{INDEX_FILE} (pytorch_model.bin and other pickles are refused)"
        )
    if index is None:
        raise FormatError(
            f"sharded weights{where} without {INDEX_FILE}, which says which shard holds each tensor"
        )
    if len(shards) > limits.max_shards:
        raise FormatError(
            f"the weights are split in {len(shards)} shards, over the limit of {limits.max_shards}"
        )
    weight_map: dict[str, str] = index.get()
    totals = {SHARD_RE.match(name)["total"] for name in shards}  # type: ignore[index]
    expected = [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    if len(totals) != 1 or shards != expected:
        raise FormatError(
            f"shard files {', '.join(shards[:4])}{' ...' if len(shards) > 4 else ''} do not form one "
            f"complete set model-00001-of-N ... model-N-of-N"
        )
    listed = set(weight_map.values())
    if listed != set(shards):
        missing = sorted(listed - set(shards))
        unused = sorted(set(shards) - listed)
        detail = f"it names missing shard {missing[0]}" if missing else f"no tensor is mapped to {unused[0]}"
        raise FormatError(f"{INDEX_FILE} does not match the shard files: {detail}")
    tensors: dict[str, TensorEntry] = {}
    for shard in shards:
        header = top[shard].get()
        for name, entry in header.tensors.items():
            if name in tensors:
                raise FormatError(f"tensor {name!r} is in more than one shard (again in {shard})")
            if weight_map.get(name) != shard:
                raise FormatError(
                    f"tensor {name!r} is in {shard} but {INDEX_FILE} maps it to {weight_map.get(name)!r}"
                )
            tensors[name] = entry
            _check_tensor_count(len(tensors), limits)
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise FormatError(f"{INDEX_FILE} lists tensor {absent[0]!r}, which no shard holds")
    return tuple(shards), tensors


def _check_tensor_count(count: int, limits: ModelDirLimits) -> None:
    if count > limits.max_tensors:
        raise FormatError(f"the weights hold more than {limits.max_tensors} tensors")


@dataclass(frozen=True)
class _DiskFile:
    parts: tuple[str, ...]
    size: int
    path: Path

    def open(self) -> IO[bytes]:
        return self.path.open("rb")


def _directory_files(root: Path) -> Iterable[_DiskFile]:
    """The regular files under ``root``; a link or special file is refused (it could point anywhere)."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(directory)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            info = path.lstat()
            relative = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise FormatError(f"{relative} is a symbolic link; a model directory holds plain files only")
            if stat.S_ISREG(info.st_mode):
                yield _DiskFile(tuple(path.relative_to(root).parts), info.st_size, path)
            elif not stat.S_ISDIR(info.st_mode):
                raise FormatError(f"{relative} is a device, FIFO or other special file")
        dirnames.sort()
