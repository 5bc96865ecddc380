"""Validation of uploaded datasets, checkpoints and Hugging Face models before they are accepted, without torch.

An upload is untrusted: archives are read member by member (never extracted) with path, link, count and
size checks; headers are parsed instead of data being decoded; pickles are never unpickled (CIFAR batches
are checked by name and size, torch checkpoints by scanning their pickle opcodes for the globals they
would import); a model directory is checked by :mod:`lbc_formats.hf_directory`, the rules the worker and
the engine apply again. Every problem is an :class:`UploadInvalid` (422) naming the member or key at fault.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import lzma
import math
import pickletools
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, Protocol

import numpy as np
from numpy.lib import format as npy_format

from jobs.catalog import INT_ARG_RANGES, weight_layer_names
from jobs.errors import InvalidInput
from lbc_catalog.uploads import DATASET_FORMATS
from lbc_formats.errors import FormatError
from lbc_formats.hf_directory import ModelDirLimits, check_model_files
from lbc_formats.safetensors_header import SAFETENSORS_DTYPES, HeaderLimits, read_header
from lbc_formats.text import (
    TextDataError,
    TextLimits,
    corpus_layout,
    labeled_layout,
    read_corpus,
    read_labeled,
)
from lbc_formats.tokenizer_json import MAX_TOKENIZER_BYTES, MAX_TOKENIZER_DEPTH, check_tokenizer

CHECKPOINT_FORMATS = ("safetensors", "torch")

_CHUNK = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_IMAGES_RE = re.compile(r"^(?P<split>.+?)[-.]images[-.]idx3[-.]ubyte(?P<gz>\.gz)?$")
_LABELS_RE = re.compile(r"^(?P<split>.+?)[-.]labels[-.]idx1[-.]ubyte(?P<gz>\.gz)?$")
IDX_LABELS_MAGIC = 2049
IDX_IMAGES_MAGIC = 2051
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_IMAGE_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".bmp": (b"BM",),
}
_SKIPPED_NAMES = frozenset({"__MACOSX"})
# The engine reads MNIST labels as classes 0-9 and builds at most this many output classes.
MNIST_CLASSES = 10
MAX_CLASSES = INT_ARG_RANGES["num_classes"][1]
# Members that are archives themselves: never unpacked (by the API or the worker), so a dataset hidden
# inside one would silently be missing; MNIST's own .gz files are the one nesting the loaders read.
_NESTED_ARCHIVE_SUFFIXES = (
    ".zip",
    ".tar",
    ".tgz",
    ".tar.gz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".7z",
    ".rar",
)
_TAR_OVERHEAD_PER_MEMBER = 1536
_TAR_OVERHEAD_FIXED = 1 << 20

# What a torch state dict (or a checkpoint dict around one) may import while unpickling: the same
# idea as torch's own ``weights_only`` allowlist. Anything else (os.system, builtins.eval, ...) is
# rejected before a worker ever calls torch.load.
_TORCH_STORAGE_ITEMSIZE = {
    "FloatStorage": 4,
    "DoubleStorage": 8,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "UntypedStorage": 1,
}
ALLOWED_TORCH_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch.serialization._get_layout",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.float32",
        "torch.float64",
        "torch.float16",
        "torch.bfloat16",
        "torch.int64",
        "torch.int32",
        "torch.int16",
        "torch.int8",
        "torch.uint8",
        "torch.bool",
        "torch.strided",
        "torch.sparse_coo",
        "torch.per_tensor_affine",
        "_codecs.encode",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.slice",
        "builtins.complex",
    }
    | {f"torch.{name}" for name in _TORCH_STORAGE_ITEMSIZE}
)
# Opcodes that import something by name without GLOBAL/STACK_GLOBAL; a state dict never needs them.
_FORBIDDEN_OPCODES = frozenset({"INST", "OBJ", "EXT1", "EXT2", "EXT4"})
_STRING_OPCODES = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)
_INT_OPCODES = frozenset({"BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4"})


class UploadInvalid(InvalidInput):
    """An upload that cannot be accepted; ``details`` is ``[{field, message}]`` like every 422."""

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message, details=[{"field": field, "message": message}])


@dataclass(frozen=True)
class UploadLimits:
    """Caps applied while reading one upload. The archive caps mirror the engine's extraction limits."""

    max_members: int = 200_000
    max_total_bytes: int = 4 << 30  # uncompressed member data
    max_idx_bytes: int = 1 << 30
    max_array_bytes: int = 4 << 30
    max_label_bytes: int = 512 << 20
    max_cifar_batch_bytes: int = 512 << 20
    # A safetensors header names each tensor in about 100 bytes: 16 MiB is 100x a large model's, and
    # keeps the decoded header (objects are ~10x their text) far from the API's memory.
    max_safetensors_header: int = 16 << 20
    max_header_depth: int = 8  # {name: {shape: [..]}} is three deep
    max_tensors: int = 16_384
    max_pickle_bytes: int = 64 << 20
    # What the pickle scanner keeps per opcode is one stack slot: these bound its memory and its stack.
    max_pickle_ops: int = 2_000_000
    max_pickle_depth: int = 256
    max_image_pixels: int = 4096 * 4096
    # Text datasets are read whole (UTF-8 checks, rows, labels): this bounds the API's memory for one.
    max_text_bytes: int = 256 << 20
    max_text_rows: int = 5_000_000
    max_tokenizer_bytes: int = MAX_TOKENIZER_BYTES


@dataclass(frozen=True)
class Accepted:
    """A validated upload: its format, the file suffix loaders expect, and a summary for the listing."""

    format: str
    suffix: str
    summary: dict[str, Any]


# -- archives ---------------------------------------------------------------------------------------


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def sniff(path: Path) -> str:
    """The container kind from the content: zip, gzip, bz2, xz, tar or unknown."""
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "unknown"


_TAR_SUFFIX = {"gzip": ".tar.gz", "bz2": ".tar.bz2", "xz": ".tar.xz", "tar": ".tar"}


def member_parts(name: str) -> tuple[str, ...]:
    """Path components of an archive member; raises for absolute paths, '..' and NUL bytes."""
    if "\x00" in name:
        raise UploadInvalid(f"archive member {name!r} has a NUL byte in its name")
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or _DRIVE_RE.match(normalized):
        raise UploadInvalid(f"archive member {name!r} has an absolute path")
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UploadInvalid(f"archive member {name!r} has a '..' path component")
    return parts


