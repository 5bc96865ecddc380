"""Object store on a local directory: the embedded mode's default, and what tests use without S3.

Layout under ``root``: each object at ``root/<key>``, so the tree reads like the key space; writes are
staged in ``root/.staging`` (same filesystem, so ``os.replace`` is atomic) and a sidecar per object in
``root/.meta/<key>.json`` keeps its content type and sha256. Keys never start a segment with '.', so
neither internal directory can be named by a key.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from jobs.storage.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    ObjectNotFound,
    ObjectStat,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    atomic_path,
    check_range,
    validate_key,
    validate_prefix,
)

_STAGING = ".staging"
_META = ".meta"


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; without it a power cut can roll the directory entry back.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fingerprint(st: os.stat_result) -> list[int]:
    # os.replace keeps the inode and mtime of the staged file, so this identifies one written version.
    return [st.st_ino, st.st_mtime_ns, st.st_size]


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self._staging = self.root / _STAGING
        self._meta = self.root / _META
        self._staging.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------------------------
    def _inside(self, path: Path) -> Path:
        # Keys are already safe; this also catches a symlink planted inside the root that points out.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"object path {path} escapes the store root")
        return path

    def _path(self, key: str) -> Path:
        return self._inside(self.root / validate_key(key))

    def _meta_path(self, key: str) -> Path:
        return self._inside(self._meta / f"{validate_key(key)}.json")

    def _stage(self, suffix: str) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self._staging, suffix=suffix)
        return fd, Path(name)

    @staticmethod
    def _publish(staged: Path, target: Path) -> None:
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(staged, target)
                break
            except FileNotFoundError:
                # A concurrent delete_prefix removed the fresh parent directory; make it again.
                if attempt == 2 or not staged.exists():
                    raise
        _fsync_dir(target.parent)

    # -- writes -----------------------------------------------------------------------------------------
    def put_fileobj(self, key: str, stream: BinaryIO, content_type: str | None = None) -> StoredObject:
        target = self._path(key)
        meta_target = self._meta_path(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        fd, staged = self._stage(".part")
        meta_staged: Path | None = None
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
                fingerprint = _fingerprint(os.fstat(out.fileno()))
            sha256 = digest.hexdigest()
            meta_fd, meta_staged = self._stage(".json")
            with os.fdopen(meta_fd, "w") as meta_out:
                json.dump(
                    {"content_type": content_type, "sha256": sha256, "fingerprint": fingerprint}, meta_out
                )
            # Sidecar first: it names the exact file version it describes, so until the data lands it is
            # simply ignored by stat(), and once the data lands it is already there.
            self._publish(meta_staged, meta_target)
            self._publish(staged, target)
        except BaseException:
            for leftover in (staged, meta_staged):
                if leftover is not None:
                    leftover.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=sha256, content_type=content_type)

    # -- reads ------------------------------------------------------------------------------------------
    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        check_range(start, end)
        path = self._path(key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        return _read_range(f, start, end, chunk_size)

    def stat(self, key: str) -> ObjectStat:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not path.is_file():
            raise ObjectNotFound(key)
        meta = self._read_meta(key)
        if meta is not None and meta.get("fingerprint") == _fingerprint(st):
            return ObjectStat(
                size=st.st_size, etag=str(meta["sha256"]), content_type=str(meta["content_type"])
            )
        # Written by something other than this store, or a crash between sidecar and data.
        return ObjectStat(size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}", content_type=None)

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self._meta_path(key)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def list(self, prefix: str = "") -> builtins.list[str]:
        prefix = validate_prefix(prefix)
        base = self._inside(self.root / prefix) if prefix else self.root
        keys: builtins.list[str] = []
        self._walk(base, prefix, keys)
        return sorted(keys)

    def _walk(self, directory: Path, key_prefix: str, out: builtins.list[str]) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):  # internal directories and anything no key could name
                continue
            if entry.is_dir(follow_symlinks=False):
                self._walk(Path(entry.path), f"{key_prefix}{entry.name}/", out)
            elif entry.is_file(follow_symlinks=False):
                out.append(f"{key_prefix}{entry.name}")

    def download_file(self, key: str, path: str | Path) -> None:
        source = self._path(key)
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed by the with below
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        with src, atomic_path(path) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK_SIZE)
            out.flush()
            os.fsync(out.fileno())

    # -- deletes ----------------------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        path = self._path(key)
        meta = self._meta_path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.is_file():
                path.unlink()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            meta.unlink()

    def delete_prefix(self, prefix: str) -> int:
        prefix = validate_prefix(prefix)
        if not prefix:
            raise ValueError("refusing to delete the whole store: give a non-empty prefix")
        count = len(self.list(prefix))
        for tree in (self.root / prefix, self._meta / prefix):
            shutil.rmtree(self._inside(tree), ignore_errors=True)
        return count

    # -- health -----------------------------------------------------------------------------------------
    def check(self) -> None:
        try:
            if not self.root.is_dir():
                raise StoreUnavailable(f"object store root {self.root} is not a directory")
            fd, probe = self._stage(".probe")
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"object store root {self.root} is not writable: {exc}") from exc


def _read_range(f: BinaryIO, start: int, end: int | None, chunk_size: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
