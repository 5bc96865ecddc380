"""What the API adds for the dashboard: the mask view's data (``GET /v1/jobs/{id}/masks`` and
``/masks/{layer}``, read from the bit-packed safetensors artifact with numpy alone and downsampled for
big layers), and the list fields of the jobs table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save

from tests.api.conftest import Service


def masks_file(masks: dict[str, np.ndarray], fmt: str = "lbc.masks/1") -> bytes:
    """What ``lbc_core.export.save_masks`` writes: packbits per layer, shapes as JSON metadata."""
    packed = {name: np.packbits(mask.reshape(-1).astype(bool)) for name, mask in masks.items()}
    shapes = {name: list(mask.shape) for name, mask in masks.items()}
    return save(packed, metadata={"format": fmt, "bit_order": "big", "shapes": json.dumps(shapes)})


def two_of_four(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((rows, cols // 4, 4), dtype=bool)
    for r in range(rows):
        for g in range(cols // 4):
            mask[r, g, rng.choice(4, size=2, replace=False)] = True
    return mask.reshape(rows, cols)


@pytest.fixture
def job_with_masks(service: Service) -> tuple[Service, dict[str, str], str, dict[str, np.ndarray]]:
    alice = service.caller()
    job = service.submit(alice)
    service.worker_runs(job["id"], finish="succeeded")
    masks = {
        "fc.small": two_of_four(4, 8),
        "conv.big": two_of_four(300, 520, seed=1).reshape(300, 130, 2, 2),  # like a Conv2d weight
    }
    service.add_artifact(job["id"], "masks.safetensors", masks_file(masks))
    return service, alice.headers, job["id"], masks


def test_lists_the_masked_layers_with_their_shapes(
    job_with_masks: tuple[Service, dict[str, str], str, dict[str, np.ndarray]],
) -> None:
    service, headers, job_id, _ = job_with_masks
    response = service.client.get(f"/v1/jobs/{job_id}/masks", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [{"name": "fc.small", "shape": [4, 8]}, {"name": "conv.big", "shape": [300, 130, 2, 2]}]
    }


def test_a_small_layer_comes_back_one_cell_per_weight(
    job_with_masks: tuple[Service, dict[str, str], str, dict[str, np.ndarray]],
) -> None:
    service, headers, job_id, masks = job_with_masks
    grid = service.client.get(f"/v1/jobs/{job_id}/masks/fc.small", headers=headers).json()
    assert (grid["rows"], grid["cols"], grid["grid_rows"], grid["grid_cols"]) == (4, 8, 4, 8)
    assert (grid["row_scale"], grid["col_scale"]) == (1, 1)
    assert grid["cells"] == masks["fc.small"].astype(float).tolist()
    assert (grid["kept"], grid["total"], grid["density"]) == (16, 32, 0.5)


def test_a_big_layer_is_averaged_into_at_most_max_cells_per_axis(
    job_with_masks: tuple[Service, dict[str, str], str, dict[str, np.ndarray]],
) -> None:
    service, headers, job_id, masks = job_with_masks
    grid = service.client.get(f"/v1/jobs/{job_id}/masks/conv.big", headers=headers).json()
    flat = masks["conv.big"].reshape(300, 520).astype(float)
    assert (grid["rows"], grid["cols"]) == (300, 520)  # outputs x (in channels * kernel positions)
    assert (grid["row_scale"], grid["col_scale"]) == (3, 5)
    assert (grid["grid_rows"], grid["grid_cols"]) == (100, 104)
    cells = np.array(grid["cells"])
    assert cells.shape == (100, 104)
    assert cells[7, 11] == pytest.approx(flat[21:24, 55:60].mean(), abs=1e-4)
    assert cells[99, 103] == pytest.approx(flat[297:300, 515:520].mean(), abs=1e-4)
    assert grid["kept"] == int(flat.sum()) and grid["density"] == 0.5

    smaller = service.client.get(
        f"/v1/jobs/{job_id}/masks/conv.big", params={"max_cells": 64}, headers=headers
    ).json()
    assert (smaller["grid_rows"], smaller["grid_cols"]) == (60, 58)  # ceil(300/64)=5, ceil(520/64)=9
    # A partial last block is averaged over the weights it holds, not over a padded block.
    assert smaller["cells"][-1][-1] == pytest.approx(flat[295:300, 513:520].mean(), abs=1e-4)


def test_missing_layers_masks_and_other_owners_are_404(
    job_with_masks: tuple[Service, dict[str, str], str, dict[str, np.ndarray]],
) -> None:
    service, headers, job_id, _ = job_with_masks
    unknown = service.client.get(f"/v1/jobs/{job_id}/masks/nope", headers=headers)
    assert unknown.status_code == 404
    assert "fc.small" in unknown.json()["error"]["message"]

    bob = service.caller("bob")
    for path in ("masks", "masks/fc.small"):
        assert service.client.get(f"/v1/jobs/{job_id}/{path}", headers=bob.headers).status_code == 404
    assert service.client.get(f"/v1/jobs/{job_id}/masks").status_code == 401

    other = service.submit(bob)
    missing = service.client.get(f"/v1/jobs/{other['id']}/masks", headers=bob.headers)
    assert missing.status_code == 404
    assert "has no masks" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    "content",
    [
        b"not a safetensors file",
        b"\x04\x00\x00\x00\x00\x00\x00\x00{}}}",
        masks_file({"fc": np.ones((4, 4), dtype=bool)}, fmt="something else"),
    ],
)
def test_an_unreadable_masks_file_is_a_clear_422(service: Service, content: bytes) -> None:
    alice = service.caller()
    job = service.submit(alice)
    service.worker_runs(job["id"], finish="succeeded")
    service.add_artifact(job["id"], "masks.safetensors", content)
    response = service.client.get(f"/v1/jobs/{job['id']}/masks/fc", headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_artifact"


def test_the_mask_routes_are_documented_with_auth(service: Service) -> None:
    paths = service.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs/{job_id}/masks", "/v1/jobs/{job_id}/masks/{layer}"):
        operation = paths[path]["get"]
        assert operation["security"] == [{"ApiKey": []}]
        assert {"200", "401", "404"} <= set(operation["responses"])


def test_the_job_list_carries_what_the_dashboard_table_shows(service: Service) -> None:
    """Accuracy and density (the result) and the data source, without a request per job."""
    alice = service.caller()
    job = service.submit(alice)
    service.worker_runs(job["id"], finish="succeeded")
    item = service.client.get("/v1/jobs", headers=alice.headers).json()["items"][0]
    assert item["id"] == job["id"]
    assert item["result"] == {"accuracy": 0.9}
    assert item["dataset_source"] == "digits"
    detail = service.client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert detail["dataset_source"] == "digits" and detail["result"] == {"accuracy": 0.9}


def test_a_job_without_masks_is_a_404_that_says_why(service: Service) -> None:
    alice = service.caller()

    def why(job_id: str) -> str:
        response = service.client.get(f"/v1/jobs/{job_id}/masks", headers=alice.headers)
        assert response.status_code == 404, response.text
        message: str = response.json()["error"]["message"]
        assert message.startswith(f"job {job_id} has no masks: "), message
        return message

    queued = service.submit(alice)
    assert "not yet: the job is queued" in why(queued["id"])
    failed = service.submit(alice)
    service.worker_runs(failed["id"], finish="failed")
    assert "the job failed (spec_error)" in why(failed["id"])

    # A succeeded benchmark job was told its masks "are exported when a job succeeds".
    measured = service.submit(alice)
    service.worker_runs(measured["id"], finish="succeeded")
    service.add_artifact(measured["id"], "manifest.json", b"{}", "application/json")
    service.add_artifact(measured["id"], "model.nm.safetensors", b"weights")
    benchmark = service.client.post(
        "/v1/benchmarks", json={"source": {"job_id": measured["id"]}}, headers=alice.headers
    )
    assert benchmark.status_code == 201, benchmark.text
    service.worker_runs(benchmark.json()["id"], finish="succeeded")
    message = why(benchmark.json()["id"])
    assert f"a benchmark job measures a model and exports none; job {measured['id']} has them" in message