def zip_member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The checks every zip member gets (datasets, .npz files, torch checkpoints): its path, its type
    (no links or special files) and no encryption; returns its path components."""
    parts = member_parts(info.filename)
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        raise UploadInvalid(f"archive member {info.filename!r} is a symbolic link")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UploadInvalid(f"archive member {info.filename!r} is a special file")
    if info.flag_bits & 0x1:
        raise UploadInvalid(f"archive member {info.filename!r} is encrypted")
    return parts


@dataclass
class Member:
    """One regular file of an archive; ``read`` works only while the iteration is at this member."""

    parts: tuple[str, ...]
    name: str
    size: int
    open: Callable[[], IO[bytes]]
    budget: _Budget

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes from the start of the member (counted against the archive budget)."""
        with self.open() as stream:
            data = stream.read(limit)
        self.budget.consume(len(data), self.name)
        return data

    def stream(self) -> Iterator[bytes]:
        with self.open() as stream:
            while chunk := stream.read(_CHUNK):
                self.budget.consume(len(chunk), self.name)
                yield chunk


class _MemberPaths:
    """Where an archive's members land once extracted. The worker's extraction never overwrites: a member
    whose path another one already took (a repeated name, a file where a folder is, or the reverse) fails
    every job that reads the upload, so the upload is refused here, naming the member."""

    def __init__(self) -> None:
        self.files: set[tuple[str, ...]] = set()
        self.folders: set[tuple[str, ...]] = set()

    def add(self, parts: tuple[str, ...], name: str, *, folder: bool) -> None:
        for depth in range(1, len(parts)):
            if parts[:depth] in self.files:
                raise UploadInvalid(
                    f"archive member {name!r} is inside {'/'.join(parts[:depth])!r}, which is a file"
                )
        if parts in self.files:
            kind = "is a folder, but a file of that name came before it" if folder else "appears twice"
            raise UploadInvalid(f"archive member {name!r} {kind}")
        if not folder and parts in self.folders:
            raise UploadInvalid(f"archive member {name!r} is a file, but other members sit inside it")
        self.folders.update(parts[:depth] for depth in range(1, len(parts) + folder))
        if not folder:
            self.files.add(parts)


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def consume(self, count: int, member: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise UploadInvalid(
                f"archive contents exceed {self.limit} uncompressed bytes (at {member!r}; possible decompression bomb)"
            )


class _BoundedReader:
    """Fails once more than ``limit`` bytes were read: caps a decompressed tar stream as a whole."""

    def __init__(self, stream: _Reader, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit - self._read + 1
        data = self._stream.read(min(size, self._limit - self._read + 1))
        self._read += len(data)
        if self._read > self._limit:
            raise UploadInvalid(
                f"decompressed archive exceeds {self._limit} bytes (possible decompression bomb)"
            )
        return data


def iter_archive(path: Path, limits: UploadLimits) -> Iterator[Member]:
    """Every regular file of a zip or tar(.gz/.bz2/.xz) archive, after the safety checks.

    Rejects absolute paths, '..', links, devices and encrypted members; caps the member count and the
    uncompressed size (declared and actually read). Directories are checked and skipped.
    """
    kind = sniff(path)
    if kind == "zip":
        yield from _iter_zip(path, limits)
    elif kind in _TAR_SUFFIX:
        yield from _iter_tar(path, kind, limits)
    else:
        raise UploadInvalid("expected a .zip or .tar(.gz) archive")


def archive_suffix(path: Path) -> str:
    kind = sniff(path)
    return ".zip" if kind == "zip" else _TAR_SUFFIX.get(kind, "")


def _iter_zip(path: Path, limits: UploadLimits) -> Iterator[Member]:
    budget = _Budget(limits.max_total_bytes)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise UploadInvalid(
                    f"archive has {len(infos)} members, over the limit of {limits.max_members}"
                )
            declared = sum(info.file_size for info in infos)
            if declared > limits.max_total_bytes:
                raise UploadInvalid(
                    f"archive declares {declared} uncompressed bytes, over the {limits.max_total_bytes}-byte "
                    "limit (possible decompression bomb)"
                )
            paths = _MemberPaths()
            for info in infos:
                parts = zip_member_parts(info)
                if not parts:
                    continue
                folder = info.is_dir() or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFDIR
                paths.add(parts, info.filename, folder=folder)
                if folder:
                    continue
                yield Member(parts, info.filename, info.file_size, functools.partial(zf.open, info), budget)
    except zipfile.BadZipFile as exc:
        raise UploadInvalid(f"corrupt zip archive ({exc})") from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError) as exc:
        raise UploadInvalid(f"cannot read zip archive ({exc})") from exc


@contextlib.contextmanager
def _decompressed(path: Path, kind: str) -> Iterator[_Reader]:
    with path.open("rb") as raw:
        if kind == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz
        elif kind == "bz2":
            with bz2.BZ2File(raw, mode="rb") as bz:
                yield bz
        elif kind == "xz":
            with lzma.LZMAFile(raw, mode="rb") as xz:
                yield xz
        else:
            yield raw


def _iter_tar(path: Path, kind: str, limits: UploadLimits) -> Iterator[Member]:
    budget = _Budget(limits.max_total_bytes)
    declared = 0
    stream_limit = (
        limits.max_total_bytes + _TAR_OVERHEAD_PER_MEMBER * limits.max_members + _TAR_OVERHEAD_FIXED
    )
    try:
        # "r|": a forward-only stream, so every decompressed byte passes the bounded reader.
        with (
            _decompressed(path, kind) as plain,
            tarfile.open(fileobj=_BoundedReader(plain, stream_limit), mode="r|") as tf,  # type: ignore[call-overload]
        ):
            paths = _MemberPaths()
            for count, info in enumerate(tf, start=1):
                if count > limits.max_members:
                    raise UploadInvalid(f"archive has more than {limits.max_members} members")
                parts = member_parts(info.name)
                if info.issym() or info.islnk():
                    raise UploadInvalid(f"archive member {info.name!r} is a link")
                if not (info.isreg() or info.isdir()):
                    raise UploadInvalid(
                        f"archive member {info.name!r} is a device, FIFO or other special file"
                    )
                if not parts:
                    continue
                paths.add(parts, info.name, folder=info.isdir())
                if info.isdir():
                    continue
                declared += info.size
                if declared > limits.max_total_bytes:
                    raise UploadInvalid(
                        f"archive declares more than {limits.max_total_bytes} uncompressed bytes "
                        f"(at {info.name!r}; possible decompression bomb)"
                    )

                def opener(info: tarfile.TarInfo = info) -> IO[bytes]:
                    stream = tf.extractfile(info)
                    if stream is None:  # pragma: no cover - regular files always have a stream
                        raise UploadInvalid(f"archive member {info.name!r} cannot be read")
                    return stream

                yield Member(parts, info.name, info.size, opener, budget)
    except tarfile.TarError as exc:
        raise UploadInvalid(f"corrupt tar archive ({exc})") from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise UploadInvalid(f"cannot read tar archive ({exc})") from exc


def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") or p in _SKIPPED_NAMES for p in parts)


def _reject_nested(member: Member) -> None:
    if member.parts[-1].lower().endswith(_NESTED_ARCHIVE_SUFFIXES):
        raise UploadInvalid(
            f"archive member {member.name!r} is itself an archive; nested archives are not unpacked, "
            "so upload its contents directly"
        )


# -- datasets ---------------------------------------------------------------------------------------


def validate_dataset(path: Path, fmt: str, limits: UploadLimits | None = None) -> Accepted:
    """Check that ``path`` is a loadable dataset of format ``fmt``; returns its summary."""
    limits = limits or UploadLimits()
    if fmt not in DATASET_FORMATS:
        raise UploadInvalid(
            f"unknown dataset format {fmt!r}; choose one of {', '.join(DATASET_FORMATS)}", field="format"
        )
    try:
        if fmt == "npz":
            return _validate_npz(path, limits)
        if fmt == "mnist":
            return _validate_mnist(path, limits)
        if fmt == "imagefolder":
            return _validate_imagefolder(path, limits)
        if fmt in ("text", "labeled-text"):
            return _validate_text(path, fmt, limits)
        if fmt == "tokenizer":
            return _validate_tokenizer(path, limits)
        return _validate_cifar(path, fmt, limits)
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        # Raised while a member is read (a bad CRC, a header that lies about its size), outside the
        # archive iterator's own handler.
        raise UploadInvalid(f"corrupt archive ({exc})") from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError) as exc:
        raise UploadInvalid(f"cannot read the archive ({exc})") from exc


