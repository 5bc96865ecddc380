"""A safetensors file's header read and checked with the standard library (no torch, no safetensors).

Layout: an 8-byte little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}`` with an
optional ``__metadata__`` string map, then the data. The checks make a header that lies impossible to load:
every tensor's byte range must be exactly its element count times its dtype size, the ranges must tile the
data section (no gap, no overlap, nothing outside the file), and the file must be exactly
``8 + header + data`` bytes long. Declared shapes are bounded, so a header cannot ask for an allocation far
larger than the file it came in.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from lbc_formats.errors import FormatError
from lbc_formats.json_data import load_json_data

# Element sizes in bytes; the sub-byte float formats are packed and round up per tensor.
SAFETENSORS_DTYPES: Mapping[str, float] = MappingProxyType(
    {
        "BOOL": 1,
        "U8": 1,
        "I8": 1,
        "F8_E5M2": 1,
        "F8_E4M3": 1,
        "F8_E8M0": 1,
        "I16": 2,
        "U16": 2,
        "F16": 2,
        "BF16": 2,
        "I32": 4,
        "U32": 4,
        "F32": 4,
        "I64": 8,
        "U64": 8,
        "F64": 8,
        "C64": 8,
        "F4": 0.5,
        "F6_E2M3": 0.75,
        "F6_E3M2": 0.75,
    }
)


@dataclass(frozen=True)
class HeaderLimits:
    """Bounds on what one header may declare."""

    # A header names each tensor in about 100 bytes: 16 MiB is 100x a large model's, and keeps the decoded
    # header (objects are ~10x their text) small.
    max_header_bytes: int = 16 << 20
    max_depth: int = 8  # {name: {shape: [..]}} is three deep
    max_tensors: int = 16_384
    max_rank: int = 8
    # One tensor's elements: 2^40 is 4 TiB of float32, far past any file the service accepts, and keeps
    # the arithmetic on declared shapes away from absurd numbers.
    max_elements: int = 1 << 40


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the header: dtype, shape and its byte range within the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: its tensors in file order, metadata, and where the data section starts."""

    header_length: int
    tensors: Mapping[str, TensorEntry] = field(hash=False)
    metadata: Mapping[str, str] = field(hash=False)

    @property
    def data_offset(self) -> int:
        return 8 + self.header_length

    @property
    def parameter_count(self) -> int:
        return sum(entry.numel for entry in self.tensors.values())

    def dtype_counts(self) -> dict[str, int]:
        """How many tensors have each dtype."""
        counts: dict[str, int] = {}
        for entry in self.tensors.values():
            counts[entry.dtype] = counts.get(entry.dtype, 0) + 1
        return counts


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_header(
    stream: Readable, file_size: int, limits: HeaderLimits | None = None, *, what: str = "safetensors file"
) -> SafetensorsHeader:
    """Read and check the header at the start of ``stream`` for a file of ``file_size`` bytes.

    Raises :class:`FormatError` naming ``what`` and the problem. Only the header is read.
    """
    limits = limits or HeaderLimits()
    prefix = stream.read(8)
    if len(prefix) < 8:
        raise FormatError(f"{what}: not a safetensors file (shorter than its 8-byte header length)")
    (header_length,) = struct.unpack("<Q", prefix)
    if header_length < 2 or 8 + header_length > file_size:
        raise FormatError(
            f"{what}: not a safetensors file (header length {header_length} does not fit a {file_size}-byte file)"
        )
    if header_length > limits.max_header_bytes:
        raise FormatError(
            f"{what}: safetensors header length {header_length} is over the limit of {limits.max_header_bytes} bytes"
        )
    raw = stream.read(header_length)
    if len(raw) != header_length:
        raise FormatError(f"{what}: the file ends inside its {header_length}-byte header")
    header = load_json_data(
        raw, what=f"{what}: safetensors header", max_bytes=limits.max_header_bytes, max_depth=limits.max_depth
    )
    return check_header(header, header_length, file_size, limits, what=what)


def check_header(
    header: object, header_length: int, file_size: int, limits: HeaderLimits, *, what: str
) -> SafetensorsHeader:
    """Check a decoded header against the file it came from (see the module docstring)."""
    if not isinstance(header, dict):
        raise FormatError(f"{what}: safetensors header must be a JSON object")
    metadata = header.get("__metadata__", {})
    if not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise FormatError(f"{what}: safetensors __metadata__ must map strings to strings")
    names = [name for name in header if name != "__metadata__"]
    if len(names) > limits.max_tensors:
        raise FormatError(
            f"{what}: safetensors header lists {len(names)} tensors, over the limit of {limits.max_tensors}"
        )
    if not names:
        raise FormatError(
            f"{what}: safetensors file holds no tensors; a checkpoint needs the model's weights"
        )
    data_size = file_size - 8 - header_length
    tensors = {name: _entry(name, header[name], data_size, limits, what) for name in names}
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if entry.start != position:
            raise FormatError(
                f"{what}: tensor {name!r}: data overlaps another tensor or leaves a gap at byte {position}"
            )
        position = entry.end
    if position != data_size:
        raise FormatError(
            f"{what}: safetensors data section is {data_size} bytes but the tensors cover {position}"
        )
    return SafetensorsHeader(header_length, MappingProxyType(tensors), MappingProxyType(dict(metadata)))


def _entry(name: str, entry: object, data_size: int, limits: HeaderLimits, what: str) -> TensorEntry:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{what}: tensor {name!r}: entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise FormatError(f"{what}: tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise FormatError(f"{what}: tensor {name!r}: shape must be a list of non-negative integers")
    if len(shape) > limits.max_rank:
        raise FormatError(
            f"{what}: tensor {name!r}: shape {shape} has more than {limits.max_rank} dimensions"
        )
    numel = math.prod(shape)
    if numel > limits.max_elements:
        raise FormatError(
            f"{what}: tensor {name!r}: shape {shape} declares {numel} elements, over the limit of "
            f"{limits.max_elements}"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise FormatError(
            f"{what}: tensor {name!r}: data_offsets {offsets!r} fall outside the {data_size}-byte data"
        )
    expected = math.ceil(numel * SAFETENSORS_DTYPES[dtype])
    if offsets[1] - offsets[0] != expected:
        raise FormatError(
            f"{what}: tensor {name!r}: {dtype} {shape} needs {expected} bytes but data_offsets span "
            f"{offsets[1] - offsets[0]}"
        )
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])
