"""Safe extraction of user-supplied .zip and .tar(.gz) archives.

Uploaded archives are untrusted. Nothing here uses ``extractall``; every member is
checked and copied by hand so that:

* no member can land outside the destination (absolute paths, drive letters and
  ``..`` components are rejected, and the final path is re-checked after resolving);
* no link, device, FIFO or other special file is created (only regular files and
  directories are accepted, and no permission bits are copied);
* the number of members and the total uncompressed size are capped. Sizes are counted
  on the bytes actually produced while streaming, because archive headers can lie, and
  the decompressed tar stream as a whole is capped too, so a gzip bomb is cut off even
  inside tar headers.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import DatasetError

_CHUNK = 1 << 20
_ZIP_SUFFIXES = (".zip",)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = _ZIP_SUFFIXES + _TAR_SUFFIXES
# A tar stream spends at most ~1 KiB per member on its header and padding, plus end
# blocks and record padding; this bounds the decompressed stream beyond member data.
_TAR_OVERHEAD_PER_MEMBER = 1536
_TAR_OVERHEAD_FIXED = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps applied while extracting one archive.

    The defaults fit datasets that are meant to be held in memory anyway (ImageNet-sized
    uploads are out of scope) while stopping decompression bombs long before they fill
    a disk.
    """

    max_members: int = 200_000
    max_total_bytes: int = 4 << 30  # 4 GiB of uncompressed member data

    def __post_init__(self) -> None:
        if self.max_members < 1:
            raise DatasetError(f"ArchiveLimits.max_members must be >= 1, got {self.max_members}")
        if self.max_total_bytes < 1:
            raise DatasetError(f"ArchiveLimits.max_total_bytes must be >= 1, got {self.max_total_bytes}")


def archive_kind(path: Path) -> str | None:
    """ "zip" or "tar" from the file name, or None when it is not a supported archive."""
    lowered = path.name.lower()
    if lowered.endswith(_ZIP_SUFFIXES):
        return "zip"
    if lowered.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


@contextlib.contextmanager
def scratch_directory(scratch_dir: str | Path | None, prefix: str) -> Iterator[Path]:
    """A fresh empty directory, inside ``scratch_dir`` when given, removed afterwards.

    Loaders decode everything into memory, so extracted files are never needed after
    loading; a fresh subdirectory keeps concurrent loads from colliding.
    """
    if scratch_dir is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
        return
    base = Path(scratch_dir)
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def extract_archive(
    archive: str | Path,
    destination: str | Path,
    limits: ArchiveLimits | None = None,
    select: Callable[[tuple[str, ...]], bool] | None = None,
) -> Path:
    """Extract ``archive`` (.zip or tar, optionally gzip/bz2/xz) into ``destination``.

    ``destination`` must be an existing empty directory. Raises DatasetError naming the
    archive and the offending member on any unsafe or malformed content. ``select``: only
    regular files whose path components it accepts are written (every member is still
    checked), so a model upload's ignored files never reach the disk.
    """
    archive = Path(archive)
    destination = Path(destination)
    limits = limits or ArchiveLimits()
    if not destination.is_dir() or any(destination.iterdir()):
        raise DatasetError(f"{destination}: extraction target must be an existing empty directory")
    kind = archive_kind(archive)
    keep = select or _everything
    if kind == "zip":
        _extract_zip(archive, destination, limits, keep)
    elif kind == "tar":
        _extract_tar(archive, destination, limits, keep)
    else:
        raise DatasetError(
            f"{archive.name}: unsupported archive type (expected one of {', '.join(ARCHIVE_SUFFIXES)})"
        )
    return destination


def _everything(parts: tuple[str, ...]) -> bool:
    return True