def _validate_text(path: Path, fmt: str, limits: UploadLimits) -> Accepted:
    """A corpus (plain text or JSON lines) or labeled texts (JSON lines or CSV), read as the engine reads it."""
    if sniff(path) != "unknown":
        raise UploadInvalid(f"a {fmt} dataset is one UTF-8 text file, not an archive ({sniff(path)})")
    text_limits = TextLimits(
        max_bytes=limits.max_text_bytes, max_rows=limits.max_text_rows, max_classes=MAX_CLASSES
    )
    try:
        if fmt == "text":
            layout = corpus_layout(path)
            corpus = read_corpus(path, text_limits, layout)
            summary: dict[str, Any] = {
                "layout": layout,
                "characters": len(corpus),
                "lines": corpus.count("\n") + 1,
            }
            return Accepted("text", ".jsonl" if layout == "jsonl" else ".txt", summary)
        layout = labeled_layout(path)
        rows = read_labeled(path, text_limits, layout)
    except TextDataError as exc:
        raise UploadInvalid(_without_temp_name(str(exc), path)) from None
    counts = [0] * len(rows.classes)
    for label in rows.labels:
        counts[label] += 1
    summary = {
        "layout": layout,
        "samples": len(rows.texts),
        "num_classes": len(rows.classes),
        "classes": list(rows.classes[:1000]),
        "class_counts": counts[:1000],
    }
    return Accepted("labeled-text", f".{layout}", summary)


def _without_temp_name(message: str, path: Path) -> str:
    """A reader's message without the server's temporary file name (it means nothing to the uploader)."""
    prefix = path.name + ": "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _validate_tokenizer(path: Path, limits: UploadLimits) -> Accepted:
    """A tokenizer.json, checked as a model directory's is (lbc_formats.tokenizer_json). Parsed as data only."""
    try:
        tokenizer = check_tokenizer(
            path.read_bytes()[: limits.max_tokenizer_bytes + 1],
            what="the tokenizer file",
            max_bytes=limits.max_tokenizer_bytes,
            max_depth=MAX_TOKENIZER_DEPTH,
        )
    except FormatError as exc:
        raise UploadInvalid(str(exc)) from None
    summary = {
        "model": tokenizer.model,
        "vocab_size": tokenizer.vocab_size,
        "added_tokens": tokenizer.added_tokens,
    }
    return Accepted("tokenizer", ".json", summary)


