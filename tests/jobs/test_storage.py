"""One contract, two stores: every test runs against the local directory and against S3 over HTTP (moto)."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from jobs.settings import Settings
from jobs.storage import (
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StoreUnavailable,
    make_store,
    sha256_file,
    validate_key,
    validate_prefix,
)

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest multipart part; the S3 store under test switches to multipart above it


def _payload(size: int, seed: int = 0) -> bytes:
    # Not a repeating pattern, so an off-by-one in a range read cannot go unnoticed.
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def _s3_store(moto_s3: Any, **kwargs: Any) -> S3Store:
    return S3Store(
        moto_s3.bucket,
        endpoint_url=moto_s3.endpoint_url,
        region=moto_s3.region,
        multipart_threshold=PART,
        multipart_chunksize=PART,
        **kwargs,
    )


@pytest.fixture(scope="module")
def s3_client(moto_s3: Any) -> Any:
    """One client, configured by S3Store itself, for the whole module: building one costs ~0.3 s."""
    return _s3_store(moto_s3).client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    # A fresh prefix per test keeps tests apart in the one session bucket.
    moto_s3 = request.getfixturevalue("moto_s3")
    return _s3_store(moto_s3, prefix=f"t-{uuid.uuid4().hex}", client=request.getfixturevalue("s3_client"))


def _leftovers(store: ObjectStore) -> list[str]:
    """Half-written state a failed put could leave behind: staging files, or open multipart uploads."""
    if isinstance(store, LocalStore):
        return sorted(os.listdir(store.root / ".staging"))
    assert isinstance(store, S3Store)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix).get("Uploads", [])
    return sorted(u["Key"] for u in uploads)


class FailingStream(io.RawIOBase):
    """A source that delivers ``fail_after`` bytes, then breaks like a dying disk or a dropped client."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self._data = io.BytesIO(data)
        self._fail_after = fail_after
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.delivered >= self._fail_after:
            raise OSError("source became unreadable")
        want = self._fail_after - self.delivered
        if size is not None and size >= 0:
            want = min(want, size)
        chunk = self._data.read(want)
        self.delivered += len(chunk)
        return chunk


# -- writes and metadata ------------------------------------------------------------------------------
def test_put_file_reports_size_sha256_and_content_type(store: ObjectStore, tmp_path: Path) -> None:
    data = _payload(300_000)
    source = tmp_path / "model.safetensors"
    source.write_bytes(data)

    stored = store.put_file("jobs/j1/model.safetensors", source, content_type="application/x-safetensors")

    assert stored.key == "jobs/j1/model.safetensors"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(source)
    assert stored.content_type == "application/x-safetensors"
    stat = store.stat("jobs/j1/model.safetensors")
    assert stat.size == len(data)
    assert stat.content_type == "application/x-safetensors"
    assert stat.etag
    assert store.read_bytes("jobs/j1/model.safetensors") == data


def test_put_bytes_defaults_to_octet_stream(store: ObjectStore) -> None:
    stored = store.put_bytes("a/b.bin", b"\x00\x01\x02")
    assert stored.content_type == "application/octet-stream"
    assert store.stat("a/b.bin").content_type == "application/octet-stream"
    assert stored.sha256 == hashlib.sha256(b"\x00\x01\x02").hexdigest()


def test_empty_object_round_trips(store: ObjectStore) -> None:
    stored = store.put_bytes("empty", b"")
    assert stored.size == 0
    assert store.stat("empty").size == 0
    assert store.read_bytes("empty") == b""


def test_large_file_goes_through_multipart_and_round_trips(store: ObjectStore, tmp_path: Path) -> None:
    data = _payload(2 * PART + 12_345, seed=1)
    source = tmp_path / "big.bin"
    source.write_bytes(data)

    stored = store.put_file("big/big.bin", source)

    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.stat("big/big.bin").size == len(data)
    if isinstance(store, S3Store):
        assert "-3" in (store.stat("big/big.bin").etag or ""), "expected a 3-part multipart ETag"
    dest = tmp_path / "out" / "copy.bin"
    store.download_file("big/big.bin", dest)
    assert sha256_file(dest) == stored.sha256


def test_overwrite_replaces_the_whole_object(store: ObjectStore) -> None:
    store.put_bytes("k", b"first version, long", "text/plain")
    store.put_bytes("k", b"second", "application/json")
    assert store.read_bytes("k") == b"second"
    assert store.stat("k").size == 6
    assert store.stat("k").content_type == "application/json"


def test_stat_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.stat("nope/missing")
    assert isinstance(info.value, KeyError)
    assert info.value.key == "nope/missing"
    assert not store.exists("nope/missing")
    store.put_bytes("nope/here", b"x")
    assert store.exists("nope/here")


