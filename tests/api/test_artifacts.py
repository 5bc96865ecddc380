"""Artifacts: listed with size and sha256, streamed from the store with ETag, Range and 304/416."""

from __future__ import annotations

import hashlib

import pytest

from tests.api.conftest import Service

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def artifact(service: Service) -> tuple[Service, dict[str, str], str]:
    alice = service.caller()
    job = service.submit(alice)
    service.worker_runs(job["id"], finish="succeeded")
    service.add_artifact(job["id"], "sparse.safetensors", DATA)
    service.add_artifact(job["id"], "report.json", b'{"speedup": 1.4}', "application/json")
    return service, alice.headers, job["id"]


def test_artifacts_are_listed_with_size_digest_and_url(artifact: tuple[Service, dict[str, str], str]) -> None:
    service, headers, job_id = artifact
    items = service.client.get(f"/v1/jobs/{job_id}/artifacts", headers=headers).json()["items"]
    assert [item["name"] for item in items] == ["report.json", "sparse.safetensors"]
    sparse = items[1]
    assert sparse["size"] == len(DATA)
    assert sparse["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert sparse["url"] == f"/v1/jobs/{job_id}/artifacts/sparse.safetensors"
    assert items[0]["content_type"] == "application/json"


def test_download_whole_with_etag_and_revalidate(artifact: tuple[Service, dict[str, str], str]) -> None:
    service, headers, job_id = artifact
    url = f"/v1/jobs/{job_id}/artifacts/sparse.safetensors"
    full = service.client.get(url, headers=headers)
    assert full.status_code == 200
    assert full.content == DATA
    etag = f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert full.headers["ETag"] == etag
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Length"] == str(len(DATA))
    assert full.headers["Content-Disposition"].startswith("attachment")
    assert "sparse.safetensors" in full.headers["Content-Disposition"]

    cached = service.client.get(url, headers={**headers, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == etag
    weak_list = service.client.get(url, headers={**headers, "If-None-Match": f'"other", W/{etag}'})
    assert weak_list.status_code == 304
    stale = service.client.get(url, headers={**headers, "If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.content == DATA


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=10200-99999", 10200, 10239),
    ],
)
def test_ranges_are_206_with_content_range(
    artifact: tuple[Service, dict[str, str], str], range_header: str, start: int, end: int
) -> None:
    service, headers, job_id = artifact
    response = service.client.get(
        f"/v1/jobs/{job_id}/artifacts/sparse.safetensors", headers={**headers, "Range": range_header}
    )
    assert response.status_code == 206
    assert response.content == DATA[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.headers["Content-Length"] == str(end - start + 1)


def test_unsatisfiable_ranges_are_416_and_other_versions_get_everything(
    artifact: tuple[Service, dict[str, str], str],
) -> None:
    service, headers, job_id = artifact
    url = f"/v1/jobs/{job_id}/artifacts/sparse.safetensors"
    for bad in ("bytes=10240-", "bytes=-0"):
        response = service.client.get(url, headers={**headers, "Range": bad})
        assert response.status_code == 416
        assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"
        assert response.json()["error"]["code"] == "range_not_satisfiable"
    for ignored in ("bytes=5-2", "items=0-1", "bytes=0-1,5-6"):
        assert service.client.get(url, headers={**headers, "Range": ignored}).status_code == 200
    mismatched = service.client.get(url, headers={**headers, "Range": "bytes=0-9", "If-Range": '"old"'})
    assert mismatched.status_code == 200 and mismatched.content == DATA


@pytest.mark.parametrize(
    ("range_header", "status", "start"),
    [
        ("bytes=" + "9" * 5000 + "-", 416, None),  # past the end, not a 500 from int()'s digit limit
        ("bytes=-" + "9" * 5000, 206, 0),  # a suffix longer than the artifact: all of it
        ("bytes=100-" + "9" * 5000, 206, 100),  # to the end
        ("bytes=" + "0" * 5000 + "7-", 206, 7),  # leading zeros are still a small position
    ],
)
def test_byte_positions_of_thousands_of_digits_are_positions_not_a_500(
    artifact: tuple[Service, dict[str, str], str], range_header: str, status: int, start: int | None
) -> None:
    service, headers, job_id = artifact
    response = service.client.get(
        f"/v1/jobs/{job_id}/artifacts/sparse.safetensors", headers={**headers, "Range": range_header}
    )
    assert response.status_code == status, response.text
    if start is None:
        assert response.json()["error"]["code"] == "range_not_satisfiable"
    else:
        assert response.content == DATA[start:]
        assert response.headers["Content-Range"] == f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"


def test_missing_artifacts_and_other_owners_are_404(artifact: tuple[Service, dict[str, str], str]) -> None:
    service, headers, job_id = artifact
    missing = service.client.get(f"/v1/jobs/{job_id}/artifacts/nope.bin", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert missing.json()["error"]["message"] == f"artifact 'nope.bin' not found for job {job_id}"
    bob = service.caller("bob")
    assert service.client.get(f"/v1/jobs/{job_id}/artifacts", headers=bob.headers).status_code == 404
    stolen = service.client.get(f"/v1/jobs/{job_id}/artifacts/sparse.safetensors", headers=bob.headers)
    assert stolen.status_code == 404 and DATA[:20] not in stolen.content
    # Another owner's job is missing as a whole: nothing says which artifacts it has.
    assert stolen.json()["error"]["message"] == f"job {job_id} not found"
    gone = service.client.get("/v1/jobs/0123456789abcdef/artifacts/sparse.safetensors", headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]["message"] == "job 0123456789abcdef not found"


def test_head_answers_what_get_would_without_the_body(artifact: tuple[Service, dict[str, str], str]) -> None:
    # `curl -I` and download managers ask HEAD first; it was a 405 (RFC 9110: HEAD wherever GET).
    service, headers, job_id = artifact
    url = f"/v1/jobs/{job_id}/artifacts/sparse.safetensors"
    whole = service.client.head(url, headers=headers)
    assert whole.status_code == 200 and whole.content == b""
    got = service.client.get(url, headers=headers)
    for name in ("ETag", "Content-Length", "Content-Type", "Content-Disposition", "Accept-Ranges"):
        assert whole.headers[name] == got.headers[name], name
    part = service.client.head(url, headers={**headers, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.headers["Content-Range"] == f"bytes 0-99/{len(DATA)}"
    assert part.headers["Content-Length"] == "100" and part.content == b""
    cached = service.client.head(url, headers={**headers, "If-None-Match": got.headers["ETag"]})
    assert cached.status_code == 304
    assert service.client.head(url, headers=service.caller("bob").headers).status_code == 404
    assert service.client.head(url).status_code == 401
    schema = service.client.get("/openapi.json").json()
    assert set(schema["paths"]["/v1/jobs/{job_id}/artifacts/{name}"]) == {"get"}  # documented once, as GET