def _validate_npz(path: Path, limits: UploadLimits) -> Accepted:
    if sniff(path) != "zip":
        raise UploadInvalid("not an .npz file (an .npz is a zip archive of .npy arrays)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            if len(infos) > 64:
                raise UploadInvalid(f".npz holds {len(infos)} members; expected x, y and optionally classes")
            for member_info in infos.values():
                zip_member_parts(member_info)
            for key in ("x", "y"):
                if f"{key}.npy" not in infos:
                    raise UploadInvalid(f".npz is missing array {key!r} (it must hold 'x' and 'y')")
            headers = {}
            for key in ("x", "y", "classes"):
                info = infos.get(f"{key}.npy")
                if info is None:
                    continue
                with zf.open(info) as member:
                    version = npy_format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = npy_format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = npy_format.read_array_header_2_0(member)
                    else:
                        raise UploadInvalid(f"array {key!r} uses unsupported .npy version {version}")
                    offset = member.tell()
                if dtype.hasobject:
                    raise UploadInvalid(
                        f"array {key!r} holds Python objects (dtype {dtype}), which are not allowed"
                    )
                nbytes = math.prod(shape) * dtype.itemsize
                # x is only inspected; y and classes are loaded, so they get the smaller cap.
                if nbytes > (limits.max_array_bytes if key == "x" else limits.max_label_bytes):
                    raise UploadInvalid(
                        f"array {key!r} of shape {shape} needs {nbytes} bytes, over the limit"
                    )
                if info.file_size != offset + nbytes:
                    raise UploadInvalid(
                        f"array {key!r}: header declares {shape} {dtype} ({nbytes} bytes) but the member "
                        f"holds {info.file_size - offset}"
                    )
                headers[key] = (tuple(shape), dtype)
                if key == "x":
                    _check_finite_inputs(zf, info, offset, nbytes, dtype)
    except zipfile.BadZipFile as exc:
        raise UploadInvalid(f"not a readable .npz ({exc})") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise UploadInvalid(f"malformed .npy header ({exc})") from exc

    x_shape, x_dtype = headers["x"]
    y_shape, y_dtype = headers["y"]
    if len(x_shape) not in (2, 3, 4) or x_shape[0] == 0:
        raise UploadInvalid(f"x must be N x F, N x H x W or 4-D images with N > 0, got shape {list(x_shape)}")
    if not (x_dtype == np.uint8 or np.issubdtype(x_dtype, np.floating)):
        raise UploadInvalid(f"x has dtype {x_dtype}; store uint8 pixels (0-255) or floating-point values")
    if len(y_shape) != 1:
        raise UploadInvalid(f"y must be one-dimensional, got shape {list(y_shape)}")
    if not (np.issubdtype(y_dtype, np.integer) and y_dtype != np.bool_):
        raise UploadInvalid(f"y must hold integer labels, got dtype {y_dtype}")
    if y_shape[0] != x_shape[0]:
        raise UploadInvalid(f"x holds {x_shape[0]} samples but y holds {y_shape[0]} labels")
    try:
        # allow_pickle=False: object arrays would run code; only y (and classes) are loaded, never x.
        with np.load(path, allow_pickle=False) as archive:
            labels = np.asarray(archive["y"]).astype(np.int64)
            classes = archive["classes"] if "classes" in headers else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UploadInvalid(f"cannot read .npz arrays ({exc})") from exc
    if int(labels.min()) < 0:
        raise UploadInvalid(f"label {int(labels.min())} is negative")
    if int(labels.max()) >= MAX_CLASSES:
        raise UploadInvalid(
            f"label {int(labels.max())} is out of range; at most {MAX_CLASSES} classes are supported"
        )
    _require_several_classes(np.unique(labels).tolist(), "y")
    num_classes = int(labels.max()) + 1
    class_names: list[str] | None = None
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "US":
            raise UploadInvalid(
                f"classes must be a 1-D array of strings, got {classes.dtype} {list(classes.shape)}"
            )
        class_names = [
            c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in classes.tolist()
        ]
        if num_classes > len(class_names):
            raise UploadInvalid(f"label {num_classes - 1} is out of range for {len(class_names)} class names")
        num_classes = len(class_names)
    if len(x_shape) == 2:
        input_shape = [x_shape[1]]
    elif len(x_shape) == 3:
        input_shape = [1, x_shape[1], x_shape[2]]
    elif x_shape[3] in (1, 3, 4) and x_shape[1] not in (1, 3, 4):
        input_shape = [x_shape[3], x_shape[1], x_shape[2]]
    else:
        input_shape = list(x_shape[1:])
    summary: dict[str, Any] = {
        "samples": int(x_shape[0]),
        "num_classes": num_classes,
        "input_shape": input_shape,
        "x_dtype": str(x_dtype),
    }
    if class_names is not None:
        summary["classes"] = class_names[:1000]
    return Accepted("npz", ".npz", summary)


def _check_finite_inputs(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, offset: int, nbytes: int, dtype: Any
) -> None:
    """Refuse float inputs holding NaN or infinity: training on them gives a NaN loss in the worker."""
    if dtype.kind not in "fc":
        return
    bad = 0
    with zf.open(info) as member:
        member.read(offset)  # the .npy header, already parsed
        for chunk in _read_span(member, nbytes):
            values = np.frombuffer(chunk, dtype=dtype)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise UploadInvalid(f"array 'x' holds {bad} NaN or infinite value(s); inputs must be finite numbers")


def _require_several_classes(labels: list[int], where: str) -> None:
    """A classifier cannot learn from one class; the worker would train to a constant answer."""
    if len(labels) < 2:
        raise UploadInvalid(
            f"{where} holds a single class (every label is {labels[0]}); a dataset needs at least 2 classes"
        )


@dataclass
class _IdxInfo:
    split: str
    kind: str  # images | labels
    dims: tuple[int, ...]
    max_label: int | None = None
    labels: frozenset[int] = frozenset()


def _validate_mnist(path: Path, limits: UploadLimits) -> Accepted:
    found: dict[tuple[tuple[str, ...], str, str], _IdxInfo] = {}
    seen: list[tuple[str, ...]] = []
    for member in iter_archive(path, limits):
        if not _visible(member.parts):
            continue
        _reject_nested(member)
        seen.append(member.parts)
        base = member.parts[-1]
        for kind, pattern in (("images", _IMAGES_RE), ("labels", _LABELS_RE)):
            match = pattern.match(base)
            if match is None:
                continue
            key = (member.parts[:-1], match["split"], kind)
            info = _read_idx_member(member, kind, bool(match["gz"]), limits)
            info.split = match["split"]
            # Raw and .gz copies of the same file may coexist; the loader prefers the raw one.
            if key not in found or not match["gz"]:
                found[key] = info
    pairs: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for (directory, split, kind), info in sorted(found.items()):
        if kind != "images" or (directory, split, "labels") not in found:
            continue
        labels = found[(directory, split, "labels")]
        if labels.max_label is not None and labels.max_label >= MNIST_CLASSES:
            raise UploadInvalid(
                f"split {split!r}: label {labels.max_label} is out of range; MNIST labels are 0 to "
                f"{MNIST_CLASSES - 1} (use the npz format for other label sets)"
            )
        if info.dims[0] != labels.dims[0]:
            raise UploadInvalid(
                f"split {split!r}: {info.dims[0]} images but {labels.dims[0]} labels in "
                f"{'/'.join(directory) or 'the archive root'}"
            )
        _require_several_classes(sorted(labels.labels), f"split {split!r}")
        pairs.setdefault(directory, {})[split] = {
            "samples": info.dims[0],
            "image_shape": list(info.dims[1:]),
            "num_classes": (labels.max_label or 0) + 1,
        }
    if not pairs:
        raise UploadInvalid(
            "no IDX image/label pair found (expected e.g. train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz] in one directory of the archive)"
        )
    if len(pairs) > 1:
        names = ", ".join("/".join(d) or "<root>" for d in pairs)
        raise UploadInvalid(f"IDX pairs found in several directories ({names}); upload one directory")
    directory, splits = next(iter(pairs.items()))
    if directory != _wrapper_root(seen):
        raise UploadInvalid(
            f"the IDX files sit in {'/'.join(directory)!r}; put them at the archive root or in its only "
            "top-level folder"
        )
    first = next(iter(splits.values()))
    summary = {
        "root": "/".join(directory),
        "splits": splits,
        "samples": sum(s["samples"] for s in splits.values()),
        "num_classes": max(s["num_classes"] for s in splits.values()),
        "input_shape": [1, *first["image_shape"]],
    }
    return Accepted("mnist", archive_suffix(path), summary)


def _wrapper_root(files: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Where the worker looks for the IDX files: down through folders that are the only entry."""
    root: tuple[str, ...] = ()
    while True:
        depth = len(root)
        entries = {(parts[depth], len(parts) > depth + 1) for parts in files if parts[:depth] == root}
        if len(entries) != 1:
            return root
        ((name, is_dir),) = entries
        if not is_dir:
            return root
        root = (*root, name)


def _read_idx_member(member: Member, kind: str, compressed: bool, limits: UploadLimits) -> _IdxInfo:
    name = member.name
    expected_magic = IDX_IMAGES_MAGIC if kind == "images" else IDX_LABELS_MAGIC
    expected_ndim = 3 if kind == "images" else 1
    try:
        with member.open() as raw:
            stream: _Reader = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            header = stream.read(4)
            if len(header) < 4:
                raise UploadInvalid(f"{name}: truncated IDX header")
            magic = int.from_bytes(header, "big")
            if magic != expected_magic:
                what = "an image file" if kind == "images" else "a label file of unsigned bytes"
                raise UploadInvalid(f"{name}: IDX magic {magic} is not {what} (expected {expected_magic})")
            ndim = header[3]
            if ndim != expected_ndim:
                raise UploadInvalid(
                    f"{name}: IDX {kind} file with {ndim} dimensions (expected {expected_ndim})"
                )
            dims_bytes = stream.read(4 * ndim)
            if len(dims_bytes) < 4 * ndim:
                raise UploadInvalid(f"{name}: truncated IDX header (dimension sizes missing)")
            dims = struct.unpack(f">{ndim}I", dims_bytes)
            if any(d == 0 for d in dims):
                raise UploadInvalid(f"{name}: IDX dimensions {list(dims)} include a zero")
            size = math.prod(dims)
            if size > limits.max_idx_bytes:
                raise UploadInvalid(f"{name}: IDX header declares {size} bytes, over the limit")
            member.budget.consume(4 + 4 * ndim, name)
            max_label = None
            seen: set[int] = set()
            if not compressed and kind == "images":
                # Raw images: the member size proves the length without reading the pixels.
                actual = member.size - 4 - 4 * ndim
            else:
                actual = 0
                while chunk := stream.read(min(_CHUNK, size + 1 - actual)):
                    member.budget.consume(len(chunk), name)
                    actual += len(chunk)
                    if kind == "labels" and chunk:
                        present = np.unique(np.frombuffer(chunk, dtype=np.uint8))
                        seen.update(present.tolist())
                        max_label = max(seen)
                    if actual > size:
                        break
            if actual != size:
                raise UploadInvalid(
                    f"{name}: IDX header declares {list(dims)} ({size} bytes of data) but the file holds {actual}"
                )
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UploadInvalid(f"{name}: corrupt gzip stream ({exc})") from exc
    return _IdxInfo(split="", kind=kind, dims=tuple(dims), max_label=max_label, labels=frozenset(seen))


def _validate_imagefolder(path: Path, limits: UploadLimits) -> Accepted:
    files: dict[tuple[str, ...], str] = {}  # visible file parts -> extension ('' for non-images)
    first_size: tuple[int, int] | None = None
    for member in iter_archive(path, limits):
        if not _visible(member.parts):
            continue
        _reject_nested(member)
        suffix = PurePosixPath(member.parts[-1]).suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            files[member.parts] = ""
            continue
        head = member.read(32)
        if not head.startswith(_IMAGE_MAGIC[suffix]):
            raise UploadInvalid(
                f"{member.name}: content is not a {suffix[1:].upper()} image (wrong magic bytes)"
            )
        size = _image_size(head, suffix)
        if size is not None:
            if size[0] * size[1] > limits.max_image_pixels or 0 in size:
                raise UploadInvalid(f"{member.name}: image size {size[0]}x{size[1]} is out of range")
            first_size = first_size or size
        files[member.parts] = suffix
    root = _find_root(files)
    depth = len(root)
    classes: dict[str, int] = {}
    for parts, suffix in files.items():
        if parts[:depth] != root or len(parts) < depth + 2:
            continue
        name = parts[depth]
        classes.setdefault(name, 0)
        if suffix:
            classes[name] += 1
    empty = sorted(name for name, count in classes.items() if count == 0)
    if empty:
        raise UploadInvalid(f"class directory {empty[0]!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if len(classes) < 2:
        loose = any(
            suffix and parts[:depth] == root and len(parts) == depth + 1 for parts, suffix in files.items()
        )
        hint = " (images must sit in one subdirectory per class)" if loose else ""
        raise UploadInvalid(f"an image folder needs at least 2 class directories, found {len(classes)}{hint}")
    names = sorted(classes)
    summary: dict[str, Any] = {
        "root": "/".join(root),
        "samples": sum(classes.values()),
        "num_classes": len(names),
        "classes": names[:1000],
        "per_class": {name: classes[name] for name in names[:1000]},
    }
    if first_size is not None:
        summary["image_size"] = [first_size[1], first_size[0]]  # H, W
    return Accepted("imagefolder", archive_suffix(path), summary)


def _image_size(head: bytes, suffix: str) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or BMP header; None for JPEG (needs a marker scan)."""
    if suffix == ".png" and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if suffix == ".bmp" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(int(width)), abs(int(height))
    return None


def _find_root(files: dict[tuple[str, ...], str]) -> tuple[str, ...]:
    """Descend through single wrapper directories, as the engine's ImageFolder loader does."""
    root: tuple[str, ...] = ()
    while True:
        depth = len(root)
        below = [parts for parts in files if parts[:depth] == root and len(parts) > depth]
        dirs = {parts[depth] for parts in below if len(parts) > depth + 1}
        has_images = any(files[parts] and len(parts) == depth + 1 for parts in below)
        if len(dirs) != 1 or has_images:
            return root
        (only,) = dirs
        inner = [parts for parts in below if parts[depth] == only]
        if any(len(parts) == depth + 2 for parts in inner):  # a file directly inside: a class directory
            return root
        root = (*root, only)


_CIFAR_LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "meta": "batches.meta",
        "splits": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "num_classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "meta": "meta",
        "splits": {"train": ("train",), "test": ("test",)},
        "num_classes": 100,
    },
}
_CIFAR_IMAGE_BYTES = 3 * 32 * 32
# What the worker's restricted unpickler resolves for CIFAR batches (numpy moved its core module in 2.0).
ALLOWED_CIFAR_GLOBALS = frozenset(
    {"numpy.ndarray", "numpy.dtype", "_codecs.encode"}
    | {f"{core}.multiarray._reconstruct" for core in ("numpy.core", "numpy._core")}
    | {f"{core}.multiarray.scalar" for core in ("numpy.core", "numpy._core")}
    | {f"{core}.numeric._frombuffer" for core in ("numpy.core", "numpy._core")}
)


