"""The per-owner storage quota on uploads (``max_storage_bytes_per_owner``), through the HTTP API.

Uploads count with their stored size; one that would take its owner past the quota is a 413
``quota_exceeded`` naming the numbers, is cut off while it streams, and leaves nothing behind. Deleting
makes room again, other owners are not affected, and two uploads racing for the last bytes cannot both win.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from tests.api.conftest import AppFactory, Caller, Service

QUOTA = 64 * 1024


def checkpoint(size: int) -> bytes:
    """A valid safetensors checkpoint of about ``size`` bytes."""
    return save({"w": np.zeros(size // 4, np.float32)})


def upload(service: Service, caller: Caller, data: bytes, kind: str = "checkpoints") -> Any:
    fields = {"format": "npz"} if kind == "datasets" else {}
    return service.client.post(
        f"/v1/{kind}",
        files={"file": ("f.bin", data, "application/octet-stream")},
        data=fields,
        headers=caller.headers,
    )


def assert_quota_error(response: Any, used: int) -> dict[str, Any]:
    assert response.status_code == 413, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert f"{used} of {QUOTA} bytes" in error["message"]
    assert error["details"]["used_bytes"] == used and error["details"]["limit_bytes"] == QUOTA
    return error


def test_uploads_past_the_quota_are_refused_until_space_is_freed(app_factory: AppFactory) -> None:
    service = app_factory(max_storage_bytes_per_owner=QUOTA)
    alice, bob = service.caller("alice"), service.caller("bob")
    first = upload(service, alice, checkpoint(40_000))
    assert first.status_code == 201, first.text
    used = first.json()["size"]

    # Cut off while streaming: more than the space left, although far below max_upload_bytes.
    error = assert_quota_error(upload(service, alice, checkpoint(40_000)), used)
    assert error["details"]["remaining_bytes"] == QUOTA - used
    assert len(service.store.list("checkpoints")) == 1
    assert list((service.settings.home / "tmp").iterdir()) == []
    # Datasets and checkpoints share the one quota.
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((120, 16, 16), np.uint8), y=np.arange(120) % 3)
    assert_quota_error(upload(service, alice, buffer.getvalue(), "datasets"), used)
    assert service.store.list("datasets") == []

    # What still fits is taken; another owner has a quota of their own.
    assert upload(service, alice, checkpoint(8_000)).status_code == 201
    assert upload(service, bob, checkpoint(40_000)).status_code == 201

    deleted = service.client.delete(f"/v1/checkpoints/{first.json()['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    assert upload(service, alice, checkpoint(40_000)).status_code == 201


def test_zero_means_unlimited(app_factory: AppFactory) -> None:
    service = app_factory(max_storage_bytes_per_owner=0)
    alice = service.caller()
    for _ in range(3):
        assert upload(service, alice, checkpoint(40_000)).status_code == 201


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_uploads_racing_for_the_last_bytes_cannot_both_be_stored(
    app_factory: AppFactory, backend: str
) -> None:
    """Each fits alone, not both. Whether both pass the check before streaming or not, the second check,
    under the owner's lock just before the insert, lets exactly one through."""
    service = app_factory(backend, max_storage_bytes_per_owner=QUOTA)
    alice = service.caller()
    data = checkpoint(40_000)
    barrier = threading.Barrier(2)
    results: list[int] = []

    def send() -> None:
        barrier.wait()
        results.append(upload(service, alice, data).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [201, 413]
    stored = service.client.get("/v1/checkpoints", headers=alice.headers).json()["items"]
    assert len(stored) == 1 and len(service.store.list("checkpoints")) == 1
    assert list((service.settings.home / "tmp").iterdir()) == []
