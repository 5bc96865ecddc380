"""Hostile uploads, built in memory: one table shared by the API tests and the worker's extraction tests.

Every entry says how the API must answer (status and a fragment of the message) and, for problems of the
archive itself, what ``lbc_core.data.extract_archive`` must say about the same bytes. Builders take an
``escape`` directory: the place a hostile member tries to write to (absolute paths, link targets) and
where a pickle's ``os.system`` would touch its marker, so a test can check that it stays empty.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import stat
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.hf_models import TINY_LLAMA, hand_made_model, tar_of, zip_of
from tests.hf_models import safetensors_of as hf_safetensors

# The limits the API is run with in these tests, and the same caps for the worker's extraction.
MAX_UPLOAD_BYTES = 1 << 20
MAX_MEMBERS = 50
MAX_EXPANDED_BYTES = 4 << 20
MARKER = "pwned"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x04\x00\x00\x00\x04\x08\x00\x00\x00\x00" + bytes(64)


# -- plain builders -----------------------------------------------------------------------------------------


def idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def mnist_members(images: int = 12, labels: bytes | None = None) -> dict[str, bytes]:
    labels = labels if labels is not None else bytes(i % 10 for i in range(images))
    return {
        "digits/train-images-idx3-ubyte": idx(2051, (images, 8, 8), bytes(images * 64)),
        "digits/train-labels-idx1-ubyte": idx(2049, (len(labels),), labels),
    }


def zip_bytes(
    members: dict[str, bytes], *, modes: dict[str, int] | None = None, deflate: bool = False
) -> bytes:
    """A zip of ``members``; ``modes`` gives some of them a Unix file type (symlink, FIFO) in external_attr."""
    buffer = io.BytesIO()
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def zip_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip of ``(name, data)`` in order, repeated names included (zipfile warns but writes them)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": the point of these archives
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]], *, gz: bool = True) -> bytes:
    """A tar(.gz); entries are regular files ``(name, data)`` or ready-made TarInfo headers (no data)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def tar_declaring(name: str, size: int) -> bytes:
    """A tar.gz whose only header declares ``size`` bytes that never follow (a sparse-looking bomb)."""
    info = tarfile.TarInfo(name)
    info.size = size
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT))


def zip_declaring(sizes: list[int]) -> bytes:
    """A zip whose central directory claims the given uncompressed sizes for tiny members."""
    data = bytearray(zip_bytes({f"m{i}.bin": b"x" for i in range(len(sizes))}))
    start = 0
    for size in sizes:
        start = data.index(b"PK\x01\x02", start)
        data[start + 24 : start + 28] = struct.pack("<I", size)
        start += 4
    return bytes(data)


def zip_understating(name: str, content: bytes, claimed: int) -> bytes:
    """A deflated member whose headers claim only ``claimed`` of its bytes (the rest inflates unasked)."""
    data = bytearray(zip_bytes({name: content}, deflate=True))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature)
        data[at + offset : at + offset + 4] = struct.pack("<I", claimed)
    return bytes(data)


def npz_bytes(n: int = 20, **arrays: Any) -> bytes:
    values: dict[str, Any] = {"x": np.zeros((n, 8, 8), np.uint8), "y": np.arange(n) % 4}
    values.update(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    return buffer.getvalue()


class RunsCommand:
    """Unpickling this runs ``touch <path>``: what a hostile pickle would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def evil_pickle(escape: Path, protocol: int = 2) -> bytes:
    return pickle.dumps({b"data": RunsCommand(escape / MARKER), b"labels": [0]}, protocol=protocol)


def cifar_tar(batch: bytes) -> bytes:
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    return tar_bytes([(f"cifar-10-batches-py/{name}", batch) for name in names])


def cifar_batch(images: int = 2) -> bytes:
    return pickle.dumps(
        {b"data": np.zeros((images, 3072), np.uint8), b"labels": list(range(images))}, protocol=2
    )


def safetensors_bytes(header: dict[str, Any], data: bytes) -> bytes:
    raw = json_bytes(header)
    return struct.pack("<Q", len(raw)) + raw + data


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def safetensors_of(values: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    """Hand-made safetensors: name -> (dtype, shape, raw little-endian bytes)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape, raw) in values.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    return safetensors_bytes(header, b"".join(raw for _, _, raw in values.values()))