class _Metered:
    """A member stream whose reads count against the archive budget (for the pickle scanner)."""

    def __init__(self, stream: IO[bytes], member: Member) -> None:
        self._stream = stream
        self._member = member

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._member.budget.consume(len(data), self._member.name)
        return data

    def readline(self) -> bytes:
        data = self._stream.readline(_CHUNK)
        self._member.budget.consume(len(data), self._member.name)
        return data

    def __enter__(self) -> _Metered:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()


def _validate_cifar(path: Path, variant: str, limits: UploadLimits) -> Accepted:
    if sniff(path) not in _TAR_SUFFIX:
        raise UploadInvalid(f"{variant} must be uploaded as the CIFAR python .tar.gz archive")
    layout = _CIFAR_LAYOUTS[variant]
    wanted = {layout["meta"], *(name for files in layout["splits"].values() for name in files)}
    # Batches are pickles: checked by name, size and the globals they would import, never unpickled here.
    sizes: dict[tuple[str, ...], dict[str, int]] = {}
    for member in iter_archive(path, limits):
        directory, base = member.parts[:-1], member.parts[-1]
        if base not in wanted or directory not in ((), (layout["folder"],)):
            continue
        if member.size > limits.max_cifar_batch_bytes:
            raise UploadInvalid(
                f"{member.name}: {member.size} bytes, over the {limits.max_cifar_batch_bytes} limit"
            )
        if member.size == 0:
            raise UploadInvalid(f"{member.name} is empty")
        with member.open() as stream:
            scan_pickle(
                _Metered(stream, member),
                ALLOWED_CIFAR_GLOBALS,
                f"{member.name} (a pickle)",
                "a CIFAR batch holds only plain containers and numpy arrays",
                limits,
            )
        sizes.setdefault(directory, {})[base] = member.size
    candidates = [d for d, names in sizes.items() if layout["meta"] in names]
    if not candidates:
        raise UploadInvalid(
            f"no {layout['meta']!r} at the archive root or in {layout['folder']!r}/ (is this the {variant} python version?)"
        )
    directory = candidates[0] if () not in candidates else ()
    present = sizes[directory]
    splits = {}
    for split, names in layout["splits"].items():
        if all(name in present for name in names):
            small = [name for name in names if present[name] < _CIFAR_IMAGE_BYTES]
            if small:
                raise UploadInvalid(f"{small[0]}: {present[small[0]]} bytes is too small for a CIFAR batch")
            splits[split] = {"files": list(names), "bytes": sum(present[name] for name in names)}
    if not splits:
        expected = "; ".join(f"{split}: {', '.join(names)}" for split, names in layout["splits"].items())
        raise UploadInvalid(f"no complete {variant} split in the archive (expected {expected})")
    summary = {
        "root": "/".join(directory),
        "splits": splits,
        "num_classes": layout["num_classes"],
        "input_shape": [3, 32, 32],
    }
    return Accepted(variant, archive_suffix(path), summary)


