"""Hugging Face model uploads: a real `save_pretrained` directory archived, checked without torch, stored,
owned, counted in the quota, named by a job spec (model.source huggingface) and checked against its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.sizing import format_count
from tests.api.conftest import Caller, Service, digits_spec
from tests.hf_models import TINY_BERT, directory_files, hand_made_model, save_tiny_model, tar_of, zip_of

TINY_VIT = {
    "model_type": "vit",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 8,
    "patch_size": 4,
    "num_channels": 1,
    "id2label": {str(i): str(i) for i in range(10)},
    "label2id": {str(i): i for i in range(10)},
}


def upload_model(service: Service, caller: Caller, filename: str, data: bytes, **fields: str) -> Any:
    return service.client.post(
        "/v1/hf-models",
        files={"file": (filename, data, "application/octet-stream")},
        data=fields,
        headers=caller.headers,
    )


def _uploaded(service: Service, caller: Caller, directory: Path, *, tar: bool = False) -> dict[str, Any]:
    files = directory_files(directory)
    data = tar_of(files, prefix="my-model/") if tar else zip_of(files, prefix="my-model/")
    response = upload_model(service, caller, "my-model.tar.gz" if tar else "my-model.zip", data)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def hf_spec(model_id: str, **overrides: Any) -> dict[str, Any]:
    return digits_spec(model={"source": "huggingface", "path": model_id}, **overrides)


def test_a_saved_llama_upload_records_its_family_tasks_and_real_parameter_count(
    service: Service, tmp_path: Path
) -> None:
    import transformers

    alice, bob = service.caller("alice"), service.caller("bob")
    directory = save_tiny_model(tmp_path / "llama")
    (directory / "README.md").write_text("# a model card")
    model = _uploaded(service, alice, directory)

    summary = model["summary"]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(directory)
    assert summary["parameter_count"] == sum(p.numel() for p in loaded.parameters())
    assert summary["model_type"] == "llama"
    assert summary["tasks"] == ["causal-lm", "sequence-classification"]
    assert summary["root"] == "my-model"
    assert summary["ignored"] == ["my-model/README.md"]
    assert "model.safetensors" in summary["files"] and "tokenizer.json" in summary["files"]
    assert model["format"] == "huggingface" and model["filename"].endswith(".zip")
    assert model["size"] > summary["total_bytes"] - 1_000_000

    listed = service.client.get("/v1/hf-models", headers=alice.headers).json()["items"]
    assert [m["id"] for m in listed] == [model["id"]]
    assert service.client.get(f"/v1/hf-models/{model['id']}", headers=bob.headers).status_code == 404
    assert service.client.get("/v1/hf-models", headers=bob.headers).json()["items"] == []


def test_sharded_weights_in_a_tar_are_accepted_and_their_index_checked(
    service: Service, tmp_path: Path
) -> None:
    directory = save_tiny_model(tmp_path / "bert", TINY_BERT, shard_bytes=25_000)
    model = _uploaded(service, service.caller(), directory, tar=True)
    assert model["summary"]["weights"] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert model["summary"]["num_labels"] == 2


def test_stripped_config_keys_are_listed(service: Service) -> None:
    import json

    from tests.hf_models import TINY_LLAMA

    config = json.dumps(
        {**TINY_LLAMA, "_name_or_path": "/home/me", "attn_implementation": "flash_attention_2"}
    )
    files = hand_made_model(**{"config.json": config.encode()})
    response = upload_model(service, service.caller(), "m.zip", zip_of(files))
    assert response.status_code == 201, response.text
    assert response.json()["summary"]["stripped_config_keys"] == ["_name_or_path", "attn_implementation"]


def test_a_model_that_cannot_do_the_task_is_a_422_naming_model_and_task(
    service: Service, tmp_path: Path
) -> None:
    alice = service.caller()
    llama = _uploaded(service, alice, save_tiny_model(tmp_path / "llama"))
    response = service.client.post("/v1/jobs", json=hf_spec(llama["id"]), headers=alice.headers)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert details == [
        {
            "field": "model.path",
            "message": f"model {llama['id']} is a llama model, which cannot do task 'image-classification'; "
            "it supports: causal-lm, sequence-classification",
        }
    ]


def test_a_vision_model_upload_is_accepted_by_submit_and_blocks_its_deletion(
    service: Service, tmp_path: Path
) -> None:
    alice = service.caller()
    vit = _uploaded(service, alice, save_tiny_model(tmp_path / "vit", TINY_VIT))
    job = service.submit(alice, hf_spec(vit["id"]))
    assert job["spec"]["model"] == {"source": "huggingface", "path": vit["id"]} | {
        k: v for k, v in job["spec"]["model"].items() if k not in ("source", "path")
    }
    conflict = service.client.delete(f"/v1/hf-models/{vit['id']}", headers=alice.headers)
    assert conflict.status_code == 409 and conflict.json()["error"]["details"]["jobs"] == [job["id"]]


@pytest.mark.parametrize(
    ("model", "field", "message"),
    [
        ({"source": "huggingface"}, "model.path", "required for this source"),
        (
            {"source": "huggingface", "path": "x", "architecture": "mlp"},
            "model.architecture",
            "is for source catalog",
        ),
        (
            {"source": "catalog", "path": "x", "architecture": "mlp"},
            "model.path",
            "is for source huggingface",
        ),
        ({"source": "catalog"}, "model.architecture", "is required for source catalog"),
    ],
)
def test_the_model_source_fields_must_agree(
    service: Service, model: dict[str, Any], field: str, message: str
) -> None:
    response = service.client.post(
        "/v1/jobs", json=digits_spec(model=model), headers=service.caller().headers
    )
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(d["field"] == field and message in d["message"] for d in details), details


def test_another_owners_model_or_a_checkpoint_id_does_not_exist_for_the_spec(service: Service) -> None:
    alice, bob = service.caller("alice"), service.caller("bob")
    response = upload_model(service, bob, "m.zip", zip_of(hand_made_model()))
    bobs = response.json()["id"]
    for model_id in (bobs, "0" * 32):
        refused = service.client.post("/v1/jobs", json=hf_spec(model_id), headers=alice.headers)
        assert refused.status_code == 422
        assert refused.json()["error"]["details"] == [
            {"field": "model.path", "message": f"model {model_id} does not exist"}
        ]


def test_model_uploads_count_against_the_storage_quota(app_factory: Any) -> None:
    data = zip_of(hand_made_model())
    service = app_factory(max_storage_bytes_per_owner=len(data) * 3 // 2)
    alice = service.caller()
    assert upload_model(service, alice, "a.zip", data).status_code == 201
    over = upload_model(service, alice, "b.zip", data)
    assert over.status_code == 413 and over.json()["error"]["code"] == "quota_exceeded"


def test_the_memory_estimate_of_a_job_uses_the_uploads_real_parameter_count(
    app_factory: Any, tmp_path: Path
) -> None:
    service = app_factory(max_job_memory_bytes=1 << 20)
    alice = service.caller()
    vit = _uploaded(service, alice, save_tiny_model(tmp_path / "vit", TINY_VIT))
    response = service.client.post("/v1/jobs", json=hf_spec(vit["id"]), headers=alice.headers)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    count = vit["summary"]["parameter_count"]
    assert detail["field"] == "model" and "LBC_MAX_JOB_MEMORY_BYTES" in detail["message"]
    assert f"({format_count(count)} parameters: weights " in detail["message"]