# -- range reads --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 9, slice(0, 10)),  # first bytes: Range: bytes=0-9
        (1000, 1999, slice(1000, 2000)),  # middle
        (4096 - 10, None, slice(4096 - 10, None)),  # suffix: bytes=4086-
        (0, None, slice(0, None)),  # everything
        (4000, 10**9, slice(4000, None)),  # end past the object is clamped
        (4095, 4095, slice(4095, 4096)),  # the very last byte
        (4096, None, slice(4096, None)),  # start at the end: nothing
        (5000, 6000, slice(5000, None)),  # start past the end: nothing
    ],
)
def test_open_range_reads_inclusive_ranges(
    store: ObjectStore, start: int, end: int | None, expected: slice
) -> None:
    data = _payload(4096, seed=2)
    store.put_bytes("r/data.bin", data)
    assert b"".join(store.open_range("r/data.bin", start, end)) == data[expected]


def test_open_range_streams_in_chunks(store: ObjectStore) -> None:
    data = _payload(10_000, seed=3)
    store.put_bytes("r/chunks.bin", data)
    chunks = list(store.open_range("r/chunks.bin", 100, 9_099, chunk_size=1000))
    assert b"".join(chunks) == data[100:9_100]
    assert len(chunks) >= 9
    assert all(len(c) <= 1000 for c in chunks)


def test_open_range_keeps_reading_the_version_it_opened(store: ObjectStore) -> None:
    old, new = _payload(5000, seed=4), _payload(3000, seed=5)
    store.put_bytes("r/v.bin", old)
    stream = store.open_range("r/v.bin", chunk_size=1000)
    first = next(stream)
    store.put_bytes("r/v.bin", new)
    assert first + b"".join(stream) == old
    assert store.read_bytes("r/v.bin") == new


def test_open_range_of_a_missing_key_raises_at_call_time(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.open_range("r/missing.bin")


@pytest.mark.parametrize(("start", "end"), [(-1, None), (10, 9)])
def test_open_range_rejects_nonsense_ranges(store: ObjectStore, start: int, end: int | None) -> None:
    store.put_bytes("r/x", b"0123456789abcdef")
    with pytest.raises(ValueError):
        store.open_range("r/x", start, end)


# -- atomicity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fail_after", [0, 1000, PART + 1000], ids=["at-once", "mid-single-put", "mid-multipart"]
)
def test_a_failed_upload_leaves_no_object(store: ObjectStore, fail_after: int) -> None:
    source = FailingStream(_payload(3 * PART), fail_after=fail_after)

    with pytest.raises(OSError, match="source became unreadable"):
        store.put_fileobj("atomic/new.bin", source)  # type: ignore[arg-type]

    assert source.delivered == fail_after
    assert not store.exists("atomic/new.bin")
    assert store.list("atomic") == []
    assert _leftovers(store) == []


def test_a_failed_overwrite_keeps_the_previous_object(store: ObjectStore) -> None:
    store.put_bytes("atomic/kept.bin", b"the good version", "text/plain")
    source = FailingStream(_payload(2 * PART), fail_after=PART + 10)

    with pytest.raises(OSError, match="source became unreadable"):
        store.put_fileobj("atomic/kept.bin", source, "application/octet-stream")  # type: ignore[arg-type]

    assert store.read_bytes("atomic/kept.bin") == b"the good version"
    assert store.stat("atomic/kept.bin").content_type == "text/plain"
    assert _leftovers(store) == []