# -- Hugging Face models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArchiveFile:
    """An archive member as :mod:`lbc_formats.hf_directory` reads it; reads count against the budget."""

    member: Member

    @property
    def parts(self) -> tuple[str, ...]:
        return self.member.parts

    @property
    def size(self) -> int:
        return self.member.size

    def open(self) -> IO[bytes]:
        return _Metered(self.member.open(), self.member)  # type: ignore[return-value]


def _finite_tensor(file: str, tensor: str, dtype: str, chunks: Iterator[bytes]) -> None:
    _check_finite(_whole_elements(chunks, dtype), dtype, "<", f"{file}: tensor {tensor!r}")


def _whole_elements(chunks: Iterator[bytes], dtype: str) -> Iterator[bytes]:
    """Re-cut ``chunks`` at element boundaries (archive reads return any length) for numpy."""
    size = max(1, int(SAFETENSORS_DTYPES[dtype]))
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        cut = len(data) - len(data) % size
        rest = data[cut:]
        if cut:
            yield data[:cut]
    if rest:
        yield rest


def validate_model(
    path: Path, limits: UploadLimits | None = None, max_model_bytes: int = 4 << 30
) -> Accepted:
    """Check an archive (zip or tar) of a Hugging Face model directory; the summary is what the checks found.

    The archive member checks of datasets apply (paths, links, counts, bombs); then the directory checks
    of :func:`lbc_formats.hf_directory.check_model_files` (config, file list, weights, tokenizer), which the
    worker and the engine run again on the extracted files.
    """
    limits = limits or UploadLimits()
    if sniff(path) not in ("zip", *_TAR_SUFFIX):
        raise UploadInvalid(
            "a model is uploaded as a .zip or .tar(.gz) archive of its directory (config.json, "
            "*.safetensors, tokenizer files); `lbc upload model DIR` makes one on the fly"
        )
    model_limits = ModelDirLimits(max_total_bytes=max_model_bytes, header=_header_limits(limits))
    try:
        info = check_model_files(
            (_ArchiveFile(m) for m in iter_archive(path, limits)), model_limits, tensor_data=_finite_tensor
        )
    except FormatError as exc:
        raise UploadInvalid(str(exc)) from exc
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise UploadInvalid(f"corrupt archive ({exc})") from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError) as exc:
        raise UploadInvalid(f"cannot read the archive ({exc})") from exc
    return Accepted("huggingface", archive_suffix(path), info.summary())


# -- checkpoints ------------------------------------------------------------------------------------


def validate_checkpoint(path: Path, fmt: str | None = None, limits: UploadLimits | None = None) -> Accepted:
    """Check a safetensors file or a torch zip checkpoint (``fmt`` None: decided by the content)."""
    limits = limits or UploadLimits()
    if fmt is not None and fmt not in CHECKPOINT_FORMATS:
        raise UploadInvalid(
            f"unknown checkpoint format {fmt!r}; choose one of {', '.join(CHECKPOINT_FORMATS)}",
            field="format",
        )
    kind = sniff(path)
    if fmt is None:
        fmt = "torch" if kind == "zip" else "safetensors"
    if fmt == "torch":
        if kind != "zip":
            raise UploadInvalid(
                "not a torch zip checkpoint; save it with torch.save (the zip format of torch >= 1.6) "
                "or upload safetensors"
            )
        return _validate_torch(path, limits)
    return _validate_safetensors(path, limits)


def _validate_safetensors(path: Path, limits: UploadLimits) -> Accepted:
    try:
        with path.open("rb") as f:
            header = read_header(f, path.stat().st_size, _header_limits(limits), what="safetensors file")
    except FormatError as exc:
        raise UploadInvalid(str(exc)) from exc
    try:  # a second opinion from the reference parser (numpy framework: no torch involved)
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as st:
            list(st.keys())
    except Exception as exc:  # the library raises its own SafetensorError or OSError
        raise UploadInvalid(f"safetensors file rejected by the reference parser ({exc})") from exc
    with path.open("rb") as f:
        for name, entry in header.tensors.items():
            f.seek(header.data_offset + entry.start)
            _check_finite(_read_span(f, entry.end - entry.start), entry.dtype, "<", f"tensor {name!r}")
    summary = {
        "tensor_count": len(header.tensors),
        "parameter_count": header.parameter_count,
        "dtypes": header.dtype_counts(),
        "tensors": {
            name: {"dtype": e.dtype, "shape": list(e.shape)}
            for name, e in list(header.tensors.items())[:2000]
        },
    }
    if header.metadata:
        summary["metadata"] = dict(list(header.metadata.items())[:50])
    return Accepted("safetensors", ".safetensors", summary)


