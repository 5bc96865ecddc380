"""Text datasets and tokenizers are uploads like the others: validated as the engine reads them, stored
with the suffix that tells their layout, and refused with a 422 naming the line, column or problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Caller, Service, digits_spec
from tests.hf_models import TINY_BERT, directory_files, save_tiny_model, zip_of

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def _model(
    service: Service, caller: Caller, directory: Path, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A tiny Hugging Face model (default Llama) uploaded by ``caller``: text tasks need a model that reads
    token ids, which catalog architectures do not."""
    data = zip_of(directory_files(save_tiny_model(directory, config)))
    response = service.client.post(
        "/v1/hf-models",
        files={"file": ("model.zip", data, "application/octet-stream")},
        headers=caller.headers,
    )
    assert response.status_code == 201, response.text
    return {"source": "huggingface", "path": response.json()["id"]}


def _upload(service: Service, caller: Caller, filename: str, data: bytes, fmt: str) -> Any:
    return service.client.post(
        "/v1/datasets",
        files={"file": (filename, data, "application/octet-stream")},
        data={"format": fmt},
        headers=caller.headers,
    )


def test_the_real_shakespeare_corpus_uploads_and_feeds_a_causal_lm_job(
    service: Service, tmp_path: Path
) -> None:
    alice = service.caller()
    model = _model(service, alice, tmp_path / "llama")
    corpus = SHAKESPEARE.read_bytes()
    response = _upload(service, alice, "shakespeare.txt", corpus, "text")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["filename"] == "shakespeare.txt"
    assert dataset["summary"] == {"layout": "plain", "characters": 1_115_394, "lines": 40_001}
    spec = digits_spec(
        model=model, dataset={"source": "text", "path": dataset["id"], "block_size": 64}, task="causal-lm"
    )
    job = service.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert job.status_code == 201, job.text
    stored = service.client.get(f"/v1/jobs/{job.json()['id']}", headers=alice.headers).json()["spec"]
    # The pretrained model's fine-tuning defaults are filled in and recorded with the job.
    assert (stored["train"]["optimizer"], stored["train"]["lr"], stored["train"]["warmup_epochs"]) == (
        "adamw",
        5e-5,
        0.2,
    )

    as_images = digits_spec(dataset={"source": "npz", "path": dataset["id"]})  # a catalog image classifier
    details = service.client.post("/v1/jobs", json=as_images, headers=alice.headers).json()["error"][
        "details"
    ]
    assert details == [
        {"field": "dataset.path", "message": f"dataset {dataset['id']} is a text upload, not npz"}
    ]


def test_labeled_jsonl_and_a_tokenizer_upload_feed_a_sequence_classification_job(
    service: Service, tmp_path: Path
) -> None:
    alice = service.caller()
    rows = [{"text": f"line {i}", "label": "odd" if i % 2 else "even"} for i in range(10)]
    data = "\n".join(json.dumps(row) for row in rows).encode()
    labeled = _upload(service, alice, "lines.data", data, "labeled-text")
    assert labeled.status_code == 201, labeled.text
    assert labeled.json()["filename"] == "lines.data.jsonl"  # the layout, recorded in the stored name
    assert labeled.json()["summary"] == {
        "layout": "jsonl",
        "samples": 10,
        "num_classes": 2,
        "classes": ["even", "odd"],
        "class_counts": [5, 5],
    }
    tokenizer = {
        "version": "1.0",
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "line": 1}, "unk_token": "[UNK]"},
    }
    uploaded = _upload(service, alice, "tokenizer.json", json.dumps(tokenizer).encode(), "tokenizer")
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["summary"] == {"model": "WordLevel", "vocab_size": 2, "added_tokens": 0}

    model = _model(service, alice, tmp_path / "bert", TINY_BERT)
    spec = digits_spec(
        model=model,
        task="sequence-classification",
        dataset={"source": "labeled-text", "path": labeled.json()["id"], "tokenizer": uploaded.json()["id"]},
    )
    submitted = service.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert submitted.status_code == 201, submitted.text
    swapped = digits_spec(
        model=model,
        dataset={"source": "labeled-text", "path": labeled.json()["id"], "tokenizer": labeled.json()["id"]},
    )
    details = service.client.post("/v1/jobs", json=swapped, headers=alice.headers).json()["error"]["details"]
    assert details == [
        {
            "field": "dataset.tokenizer",
            "message": f"dataset {labeled.json()['id']} is a labeled-text upload, not tokenizer",
        }
    ]


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"caf\xe9 au lait\n", "text", "not UTF-8 text (invalid byte at line 1, offset 3)"),
        (b"\n  \n", "text", "the corpus is empty"),
        (b'{"text": "a"}\n{"body": "b"}\n', "text", 'line 2 has no "text" field'),
        (b"PK\x03\x04" + b"\x00" * 40, "text", "one UTF-8 text file, not an archive (zip)"),
        (b"body,label\nx,1\n", "labeled-text", "the CSV header has no 'text' column (columns: body, label)"),
        (b'{"text": "x", "label": 1}\n{"text": "y"}\n', "labeled-text", 'line 2 has no "label" field'),
        (b"text,label\na,1\nb,1\n", "labeled-text", "classification needs at least 2 classes"),
        (b"\x80PK not json", "tokenizer", "the tokenizer file is not valid JSON text"),
        (
            b'{"model": {"vocab": {}}}',
            "tokenizer",
            "the tokenizer file needs a 'model' object whose type is one of",
        ),
        (b'{"model": {"type": "Evil"}}', "tokenizer", "one of BPE, Unigram, WordLevel, WordPiece"),
        # Accepted before, then refused by the worker's tokenizers library when a job ran.
        (
            b'{"model": {"type": "BPE", "vocab": {"a": 0}}}',
            "tokenizer",
            "the tokenizer file: its BPE model lacks merges, without which the tokenizers library cannot read it",
        ),
        (
            b'{"model": {"type": "BPE", "vocab": {}, "merges": []}}',
            "tokenizer",
            "the tokenizer file: its BPE model has an empty vocabulary, so it encodes nothing",
        ),
    ],
)
def test_bad_text_uploads_are_422_naming_the_problem(
    service: Service, data: bytes, fmt: str, message: str
) -> None:
    response = _upload(service, service.caller(), "upload.bin", data, fmt)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["details"][0]["message"]
    assert service.store.list("datasets") == []


def test_a_text_task_with_an_image_source_is_422_naming_both(service: Service) -> None:
    spec = digits_spec(task="causal-lm", model={"source": "huggingface", "path": "0" * 32})
    response = service.client.post("/v1/jobs", json=spec, headers=service.caller().headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "field": "dataset.source",
            "message": "task causal-lm reads sources text, not 'digits' (which is for task image-classification)",
        }
    ]


def test_a_text_task_with_a_catalog_architecture_is_422_naming_the_task(service: Service) -> None:
    spec = digits_spec(task="causal-lm", dataset={"source": "text", "path": "0" * 32})
    response = service.client.post("/v1/jobs", json=spec, headers=service.caller().headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "field": "task",
            "message": "the catalog architectures do image-classification only; a causal-lm job needs a "
            "Hugging Face model (model.source: huggingface)",
        }
    ]