def test_download_file_replaces_the_destination_atomically(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("d/obj.bin", b"fresh content")
    dest = tmp_path / "nested" / "dir" / "obj.bin"
    store.download_file("d/obj.bin", dest)
    assert dest.read_bytes() == b"fresh content"

    dest.write_bytes(b"local copy")
    with pytest.raises(ObjectNotFound):
        store.download_file("d/missing.bin", dest)
    assert dest.read_bytes() == b"local copy"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["obj.bin"], "temporary file left behind"


# -- keys ---------------------------------------------------------------------------------------------
BAD_KEYS = [
    "",
    "../etc/passwd",
    "a/../b",
    "..",
    "a/./b",
    ".hidden",
    "a/.staging/x",
    "/absolute/key",
    "a\\b",
    "..\\..\\windows",
    "a//b",
    "a/",
    "a b",
    "a\x00b",
    "caf\u00e9",
    "a/" + "x" * 201,
    "k" * 501,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_rejected_by_every_operation(store: ObjectStore, key: str, tmp_path: Path) -> None:
    operations = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_file(key, __file__),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.open_range(key),
        lambda: store.delete(key),
        lambda: store.download_file(key, tmp_path / "out.bin"),
    ]
    for operation in operations:
        with pytest.raises(ValueError):
            operation()
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize("key", ["a", "jobs/0123abcd/model.safetensors", "x-y_z/1.2.3/v.tar.gz", "A/b-/c_"])
def test_ordinary_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


def test_prefixes_name_folders() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("jobs/a") == validate_prefix("jobs/a/") == "jobs/a/"
    for bad in ("/", "../x", "a//", "//"):
        with pytest.raises(ValueError):
            validate_prefix(bad)


def test_local_store_refuses_paths_that_escape_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalStore(tmp_path / "objects")
    (store.root / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ValueError, match="escapes"):
        store.put_bytes("link/planted.txt", b"x")
    with pytest.raises(ValueError, match="escapes"):
        store.stat("link/planted.txt")
    assert list(outside.iterdir()) == []


# -- listing and deleting -----------------------------------------------------------------------------
KEYS = ["jobs/a/model.bin", "jobs/a/ckpt/0001/state.bin", "jobs/ab/model.bin", "jobs/a.txt", "other/x"]


@pytest.fixture
def filled(store: ObjectStore) -> ObjectStore:
    for key in KEYS:
        store.put_bytes(key, key.encode())
    return store


def test_list_returns_sorted_keys_under_a_folder(filled: ObjectStore) -> None:
    assert filled.list() == sorted(KEYS)
    assert (
        filled.list("jobs/a") == filled.list("jobs/a/") == ["jobs/a/ckpt/0001/state.bin", "jobs/a/model.bin"]
    )
    assert filled.list("jobs/ab") == ["jobs/ab/model.bin"]
    assert filled.list("nothing/here") == []


def test_delete_removes_one_object_and_ignores_missing_keys(filled: ObjectStore) -> None:
    filled.delete("jobs/a/model.bin")
    filled.delete("jobs/a/model.bin")
    filled.delete("never/existed")
    assert not filled.exists("jobs/a/model.bin")
    assert filled.list() == sorted(set(KEYS) - {"jobs/a/model.bin"})


def test_delete_prefix_removes_the_folder_and_nothing_beside_it(filled: ObjectStore) -> None:
    assert filled.delete_prefix("jobs/a") == 2
    assert filled.list() == ["jobs/a.txt", "jobs/ab/model.bin", "other/x"]
    assert filled.delete_prefix("jobs/a") == 0
    filled.put_bytes("jobs/a/model.bin", b"new")  # the folder can be written again
    assert filled.read_bytes("jobs/a/model.bin") == b"new"


def test_delete_prefix_refuses_to_wipe_the_store(filled: ObjectStore) -> None:
    with pytest.raises(ValueError):
        filled.delete_prefix("")
    with pytest.raises(ValueError):
        filled.delete_prefix("../")
    assert filled.list() == sorted(KEYS)


def test_s3_keys_live_under_the_store_prefix(moto_s3: Any) -> None:
    store = _s3_store(moto_s3, prefix="tenant-1/lbc/")
    neighbour = _s3_store(moto_s3, prefix="tenant-2")
    store.put_bytes("jobs/x", b"1")
    neighbour.put_bytes("jobs/x", b"2")

    raw = store.client.list_objects_v2(Bucket=moto_s3.bucket, Prefix="tenant-")["Contents"]
    assert {o["Key"] for o in raw} >= {"tenant-1/lbc/jobs/x", "tenant-2/jobs/x"}
    assert store.list() == ["jobs/x"]
    assert store.read_bytes("jobs/x") == b"1"
    store.delete_prefix("jobs")
    assert neighbour.read_bytes("jobs/x") == b"2"


# -- health -------------------------------------------------------------------------------------------
def test_check_passes_on_a_working_store(store: ObjectStore) -> None:
    store.check()
    assert store.list() == [], "the probe must not leave an object"


def test_local_check_fails_when_the_root_is_gone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    (store.root / ".staging").rmdir()
    store.root.rmdir()
    store.root.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        store.check()


def test_s3_check_fails_for_a_missing_bucket_until_ensure_bucket(moto_s3: Any) -> None:
    store = S3Store(f"lbc-new-{uuid.uuid4().hex[:8]}", endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(StoreUnavailable):
        store.check()
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    store.check()


# -- configuration ------------------------------------------------------------------------------------
def test_make_store_builds_a_local_store_by_default(tmp_path: Path) -> None:
    store = make_store(Settings(home=tmp_path / "home"))
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "home" / "objects").resolve()


def test_make_store_builds_an_s3_store_from_settings(tmp_path: Path, moto_s3: Any) -> None:
    settings = Settings(
        home=tmp_path,
        storage_backend="s3",
        s3_bucket=moto_s3.bucket,
        s3_endpoint_url=moto_s3.endpoint_url,
        s3_prefix="made/by/settings",
    )
    store = make_store(settings)
    assert isinstance(store, S3Store)
    assert store.prefix == "made/by/settings/"
    store.check()
    store.put_bytes("k", b"v")
    assert store.read_bytes("k") == b"v"
    store.delete("k")