def _header_limits(limits: UploadLimits) -> HeaderLimits:
    return HeaderLimits(
        max_header_bytes=limits.max_safetensors_header,
        max_depth=limits.max_header_depth,
        max_tensors=limits.max_tensors,
    )


def checkpoint_fit_problem(summary: dict[str, Any], architecture: str, args: dict[str, Any]) -> str | None:
    """Why a checkpoint upload cannot start ``architecture``, from the tensor names recorded at upload.

    Only a checkpoint holding none of the model's weights is refused here; a partial or mis-shaped one
    is named tensor by tensor by the worker, which builds the model. ``None`` also when the names are
    unknown (torch uploads, summaries that list only part of the tensors) or the layers depend on
    structural arguments (the catalog cannot name them without building the model).
    """
    tensors = summary.get("tensors")
    layers = weight_layer_names(architecture, args)
    if not isinstance(tensors, dict) or layers is None or len(tensors) != summary.get("tensor_count"):
        return None
    expected = [f"{layer}.weight" for layer in layers]
    if not expected or any(name in tensors for name in expected):
        return None
    found = ", ".join(list(tensors)[:3]) + (" ..." if len(tensors) > 3 else "")
    return (
        f"holds none of {architecture}'s weights (expected names like {expected[0]}, found {found}); "
        "save the checkpoint from the same architecture's state_dict"
    )