def safetensors_nested(depth: int) -> bytes:
    """A safetensors header whose only value nests ``depth`` arrays (a RecursionError for json.loads)."""
    raw = b'{"w":' + b"[" * depth + b"]" * depth + b"}"
    return struct.pack("<Q", len(raw)) + raw


def safetensors_many(count: int) -> bytes:
    """``count`` empty tensors, written compactly so that many fit under the upload limit."""
    entries = b",".join(b'"t%d":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}' % i for i in range(count))
    raw = b"{" + entries + b"}"
    return struct.pack("<Q", len(raw)) + raw


def cifar_member(name: str, batch: bytes) -> bytes:
    return tar_bytes([(f"cifar-10-batches-py/{name}", batch)])


def npz_with_member(name: str, data: bytes) -> bytes:
    """A valid .npz plus one more member, e.g. one whose name climbs out of the extraction directory."""
    with zipfile.ZipFile(io.BytesIO(npz_bytes())) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    return zip_bytes({**members, name: data})


def torch_zip(state: dict[str, Any], tmp: Path) -> bytes:
    import torch

    path = tmp / "state.pt"
    torch.save(state, path)
    return path.read_bytes()


def torch_nan(tmp: Path) -> bytes:
    import torch

    return torch_zip({"w": torch.tensor([1.0, float("nan"), 2.0]), "b": torch.zeros(2)}, tmp)


def evil_torch_zip(escape: Path) -> bytes:
    payload = pickle.dumps({"weight": RunsCommand(escape / MARKER)}, protocol=2)
    return zip_bytes({"ckpt/data.pkl": payload, "ckpt/version": b"3\n", "ckpt/byteorder": b"little"})


def valid_for(kind: str) -> tuple[str, bytes, dict[str, str]]:
    """A small valid upload of ``kind`` (filename, bytes, form fields): the app must still take it."""
    if kind == "datasets":
        return "ok.npz", npz_bytes(), {"format": "npz"}
    if kind == "hf-models":
        return "ok.zip", zip_of(hand_made_model()), {}
    return "ok.safetensors", safetensors_of({"w": ("F32", [2], np.ones(2, "<f4").tobytes())}), {}


# -- the table ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    kind: str  # datasets | checkpoints
    fmt: str | None  # the form's format field (None: not sent)
    filename: str
    build: Callable[[Path, Path], bytes]  # (escape directory, scratch directory) -> file bytes
    status: int
    message: str  # a fragment of the API's message
    extract: str | None = None  # what extract_archive says; None: not a problem of the archive itself


def _const(data: bytes) -> Callable[[Path, Path], bytes]:
    return lambda escape, scratch: data


def _model_zip(**files: bytes) -> Callable[[Path, Path], bytes]:
    """A Hugging Face model directory zipped under a wrapper folder, with ``files`` added or replaced."""
    return _const(zip_of(hand_made_model(**files), prefix="my-model/"))


def _config(**keys: Any) -> bytes:
    import json

    return json.dumps({**TINY_LLAMA, **keys}).encode()


def _fifo_zip(escape: Path, scratch: Path) -> bytes:
    members = {**mnist_members(), "digits/pipe": b""}
    return zip_bytes(members, modes={"digits/pipe": stat.S_IFIFO | 0o644})