class _Budget:
    """Counts extracted bytes and fails as soon as the cap is passed."""

    def __init__(self, archive: str, limit: int) -> None:
        self.archive = archive
        self.limit = limit
        self.used = 0

    def consume(self, count: int, member: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise DatasetError(
                f"{self.archive}: uncompressed contents exceed the {self.limit}-byte limit "
                f"(while extracting {member!r}; possible decompression bomb)"
            )


def _member_parts(archive: str, name: str) -> tuple[str, ...]:
    if "\x00" in name:
        raise DatasetError(f"{archive}: member {name!r} has a NUL byte in its name")
    # Archives made on Windows may use backslashes; treat them as separators too so
    # "..\\evil" cannot slip through.
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or _DRIVE_RE.match(normalized):
        raise DatasetError(f"{archive}: member {name!r} has an absolute path")
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DatasetError(f"{archive}: member {name!r} has a '..' path component")
    return parts


def _target(archive: str, destination: Path, parts: tuple[str, ...], name: str) -> Path:
    target = destination.joinpath(*parts)
    # Belt and braces: the name checks should make this impossible.
    if not target.resolve().is_relative_to(destination.resolve()):
        raise DatasetError(f"{archive}: member {name!r} would be written outside the destination")
    return target


def _write_member(
    archive: str, destination: Path, parts: tuple[str, ...], name: str, source: _Reader, budget: _Budget
) -> None:
    target = _target(archive, destination, parts, name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "xb": never overwrite (duplicate members) and never follow an existing path.
        with target.open("xb") as out:
            while chunk := source.read(_CHUNK):
                budget.consume(len(chunk), name)
                out.write(chunk)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise DatasetError(f"{archive}: member {name!r} clashes with another member ({exc})") from exc


def _extract_zip(
    archive: Path, destination: Path, limits: ArchiveLimits, keep: Callable[[tuple[str, ...]], bool]
) -> None:
    label = archive.name
    budget = _Budget(label, limits.max_total_bytes)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise DatasetError(f"{label}: {len(infos)} members, over the limit of {limits.max_members}")
            # Headers can lie, so this is only an early exit; the streaming count decides.
            declared = sum(info.file_size for info in infos)
            if declared > limits.max_total_bytes:
                raise DatasetError(
                    f"{label}: declares {declared} uncompressed bytes, over the "
                    f"{limits.max_total_bytes}-byte limit (possible decompression bomb)"
                )
            for info in infos:
                name = info.filename
                parts = _member_parts(label, name)
                file_type = stat.S_IFMT(info.external_attr >> 16)
                if file_type == stat.S_IFLNK:
                    raise DatasetError(f"{label}: member {name!r} is a symbolic link")
                if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise DatasetError(f"{label}: member {name!r} is a special file")
                if info.flag_bits & 0x1:
                    raise DatasetError(f"{label}: member {name!r} is encrypted")
                if not parts:
                    continue
                if info.is_dir() or file_type == stat.S_IFDIR:
                    _make_dir(label, destination, parts, name)
                    continue
                if not keep(parts):
                    continue
                with zf.open(info) as source:
                    _write_member(label, destination, parts, name, source, budget)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{label}: corrupt zip archive ({exc})") from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError) as exc:
        raise DatasetError(f"{label}: cannot extract zip archive ({exc})") from exc


def _make_dir(archive: str, destination: Path, parts: tuple[str, ...], name: str) -> None:
    target = _target(archive, destination, parts, name)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise DatasetError(f"{archive}: member {name!r} clashes with another member ({exc})") from exc


class _BoundedReader:
    """A read-only stream that fails once more than ``limit`` bytes have been read."""

    def __init__(self, stream: _Reader, limit: int, archive: str) -> None:
        self._stream = stream
        self._limit = limit
        self._archive = archive
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit - self._read + 1
        data = self._stream.read(min(size, self._limit - self._read + 1))
        self._read += len(data)
        if self._read > self._limit:
            raise DatasetError(
                f"{self._archive}: decompressed stream exceeds {self._limit} bytes (possible decompression bomb)"
            )
        return data


@contextlib.contextmanager
def _decompressed(archive: Path) -> Iterator[_Reader]:
    # Detect the compression from the content, not the suffix, so a mislabelled file
    # still goes through the bounded reader instead of tarfile's own decompression.
    with archive.open("rb") as raw:
        head = raw.read(6)
        raw.seek(0)
        if head.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz
        elif head.startswith(b"BZh"):
            with bz2.BZ2File(raw, mode="rb") as bz:
                yield bz
        elif head.startswith(b"\xfd7zXZ\x00"):
            with lzma.LZMAFile(raw, mode="rb") as xz:
                yield xz
        else:
            yield raw


def _extract_tar(
    archive: Path, destination: Path, limits: ArchiveLimits, keep: Callable[[tuple[str, ...]], bool]
) -> None:
    label = archive.name
    budget = _Budget(label, limits.max_total_bytes)
    stream_limit = (
        limits.max_total_bytes + _TAR_OVERHEAD_PER_MEMBER * limits.max_members + _TAR_OVERHEAD_FIXED
    )
    try:
        with _decompressed(archive) as plain:
            bounded = _BoundedReader(plain, stream_limit, label)
            # "r|": a pure forward stream, so every byte goes through the bounded reader.
            with tarfile.open(fileobj=bounded, mode="r|") as tf:  # type: ignore[call-overload]
                for count, member in enumerate(tf, start=1):
                    if count > limits.max_members:
                        raise DatasetError(f"{label}: more than {limits.max_members} members")
                    _extract_tar_member(tf, member, label, destination, budget, keep)
    except tarfile.TarError as exc:
        raise DatasetError(f"{label}: corrupt tar archive ({exc})") from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DatasetError(f"{label}: cannot extract tar archive ({exc})") from exc


def _extract_tar_member(
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    label: str,
    destination: Path,
    budget: _Budget,
    keep: Callable[[tuple[str, ...]], bool],
) -> None:
    name = member.name
    parts = _member_parts(label, name)
    if member.issym():
        raise DatasetError(f"{label}: member {name!r} is a symbolic link")
    if member.islnk():
        raise DatasetError(f"{label}: member {name!r} is a hard link")
    if not (member.isreg() or member.isdir()):
        raise DatasetError(f"{label}: member {name!r} is a device, FIFO or other special file")
    if not parts:
        return
    if member.isdir():
        _make_dir(label, destination, parts, name)
        return
    if not keep(parts):
        return
    # Early exit on the declared size; the streaming count below is what enforces it.
    if budget.used + member.size > budget.limit:
        raise DatasetError(
            f"{label}: member {name!r} declares {member.size} bytes, over the "
            f"{budget.limit}-byte limit (possible decompression bomb)"
        )
    source = tf.extractfile(member)
    if source is None:  # pragma: no cover - isreg() members always have a file object
        raise DatasetError(f"{label}: member {name!r} has no data")
    with source:
        _write_member(label, destination, parts, name, source, budget)