def _validate_torch(path: Path, limits: UploadLimits) -> Accepted:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise UploadInvalid(f"checkpoint zip has {len(infos)} members, over the limit")
            names = {}
            for info in infos:
                zip_member_parts(info)
                names[info.filename] = info
            pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise UploadInvalid(
                    "not a torch checkpoint: expected exactly one '<name>/data.pkl' in the zip"
                )
            prefix = pickles[0][: -len("data.pkl")]
            info = names[pickles[0]]
            if info.file_size > limits.max_pickle_bytes:
                raise UploadInvalid(
                    f"{pickles[0]} is {info.file_size} bytes, over the {limits.max_pickle_bytes} limit"
                )
            data = zf.read(info)
            storages = scan_torch_pickle(data, limits)
            order_info = names.get(f"{prefix}byteorder")
            big_endian = order_info is not None and zf.read(order_info).strip() == b"big"
            elements = 0
            for key, (storage_type, numel) in storages.items():
                member = names.get(f"{prefix}data/{key}")
                if member is None:
                    raise UploadInvalid(
                        f"checkpoint references storage {key!r} but has no {prefix}data/{key}"
                    )
                kind = storage_type.rsplit(".", 1)[-1]
                itemsize = _TORCH_STORAGE_ITEMSIZE.get(kind, 1)
                if numel is not None:
                    if member.file_size < numel * itemsize:
                        raise UploadInvalid(f"{prefix}data/{key} is shorter than its {numel} elements")
                    elements += numel
                dtype = _TORCH_FLOAT_STORAGES.get(kind)
                if dtype is not None:
                    with zf.open(member) as stream:
                        usable = member.file_size - member.file_size % itemsize
                        _check_finite(
                            _read_span(stream, usable),
                            dtype,
                            ">" if big_endian else "<",
                            f"tensor storage {prefix}data/{key}",
                        )
    except zipfile.BadZipFile as exc:
        raise UploadInvalid(f"corrupt checkpoint zip ({exc})") from exc
    except (OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise UploadInvalid(f"cannot read the checkpoint zip ({exc})") from exc
    if not storages:
        raise UploadInvalid("torch checkpoint holds no tensors; a checkpoint needs the model's weights")
    summary = {"tensor_count": len(storages), "parameter_count": elements}
    return Accepted("torch", ".pt", summary)


# Float formats and how to find NaN/infinity in them: a numpy dtype, or (unsigned view, mask, value) for
# the formats numpy lacks, where an element is NaN or infinite when ``bits & mask == value`` (the
# exponent is all ones). F4/F6 have no NaN or infinity; integer tensors cannot hold them.
_FLOAT_CHECKS: dict[str, str | tuple[str, int, int]] = {
    "F16": "f2",
    "F32": "f4",
    "F64": "f8",
    "C64": "c8",
    "BF16": ("u2", 0x7F80, 0x7F80),
    "F8_E5M2": ("u1", 0x7C, 0x7C),
    "F8_E4M3": ("u1", 0x7F, 0x7F),
    "F8_E8M0": ("u1", 0xFF, 0xFF),
    "C128": "c16",  # torch's complex double (no safetensors name)
}
_TORCH_FLOAT_STORAGES = {
    "FloatStorage": "F32",
    "DoubleStorage": "F64",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "ComplexFloatStorage": "C64",
    "ComplexDoubleStorage": "C128",
}
_SCAN_CHUNK = 64 << 20  # a multiple of every element size


def _read_span(stream: IO[bytes], length: int) -> Iterator[bytes]:
    """``length`` bytes of ``stream`` in chunks of whole elements (a short read is topped up)."""
    left = length
    while left > 0:
        chunk = stream.read(min(_SCAN_CHUNK, left))
        while chunk and len(chunk) < min(_SCAN_CHUNK, left):
            more = stream.read(min(_SCAN_CHUNK, left) - len(chunk))
            if not more:
                break
            chunk += more
        if len(chunk) < min(_SCAN_CHUNK, left):
            raise UploadInvalid(f"checkpoint data ends {left - len(chunk)} bytes early")
        left -= len(chunk)
        yield chunk


def _check_finite(chunks: Iterator[bytes], dtype: str, byteorder: Literal["<", ">"], what: str) -> None:
    """Raise when the raw little- or big-endian elements of ``dtype`` hold NaN or infinity.

    A dense starting checkpoint with NaN weights would only fail (or silently diverge) in a worker; the
    raw data is scanned here with numpy, without torch, a chunk at a time.
    """
    check = _FLOAT_CHECKS.get(dtype)
    if check is None:
        for _ in chunks:  # integer data: nothing to check, but the span must be complete
            pass
        return
    bad = 0
    for chunk in chunks:
        if isinstance(check, str):
            values = np.frombuffer(chunk, dtype=np.dtype(check).newbyteorder(byteorder))
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        else:
            view, mask, value = check
            bits = np.frombuffer(chunk, dtype=np.dtype(view).newbyteorder(byteorder))
            bad += int(np.count_nonzero((bits & mask) == value))
    if bad:
        raise UploadInvalid(
            f"{what} holds {bad} NaN or infinite value(s); dense starting weights must be finite"
        )


def scan_torch_pickle(data: bytes, limits: UploadLimits | None = None) -> dict[str, tuple[str, int | None]]:
    """Check a torch ``data.pkl`` without unpickling it; returns its storages ``key -> (type, numel)``."""
    return scan_pickle(
        data,
        ALLOWED_TORCH_GLOBALS,
        "checkpoint pickle",
        "only tensors and containers of tensors are accepted",
        limits,
    )


def scan_pickle(
    data: bytes | _Reader,
    allowed: frozenset[str],
    label: str,
    accepted: str,
    limits: UploadLimits | None = None,
) -> dict[str, tuple[str, int | None]]:
    """Check a pickle without unpickling it; returns the torch storages it names ``key -> (type, numel)``.

    Walks the opcodes with :func:`pickletools.genops` and resolves every global the pickle would import
    (``GLOBAL`` and ``STACK_GLOBAL``, through the memo); anything outside ``allowed`` is refused with
    an :class:`UploadInvalid` naming it. Nothing is executed. ``data`` may be a stream (read once).
    The opcode count and the MARK nesting are capped (``limits``): the scanner keeps a stack slot per
    pushed value, so a file of a million MARKs or NONEs would otherwise cost memory per byte.
    """
    limits = limits or UploadLimits()

    def check_global(module: str, attr: str) -> str:
        qualified = f"{module}.{attr}"
        if qualified not in allowed:
            raise UploadInvalid(
                f"{label} references the forbidden global {qualified!r}; {accepted} (it was not unpickled)"
            )
        return qualified

    frames: list[list[Any]] = [[]]
    memo: dict[int, Any] = {}
    storages: dict[str, tuple[str, int | None]] = {}

    def push(value: Any) -> None:
        frames[-1].append(value)

    def top() -> Any:
        return frames[-1][-1] if frames[-1] else None

    ops = pickletools.genops(data)  # type: ignore[arg-type]
    count = 0
    while True:
        try:
            opcode, arg, _pos = next(ops)
        except StopIteration:
            break
        except UploadInvalid:  # the member budget ran out while reading
            raise
        except Exception as exc:  # genops raises ValueError and friends on malformed input
            raise UploadInvalid(f"{label} is malformed ({exc})") from exc
        count += 1
        if count > limits.max_pickle_ops:
            raise UploadInvalid(f"{label} has more than {limits.max_pickle_ops} opcodes, over the limit")
        name = opcode.name
        if name in _FORBIDDEN_OPCODES:
            raise UploadInvalid(f"{label} uses the {name} opcode, which plain data never needs")
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            push(_Global(check_global(module, attr)))
        elif name == "STACK_GLOBAL":
            frame = frames[-1]
            if len(frame) < 2 or not all(isinstance(v, str) for v in frame[-2:]):
                raise UploadInvalid(f"{label} imports a global whose name cannot be resolved statically")
            attr, module = frame.pop(), frame.pop()
            push(_Global(check_global(module, attr)))
        elif name in _STRING_OPCODES:
            push(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in _INT_OPCODES:
            push(arg)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(str(arg))] = top()
        elif name == "MEMOIZE":
            memo[len(memo)] = top()
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            push(memo.get(int(str(arg))))
        elif name == "MARK":
            if len(frames) > limits.max_pickle_depth:
                raise UploadInvalid(
                    f"{label} nests more than {limits.max_pickle_depth} levels deep, over the limit"
                )
            frames.append([])
        elif name == "TUPLE":
            items = frames.pop() if len(frames) > 1 else []
            push(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            frame = frames[-1]
            items = frame[-count:] if len(frame) >= count else []
            del frame[-count:]
            push(tuple(items))
        elif name == "BINPERSID":
            pid = frames[-1].pop() if frames[-1] else None
            if (
                isinstance(pid, tuple)
                and len(pid) == 5
                and pid[0] == "storage"
                and isinstance(pid[1], _Global)
                and isinstance(pid[2], str)
            ):
                numel = pid[4] if isinstance(pid[4], int) else None
                storages[pid[2]] = (pid[1].name, numel)
            else:
                raise UploadInvalid(f"{label} has a persistent id that is not a torch storage")
            push(_OPAQUE)
        elif name == "PERSID":
            raise UploadInvalid(f"{label} uses text persistent ids, which torch never writes")
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS", "LIST", "DICT", "FROZENSET"):
            items = frames.pop() if len(frames) > 1 else []
            del items
            if name in ("LIST", "DICT", "FROZENSET"):
                push(_OPAQUE)
        elif name == "POP_MARK":
            if len(frames) > 1:
                frames.pop()
        else:
            # Any other opcode (REDUCE, BUILD, SETITEM, EMPTY_*, floats, bools, ...): stack effects that
            # the storage bookkeeping does not need. Replace what it consumed by an opaque value.
            consumed = _STACK_POPS.get(name, 0)
            frame = frames[-1]
            if consumed:
                del frame[-consumed:]
            if name not in _NO_PUSH:
                push(_OPAQUE)
    return storages


# How many stack items an opcode consumes; it then pushes one result unless listed in _NO_PUSH.
_STACK_POPS = {"REDUCE": 2, "BUILD": 2, "SETITEM": 2, "APPEND": 1, "NEWOBJ": 2, "NEWOBJ_EX": 3, "POP": 1}
_NO_PUSH = frozenset({"PROTO", "FRAME", "STOP", "POP", "SETITEM", "APPEND"})


@dataclass(frozen=True)
class _Global:
    name: str


class _Opaque:
    pass


_OPAQUE = _Opaque()  # one shared placeholder: a stack slot costs a pointer, not an object


def safe_filename(filename: str | None, suffix: str, default_stem: str = "upload") -> str:
    """A store-safe file name: the client's stem reduced to ``[A-Za-z0-9._-]``, plus the canonical suffix."""
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    lowered = base.lower()
    for known in (
        ".tar.gz",
        ".tar.bz2",
        ".tar.xz",
        ".tgz",
        ".tar",
        ".zip",
        ".npz",
        ".jsonl",
        ".csv",
        ".txt",
        ".json",
        ".safetensors",
        ".pt",
        ".pth",
        ".bin",
    ):
        if lowered.endswith(known):
            base = base[: -len(known)]
            break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")[:100] or default_stem
    return f"{stem}{suffix}"
