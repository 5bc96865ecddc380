"""The worker's extraction refuses the same hostile archives as the API (``tests/security/hostile_files``).

Each archive-level case of the shared table is written to disk and extracted with the caps the API tests
use; extraction fails naming the problem, and nothing lands outside the destination or in the escape
directory the archive aims at.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbc_core.data import ArchiveLimits, DatasetError, extract_archive
from tests.security.hostile_files import (
    ARCHIVE_CASES,
    MAX_EXPANDED_BYTES,
    MAX_MEMBERS,
    Hostile,
    mnist_members,
    zip_bytes,
)


@pytest.fixture
def escape() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lbc-hostile-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _suffix(filename: str) -> str:
    return ".tar.gz" if filename.endswith(".tar.gz") else Path(filename).suffix


@pytest.mark.parametrize("case", ARCHIVE_CASES, ids=[case.id for case in ARCHIVE_CASES])
def test_extraction_refuses_hostile_archives(case: Hostile, escape: Path, tmp_path: Path) -> None:
    archive = tmp_path / f"upload{_suffix(case.filename)}"
    archive.write_bytes(case.build(escape, tmp_path))
    destination = tmp_path / "out" / "dest"
    destination.mkdir(parents=True)
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(destination)}
    limits = ArchiveLimits(max_members=MAX_MEMBERS, max_total_bytes=MAX_EXPANDED_BYTES)

    with pytest.raises(DatasetError) as error:
        extract_archive(archive, destination, limits)

    assert case.extract is not None and case.extract in str(error.value), str(error.value)
    assert str(error.value).startswith(archive.name)
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(destination)}
    assert after == before, "extraction wrote outside its destination"
    assert list(escape.iterdir()) == []
    assert not any(p.is_symlink() for p in destination.rglob("*"))


def test_a_nested_archive_is_extracted_as_a_plain_file_and_never_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    archive.write_bytes(zip_bytes({"digits/inner.zip": zip_bytes(mnist_members())}))
    destination = tmp_path / "dest"
    destination.mkdir()
    extract_archive(archive, destination)
    assert sorted(str(p.relative_to(destination)) for p in destination.rglob("*")) == [
        "digits",
        "digits/inner.zip",
    ]