HOSTILE: list[Hostile] = [
    # paths and links
    Hostile("zip-dotdot", "datasets", "mnist", "d.zip", _const(zip_bytes({**mnist_members(), "../../evil": b"x"})), 422, "'..' path component", "'..' path component"),
    Hostile("tar-dotdot", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes([("digits/../../" + MARKER, b"x")]), 422, "'..' path component", "'..' path component"),
    Hostile("zip-absolute", "datasets", "mnist", "d.zip", _const(zip_bytes({"/etc/x": b"x"})), 422, "absolute path", "absolute path"),
    Hostile("tar-absolute", "datasets", "imagefolder", "d.tar", lambda e, s: tar_bytes([(str(e / MARKER), b"x")], gz=False), 422, "absolute path", "absolute path"),
    Hostile("zip-symlink", "datasets", "imagefolder", "d.zip", lambda e, s: zip_bytes({"a/1.png": PNG, "b/2.png": str(e).encode()}, modes={"b/2.png": stat.S_IFLNK | 0o777}), 422, "symbolic link", "symbolic link"),
    Hostile("zip-fifo", "datasets", "mnist", "d.zip", _fifo_zip, 422, "special file", "special file"),
    Hostile("tar-symlink", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes([tar_entry("digits", tarfile.SYMTYPE, str(e))]), 422, "is a link", "symbolic link"),
    Hostile("tar-hardlink", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes([tar_entry("digits/x", tarfile.LNKTYPE, str(e / MARKER))]), 422, "is a link", "hard link"),
    Hostile("tar-device", "datasets", "imagefolder", "d.tar.gz", lambda e, s: tar_bytes([tar_entry("a/null", tarfile.CHRTYPE)]), 422, "device, FIFO", "device, FIFO"),
    Hostile("tar-fifo", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes([tar_entry("digits/pipe", tarfile.FIFOTYPE)]), 422, "device, FIFO", "device, FIFO"),
    # bombs, counts, nesting, truncation
    Hostile("zip-ratio-bomb", "datasets", "mnist", "d.zip", lambda e, s: zip_bytes({"digits/zeros": bytes(8 * MAX_EXPANDED_BYTES)}, deflate=True), 422, "possible decompression bomb", "possible decompression bomb"),
    Hostile("zip-declared-bomb", "datasets", "imagefolder", "d.zip", lambda e, s: zip_declaring([0xF000_0000, 0xF000_0000]), 422, "uncompressed bytes, over the", "possible decompression bomb"),
    Hostile("zip-understated-bomb", "datasets", "mnist", "d.zip", lambda e, s: zip_understating("digits/train-labels-idx1-ubyte", idx(2049, (8 * MAX_EXPANDED_BYTES,), bytes(8 * MAX_EXPANDED_BYTES)), 100), 422, "Bad CRC", "corrupt zip"),
    Hostile("tar-gzip-bomb", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes([("digits/zeros", bytes(8 * MAX_EXPANDED_BYTES))]), 422, "possible decompression bomb", "possible decompression bomb"),
    Hostile("tar-declared-huge", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_declaring("digits/huge", 5 << 40), 422, "possible decompression bomb", "possible decompression bomb"),
    Hostile("zip-too-many", "datasets", "imagefolder", "d.zip", lambda e, s: zip_bytes({f"c{i % 2}/{i}.txt": b"" for i in range(MAX_MEMBERS + 10)}), 422, f"over the limit of {MAX_MEMBERS}", "over the limit"),
    Hostile("tar-too-many", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes([(f"d/{i}", b"") for i in range(MAX_MEMBERS + 10)]), 422, f"more than {MAX_MEMBERS} members", f"more than {MAX_MEMBERS} members"),
    Hostile("zip-nested", "datasets", "mnist", "d.zip", lambda e, s: zip_bytes({"digits/inner.zip": zip_bytes(mnist_members())}), 422, "is itself an archive"),
    Hostile("tar-nested", "datasets", "imagefolder", "d.tar.gz", lambda e, s: tar_bytes([("a/1.png", PNG), ("b/more.tar.gz", tar_bytes([("c/1.png", PNG)]))]), 422, "is itself an archive"),
    Hostile("zip-truncated", "datasets", "mnist", "d.zip", lambda e, s: zip_bytes(mnist_members())[:300], 422, "corrupt zip archive", "corrupt zip archive"),
    Hostile("tar-truncated", "datasets", "mnist", "d.tar.gz", lambda e, s: tar_bytes(list(mnist_members(200).items()))[:-40], 422, "archive", "tar archive"),
    # two members for one path: the validator reads one, the worker's extraction refuses the second
    Hostile("zip-duplicate", "datasets", "mnist", "d.zip", lambda e, s: zip_entries([*mnist_members().items(), ("digits/train-labels-idx1-ubyte", idx(2049, (12,), bytes(12)))]), 422, "archive member 'digits/train-labels-idx1-ubyte' appears twice", "clashes with another member"),
    Hostile("tar-duplicate", "datasets", "imagefolder", "d.tar.gz", lambda e, s: tar_bytes([("a/1.png", PNG), ("b/1.png", PNG), ("a/1.png", PNG)]), 422, "archive member 'a/1.png' appears twice", "clashes with another member"),
    Hostile("zip-file-and-folder", "datasets", "mnist", "d.zip", lambda e, s: zip_entries([*mnist_members().items(), ("digits/x", b"1"), ("digits/x/y", b"2")]), 422, "archive member 'digits/x/y' is inside 'digits/x', which is a file", "clashes with another member"),
    Hostile("tar-folder-then-file", "datasets", "imagefolder", "d.tar", lambda e, s: tar_bytes([("a/1.png", PNG), ("b/c/1.png", PNG), ("b/c", PNG)], gz=False), 422, "archive member 'b/c' is a file, but other members sit inside it", "clashes with another member"),
    # wrong type and size
    Hostile("png-as-npz", "datasets", "npz", "d.npz", _const(PNG), 422, "not an .npz file"),
    Hostile("png-as-mnist", "datasets", "mnist", "d.zip", _const(PNG), 422, "expected a .zip or .tar"),
    Hostile("zip-as-cifar", "datasets", "cifar10", "c.tar.gz", _const(zip_bytes({"batches.meta": b"x"})), 422, "CIFAR python .tar.gz"),
    Hostile("oversized-dataset", "datasets", "npz", "big.npz", lambda e, s: npz_bytes(x=np.ones((20, 256, 256), np.uint8)), 413, f"limit of {MAX_UPLOAD_BYTES} bytes"),
    # pickles
    Hostile("npz-object-pickle", "datasets", "npz", "d.npz", lambda e, s: npz_bytes(x=np.array([RunsCommand(e / MARKER)] * 20, dtype=object)), 422, "Python objects"),
    Hostile("cifar-pickle-runs-code", "datasets", "cifar10", "c.tar.gz", lambda e, s: cifar_tar(evil_pickle(e)), 422, "forbidden global 'posix.system'"),
    Hostile("cifar-pickle-protocol-4", "datasets", "cifar10", "c.tar.gz", lambda e, s: cifar_tar(evil_pickle(e, 4)), 422, "forbidden global 'posix.system'"),
    Hostile("cifar-pickle-deep-marks", "datasets", "cifar10", "c.tar.gz", _const(cifar_member("batches.meta", b"\x80\x02" + b"(" * 100_000)), 422, "nests more than 256 levels deep"),
    Hostile("cifar-pickle-too-many-opcodes", "datasets", "cifar10", "c.tar.gz", _const(cifar_member("batches.meta", b"\x80\x02" + b"N0" * 1_000_001 + b".")), 422, "more than 2000000 opcodes"),
    # inputs the worker cannot learn from
    Hostile("npz-nan-inputs", "datasets", "npz", "d.npz", _const(npz_bytes(x=np.full((20, 8, 8), np.nan, np.float32))), 422, "array 'x' holds 1280 NaN or infinite value(s)"),
    Hostile("npz-inf-input", "datasets", "npz", "d.npz", _const(npz_bytes(x=np.array([[1.0, np.inf]] * 20))), 422, "array 'x' holds 20 NaN or infinite value(s)"),
    Hostile("npz-single-class", "datasets", "npz", "d.npz", _const(npz_bytes(y=np.full(20, 3))), 422, "y holds a single class (every label is 3)"),
    Hostile("npz-dotdot-member", "datasets", "npz", "d.npz", _const(npz_with_member("../../evil.npy", b"x")), 422, "'..' path component"),
    Hostile("npz-absolute-member", "datasets", "npz", "d.npz", _const(npz_with_member("/tmp/evil.npy", b"x")), 422, "absolute path"),
    # labels
    Hostile("npz-negative-label", "datasets", "npz", "d.npz", _const(npz_bytes(y=np.full(20, -3))), 422, "label -3 is negative"),
    Hostile("npz-float-labels", "datasets", "npz", "d.npz", _const(npz_bytes(y=np.linspace(0, 1, 20))), 422, "integer labels, got dtype float64"),
    Hostile("npz-label-count", "datasets", "npz", "d.npz", _const(npz_bytes(y=np.arange(19) % 4)), 422, "x holds 20 samples but y holds 19 labels"),
    Hostile("npz-huge-label", "datasets", "npz", "d.npz", _const(npz_bytes(y=np.array([0] * 19 + [10**9]))), 422, "label 1000000000 is out of range"),
    Hostile("mnist-label-10", "datasets", "mnist", "d.zip", _const(zip_bytes(mnist_members(labels=bytes([1] * 11 + [12])))), 422, "label 12 is out of range"),
    Hostile("mnist-int32-labels", "datasets", "mnist", "d.zip", _const(zip_bytes({**mnist_members(), "digits/train-labels-idx1-ubyte": idx(0x0C01, (12,), bytes(48))})), 422, "not a label file of unsigned bytes"),
    Hostile("mnist-single-class", "datasets", "mnist", "d.zip", _const(zip_bytes(mnist_members(labels=bytes([7] * 12)))), 422, "split 'train' holds a single class (every label is 7)"),
    Hostile("mnist-label-count", "datasets", "mnist", "d.zip", _const(zip_bytes(mnist_members(labels=bytes(11)))), 422, "12 images but 11 labels"),
    # checkpoints
    Hostile("torch-pickle-runs-code", "checkpoints", "torch", "evil.pt", lambda e, s: evil_torch_zip(e), 422, "forbidden global 'posix.system'"),
    Hostile("legacy-pickle", "checkpoints", "torch", "evil.pt", lambda e, s: pickle.dumps(RunsCommand(e / MARKER)), 422, "not a torch zip checkpoint"),
    Hostile("torch-dotdot", "checkpoints", None, "x.pt", _const(zip_bytes({"../ckpt/data.pkl": b"."})), 422, "'..' path component"),
    Hostile("torch-symlink", "checkpoints", None, "x.pt", lambda e, s: zip_bytes({"ckpt/data.pkl": str(e).encode()}, modes={"ckpt/data.pkl": stat.S_IFLNK | 0o777}), 422, "symbolic link"),
    Hostile("torch-truncated", "checkpoints", "torch", "x.pt", lambda e, s: torch_nan(s)[:-200], 422, "corrupt checkpoint zip"),
    Hostile("torch-nan", "checkpoints", "torch", "x.pt", lambda e, s: torch_nan(s), 422, "NaN or infinite"),
    Hostile("safetensors-nan", "checkpoints", None, "w.safetensors", _const(safetensors_of({"w": ("F32", [3], np.array([1, np.nan, 2], "<f4").tobytes())})), 422, "tensor 'w' holds 1 NaN or infinite value"),
    Hostile("safetensors-inf-f16", "checkpoints", None, "w.safetensors", _const(safetensors_of({"ok": ("I64", [1], bytes(8)), "h": ("F16", [2], np.array([np.inf, 1], "<f2").tobytes())})), 422, "tensor 'h' holds 1 NaN"),
    Hostile("safetensors-nan-bf16", "checkpoints", None, "w.safetensors", _const(safetensors_of({"b": ("BF16", [2], struct.pack("<HH", 0x3F80, 0x7FC0))})), 422, "tensor 'b' holds 1 NaN"),
    Hostile("safetensors-offsets-out-of-range", "checkpoints", None, "w.safetensors", _const(safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}, bytes(16))), 422, "data_offsets [0, 1099511627776] fall outside"),
    Hostile("safetensors-unknown-dtype", "checkpoints", None, "w.safetensors", _const(safetensors_bytes({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16))), 422, "unknown dtype 'F128'"),
    Hostile("safetensors-header-too-long", "checkpoints", None, "w.safetensors", _const(struct.pack("<Q", 1 << 60) + b"{}"), 422, "header length"),
    Hostile("safetensors-header-length-past-end", "checkpoints", None, "w.safetensors", _const(struct.pack("<Q", 17 << 20) + b"{}"), 422, "header length 17825792 does not fit a 10-byte file"),
    Hostile("safetensors-deep-header", "checkpoints", None, "w.safetensors", _const(safetensors_nested(100_000)), 422, "safetensors header nests 100001 levels deep, over the limit of 8"),
    Hostile("safetensors-deep-metadata", "checkpoints", None, "w.safetensors", _const(safetensors_bytes({"__metadata__": {"a": [[[[[[[[[["x"]]]]]]]]]]}}, b"")), 422, "nests 12 levels deep"),
    Hostile("safetensors-many-tensors", "checkpoints", None, "w.safetensors", _const(safetensors_many(16_385)), 422, "lists 16385 tensors, over the limit of 16384"),
    Hostile("safetensors-no-tensors", "checkpoints", None, "w.safetensors", _const(safetensors_bytes({"__metadata__": {"format": "pt"}}, b"")), 422, "holds no tensors"),
    Hostile("torch-no-tensors", "checkpoints", "torch", "x.pt", lambda e, s: torch_zip({"epoch": 3, "note": "weights forgotten"}, s), 422, "holds no tensors"),
    Hostile("safetensors-truncated", "checkpoints", None, "w.safetensors", _const(safetensors_of({"w": ("F32", [4], bytes(16))})[:-4]), 422, "fall outside"),
    Hostile("png-as-checkpoint", "checkpoints", None, "w.safetensors", _const(PNG), 422, "not a safetensors file"),
    Hostile("oversized-checkpoint", "checkpoints", None, "w.safetensors", _const(safetensors_of({"w": ("U8", [MAX_UPLOAD_BYTES + 1], bytes(MAX_UPLOAD_BYTES + 1))})), 413, f"limit of {MAX_UPLOAD_BYTES} bytes"),
    # Hugging Face model directories (zip or tar archives): code, pickles, lying headers, huge declarations
    Hostile("hf-auto-map", "hf-models", None, "m.zip", _model_zip(**{"config.json": _config(auto_map={"AutoModel": "modeling_evil.Evil"})}), 422, "config.json has keys the server refuses: auto_map"),
    Hostile("hf-trust-remote-code", "hf-models", None, "m.zip", _model_zip(**{"config.json": _config(trust_remote_code=True)}), 422, "trust_remote_code (the server never runs code"),
    Hostile("hf-tokenizer-auto-map", "hf-models", None, "m.zip", _model_zip(**{"tokenizer_config.json": b'{"auto_map": {"AutoTokenizer": ["t.T", null]}}'}), 422, "tokenizer_config.json has keys the server refuses: auto_map"),
    Hostile("hf-modeling-code", "hf-models", None, "m.zip", _model_zip(**{"modeling_evil.py": b"import os; os.system('touch pwned')"}), 422, "modeling_evil.py is refused: Python source is code"),
    Hostile("hf-unknown-model-type", "hf-models", None, "m.zip", _model_zip(**{"config.json": b'{"model_type": "evilnet"}'}), 422, "model_type 'evilnet' is not an allowed architecture"),
    Hostile("hf-pytorch-bin", "hf-models", None, "m.zip", lambda e, s: zip_of(hand_made_model(**{"pytorch_model.bin": evil_pickle(e)})), 422, "pytorch_model.bin is refused: PyTorch .bin weights: a .bin is a pickle"),
    Hostile("hf-renamed-pickle", "hf-models", None, "m.zip", lambda e, s: zip_of(hand_made_model(**{"notes/readme.txt": evil_pickle(e, protocol=4)})), 422, "notes/readme.txt is refused: its content is a pickle (protocol 4)"),
    Hostile("hf-pickle-as-safetensors", "hf-models", None, "m.tar.gz", lambda e, s: tar_of(hand_made_model(**{"model.safetensors": evil_pickle(e)})), 422, "model.safetensors is refused: its content is a pickle (protocol 2)"),
    Hostile("hf-torch-zip-renamed", "hf-models", None, "m.zip", lambda e, s: zip_of(hand_made_model(**{"extra.data": evil_torch_zip(e)})), 422, "extra.data is refused: its content is a zip archive"),
    Hostile("hf-pt2-program", "hf-models", None, "m.zip", _model_zip(**{"model.pt2": zip_bytes({"model/archive_format": b"pt2"})}), 422, "a .pt2 exported program can run code when it is loaded"),
    Hostile("hf-shape-mismatch", "hf-models", None, "m.zip", _model_zip(**{"model.safetensors": hf_safetensors({"w": ("F32", [4, 4], bytes(16))})}), 422, "tensor 'w': F32 [4, 4] needs 64 bytes but data_offsets span 16"),
    Hostile("hf-nan-weights", "hf-models", None, "m.tar.gz", lambda e, s: tar_of(hand_made_model(**{"model.safetensors": hf_safetensors({"ok": ("F32", [2], bytes(8)), "w": ("BF16", [3], struct.pack("<HHH", 0x3F80, 0x7F80, 0x7FC0))})})), 422, "model.safetensors: tensor 'w' holds 2 NaN or infinite value(s)"),
    Hostile("hf-huge-header-shape", "hf-models", None, "m.zip", _model_zip(**{"model.safetensors": hf_safetensors({"w": ("F32", [1 << 31, 1 << 31, 1 << 31], bytes(16))})}), 422, "declares 9903520314283042199192993792 elements, over the limit"),
    Hostile("hf-huge-config", "hf-models", None, "m.zip", _model_zip(**{"config.json": _config(hidden_size=1 << 40, num_hidden_layers=10**9)}), 422, "hidden_size must be an integer from 1 to 65536"),
    Hostile("hf-tokenizer-not-json", "hf-models", None, "m.zip", _model_zip(**{"tokenizer.json": b"\x00\x01 this is not json"}), 422, "tokenizer.json is not valid JSON"),
    Hostile("hf-tokenizer-deep", "hf-models", None, "m.zip", _model_zip(**{"tokenizer.json": b"[" * 100_000 + b"]" * 100_000}), 422, "tokenizer.json nests 100000 levels deep"),
    Hostile("hf-zip-dotdot", "hf-models", None, "m.zip", _const(zip_of({**hand_made_model(), "../../config.json": b"{}"})), 422, "'..' path component", "'..' path component"),
    Hostile("hf-tar-absolute", "hf-models", None, "m.tar.gz", lambda e, s: tar_of({**hand_made_model(), str(e / "config.json"): b"{}"}), 422, "absolute path", "absolute path"),
    Hostile("hf-single-file", "hf-models", None, "model.safetensors", _const(hf_safetensors({"w": ("F32", [1], bytes(4))})), 422, "a model is uploaded as a .zip or .tar(.gz) archive"),
    Hostile("hf-no-weights", "hf-models", None, "m.zip", _const(zip_of({"config.json": _config()})), 422, "no weights: expected model.safetensors"),
]  # fmt: skip

ARCHIVE_CASES = [case for case in HOSTILE if case.extract is not None]
