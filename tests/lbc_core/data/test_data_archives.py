import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from lbc_core.data import ArchiveLimits, DatasetError, extract_archive


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    target = tmp_path / "out" / "dest"
    target.mkdir(parents=True)
    return target


def test_zip_extracts_files_and_directories(tmp_path: Path, dest: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a/": b"", "a/b.txt": b"hello", "c.txt": b"x"})
    extract_archive(archive, dest)
    assert (dest / "a" / "b.txt").read_bytes() == b"hello" and (dest / "c.txt").read_bytes() == b"x"


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_tar_variants_extract(tmp_path: Path, dest: Path, suffix: str, mode: str) -> None:
    archive = _tar(
        tmp_path / f"ok{suffix}", [(_info("d", tarfile.DIRTYPE), None), (_info("d/f.bin"), b"\x01\x02")], mode
    )
    extract_archive(archive, dest)
    assert (dest / "d" / "f.bin").read_bytes() == b"\x01\x02"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.png", "'..' path component"),
        ("a/../../evil.png", "'..' path component"),
        ("..\\evil.png", "'..' path component"),
        ("/abs/evil.png", "absolute path"),
        ("C:/evil.png", "absolute path"),
    ],
)
def test_zip_path_traversal_is_rejected(tmp_path: Path, dest: Path, name: str, message: str) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ok/fine.png": b"1", name: b"boom"})
    with pytest.raises(DatasetError, match=f"evil.zip: member .* has an? {message}"):
        extract_archive(archive, dest)
    assert not (tmp_path / "out" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (_info("../evil.png"), "'..' path component"),
        (_info("/tmp/evil.png"), "absolute path"),
        (_info("link.png", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link"),
        (_info("hard.png", tarfile.LNKTYPE, "other.png"), "is a hard link"),
        (_info("dev", tarfile.CHRTYPE), "device, FIFO or other special file"),
        (_info("fifo", tarfile.FIFOTYPE), "device, FIFO or other special file"),
    ],
)
def test_unsafe_tar_members_are_rejected(
    tmp_path: Path, dest: Path, info: tarfile.TarInfo, message: str
) -> None:
    data = b"boom" if info.type == tarfile.REGTYPE else None
    archive = _tar(tmp_path / "evil.tar.gz", [(_info("other.png"), b"1"), (info, data)])
    with pytest.raises(DatasetError, match=f"evil.tar.gz: member .* {message}"):
        extract_archive(archive, dest)
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_zip_symlink_member_is_rejected(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("cat/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="is a symbolic link"):
        extract_archive(archive, dest)


def test_zip_bomb_over_the_size_limit(tmp_path: Path, dest: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"a/zeros.bin": bytes(2_000_000)})
    assert archive.stat().st_size < 10_000  # it really is a bomb
    with pytest.raises(DatasetError, match="over the 1000000-byte limit"):
        extract_archive(archive, dest, ArchiveLimits(max_total_bytes=1_000_000))


def test_zip_size_is_counted_while_streaming_not_taken_from_headers(tmp_path: Path, dest: Path) -> None:
    # Forge the declared sizes down to 10 bytes: the early header check passes, the
    # streaming copy then stops at what was declared and the CRC check exposes the lie.
    archive = _zip(tmp_path / "liar.zip", {"zeros.bin": bytes(100_000)})
    raw = bytearray(archive.read_bytes())
    struct.pack_into("<I", raw, 22, 10)  # local header: uncompressed size
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 10)  # central directory: uncompressed size
    archive.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"liar\.zip: corrupt zip archive"):
        extract_archive(archive, dest, ArchiveLimits(max_total_bytes=1000))
    assert (dest / "zeros.bin").stat().st_size <= 10


def test_tar_bomb_over_the_size_limit(tmp_path: Path, dest: Path) -> None:
    members = [(_info(f"part{i}.bin"), bytes(400_000)) for i in range(5)]
    archive = _tar(tmp_path / "bomb.tar.gz", members)
    with pytest.raises(DatasetError, match=r"bomb\.tar\.gz: .*over the 1000000-byte limit"):
        extract_archive(archive, dest, ArchiveLimits(max_total_bytes=1_000_000))


def test_oversized_tar_headers_are_bounded_too(tmp_path: Path, dest: Path) -> None:
    # A 3 MB pax header carries no member data, so only the stream cap can stop it.
    info = _info("tiny.bin")
    info.pax_headers = {"comment": "x" * 3_000_000}
    archive = tmp_path / "pax.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        info.size = 1
        tf.addfile(info, io.BytesIO(b"1"))
    with pytest.raises(DatasetError, match="decompressed stream exceeds"):
        extract_archive(archive, dest, ArchiveLimits(max_members=10, max_total_bytes=1000))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_too_many_members(tmp_path: Path, dest: Path, kind: str) -> None:
    names = [f"f{i}.txt" for i in range(5)]
    if kind == "zip":
        archive = _zip(tmp_path / "many.zip", dict.fromkeys(names, b"1"))
    else:
        archive = _tar(tmp_path / "many.tar", [(_info(n), b"1") for n in names], mode="w")
    with pytest.raises(DatasetError, match=r"over the limit of 3|more than 3 members"):
        extract_archive(archive, dest, ArchiveLimits(max_members=3))


def test_file_and_directory_clash(tmp_path: Path, dest: Path) -> None:
    archive = _tar(tmp_path / "clash.tar", [(_info("a"), b"1"), (_info("a/b"), b"2")], mode="w")
    with pytest.raises(DatasetError, match="clashes with another member"):
        extract_archive(archive, dest)


def test_corrupt_archives(tmp_path: Path, dest: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(b"definitely not a zip")
    with pytest.raises(DatasetError, match=r"junk\.zip: corrupt zip archive"):
        extract_archive(tmp_path / "junk.zip", dest)
    good = _tar(tmp_path / "cut.tar.gz", [(_info("f.bin"), bytes(range(256)) * 400)])
    (tmp_path / "cut.tar.gz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"cut\.tar\.gz: c"):
        extract_archive(tmp_path / "cut.tar.gz", dest)


def test_unsupported_type_and_non_empty_destination(tmp_path: Path, dest: Path) -> None:
    (tmp_path / "data.rar").write_bytes(b"x")
    with pytest.raises(DatasetError, match="unsupported archive type"):
        extract_archive(tmp_path / "data.rar", dest)
    (dest / "existing").write_bytes(b"")
    with pytest.raises(DatasetError, match="existing empty directory"):
        extract_archive(_zip(tmp_path / "ok.zip", {"a": b""}), dest)


def test_limits_are_validated() -> None:
    with pytest.raises(DatasetError):
        ArchiveLimits(max_members=0)
    with pytest.raises(DatasetError):
        ArchiveLimits(max_total_bytes=0)
