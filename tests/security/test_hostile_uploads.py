"""Every hostile upload of ``hostile_files.HOSTILE`` through the real HTTP API.

Each one is refused in the error envelope with a message naming the problem; nothing is stored, no
temporary file stays behind, nothing is written outside the store (the test's whole directory tree and
the escape directory the files aim at are compared before and after), a pickle's command never runs,
and the app takes a valid upload right afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from tests.api.conftest import Service, TestClient, make_settings
from tests.security.hostile_files import (
    HOSTILE,
    MARKER,
    MAX_EXPANDED_BYTES,
    MAX_MEMBERS,
    MAX_UPLOAD_BYTES,
    Hostile,
    valid_for,
)

# SQLite's own files change with every request; everything else under the test directory must not.
_DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


@pytest.fixture
def escape() -> Iterator[Path]:
    """An empty directory outside the test's tree: the target of absolute paths, links and commands."""
    path = Path(tempfile.mkdtemp(prefix="lbc-hostile-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tree(root: Path) -> set[str]:
    return {
        str(path.relative_to(root)) for path in root.rglob("*") if not path.name.endswith(_DATABASE_SUFFIXES)
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite_template: Path) -> Iterator[Service]:
    """One app for the whole table (each case cleans up after itself), with small upload limits."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copyfile(migrated_sqlite_template, root / "lbc.db")
    settings = make_settings(
        root,
        f"sqlite:///{root / 'lbc.db'}",
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_upload_members=MAX_MEMBERS,
        max_upload_expanded_bytes=MAX_EXPANDED_BYTES,
    )
    with TestClient(create_app(settings)) as client:
        yield Service(client.app, client, settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.id for case in HOSTILE])
def test_hostile_upload_is_refused_and_leaves_nothing_behind(
    service: Service, case: Hostile, escape: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    data = case.build(escape, scratch)
    shutil.rmtree(scratch)
    alice = service.caller()
    root = service.settings.home.parent
    (service.settings.home / "tmp").mkdir(parents=True, exist_ok=True)  # made by the first upload
    before = tree(root)

    fields = {"format": case.fmt} if case.fmt else {}
    response = service.client.post(
        f"/v1/{case.kind}",
        files={"file": (case.filename, data, "application/octet-stream")},
        data=fields,
        headers=alice.headers,
    )

    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == ("validation_error" if case.status == 422 else "payload_too_large")
    named = error["message"] if case.status != 422 else error["details"][0]["message"]
    assert case.message in named, named
    assert error["request_id"] == response.headers["X-Request-ID"]

    assert service.store.list(case.kind) == []
    assert list((service.settings.home / "tmp").iterdir()) == []
    assert tree(root) - before == set(), "files appeared outside the store"
    assert list(escape.iterdir()) == [], "something was written to the escape target"
    assert not (escape / MARKER).exists(), "a pickle ran its command"
    listed = service.client.get(f"/v1/{case.kind}", headers=alice.headers)
    assert listed.status_code == 200 and listed.json()["items"] == []

    filename, valid, valid_fields = valid_for(case.kind)
    after = service.client.post(
        f"/v1/{case.kind}",
        files={"file": (filename, valid, "application/octet-stream")},
        data=valid_fields,
        headers=alice.headers,
    )
    assert after.status_code == 201, after.text
    deleted = service.client.delete(f"/v1/{case.kind}/{after.json()['id']}", headers=alice.headers)
    assert deleted.status_code == 204 and service.store.list(case.kind) == []
