"""Uploads that fit the spec one by one but not each other are refused at submit with a 422 naming the
field, where the worker used to fail the job: a Hugging Face model's vocabulary against the tokenizer
that will read its text, and ``dataset.val_size`` against the samples the upload holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.api.conftest import Caller, Service, digits_spec
from tests.api.test_hf_model_uploads import TINY_VIT  # 1 channel, 8x8
from tests.api.test_job_fit import no_jobs, post_job, problems
from tests.api.test_uploads import npz_bytes, upload
from tests.hf_models import TINY_BERT, TINY_LLAMA, directory_files, save_tiny_model, zip_of


def _model_without_tokenizer(
    service: Service, caller: Caller, directory: Path, config: dict[str, Any]
) -> str:
    files = directory_files(save_tiny_model(directory, config))
    del files["tokenizer.json"]  # the hardening walk's model: config and weights only
    response = upload(service, caller, "hf-models", "model.zip", zip_of(files))
    assert response.status_code == 201, response.text
    assert response.json()["summary"]["sizes"]["vocab"] == 64
    return str(response.json()["id"])


def _tokenizer(service: Service, caller: Caller, words: int) -> str:
    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(words - 1)}}
    body = {"version": "1.0", "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}}
    response = upload(
        service, caller, "datasets", "tokenizer.json", json.dumps(body).encode(), format="tokenizer"
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    ("config", "task", "fmt", "data"),
    [
        (TINY_LLAMA, "causal-lm", "text", b"to be or not to be, that is the question\n" * 40),
        (
            TINY_BERT,
            "sequence-classification",
            "labeled-text",
            "\n".join(json.dumps({"text": f"line {i}", "label": i % 2}) for i in range(10)).encode(),
        ),
    ],
    ids=["causal-lm", "sequence-classification"],
)
def test_text_a_models_vocabulary_cannot_read_is_422_on_the_tokenizer(
    service: Service, tmp_path: Path, config: dict[str, Any], task: str, fmt: str, data: bytes
) -> None:
    alice = service.caller()
    model = _model_without_tokenizer(service, alice, tmp_path / "model", config)
    dataset = upload(service, alice, "datasets", f"data.{fmt}", data, format=fmt).json()["id"]

    def spec(**dataset_fields: Any) -> dict[str, Any]:
        return digits_spec(
            task=task,
            model={"source": "huggingface", "path": model},
            dataset={"source": fmt, "path": dataset, **dataset_fields},
        )

    assert problems(post_job(service, alice, spec())) == {
        "dataset.tokenizer": (
            f"model {model} has vocab_size 64 and no tokenizer.json, so its text would be read as UTF-8 "
            "bytes (256 tokens); upload the model's tokenizer (lbc upload dataset --format tokenizer) and "
            "name it in dataset.tokenizer"
        )
    }
    too_big = _tokenizer(service, alice, 100)
    assert problems(post_job(service, alice, spec(tokenizer=too_big))) == {
        "dataset.tokenizer": f"tokenizer {too_big} has 100 tokens but model {model}'s vocab_size is 64; "
        "use the model's own tokenizer"
    }
    assert no_jobs(service, alice)
    fits = _tokenizer(service, alice, 64)
    accepted = post_job(service, alice, spec(tokenizer=fits))
    assert accepted.status_code == 201, accepted.text


def test_a_val_size_the_uploaded_data_cannot_leave_training_samples_for_is_422(service: Service) -> None:
    alice = service.caller()
    dataset = upload(service, alice, "datasets", "d.npz", npz_bytes(n=20), format="npz").json()["id"]

    def spec(**dataset_fields: Any) -> dict[str, Any]:
        return digits_spec(dataset={"source": "npz", "path": dataset, **dataset_fields})

    message = f"dataset {dataset}: must be in [1, 19] (the data has 20 samples), got 20"
    assert problems(post_job(service, alice, spec(val_size=20))) == {"dataset.val_size": message}
    # A limit above the sample count keeps them all: the same 20 samples reach the split.
    assert problems(post_job(service, alice, spec(val_size=20, limit=50))) == {"dataset.val_size": message}
    assert no_jobs(service, alice)
    for fitting in (spec(val_size=19), spec(val_size=20, val_path=dataset), spec(val_fraction=0.99)):
        response = post_job(service, alice, fitting)
        assert response.status_code == 201, response.text


def test_images_a_vision_models_config_cannot_read_are_422_naming_the_model(
    service: Service, tmp_path: Path
) -> None:
    alice = service.caller()
    grey = save_tiny_model(tmp_path / "grey", TINY_VIT)
    vit = upload(service, alice, "hf-models", "vit.zip", zip_of(directory_files(grey))).json()["id"]
    colour = save_tiny_model(tmp_path / "colour", {**TINY_VIT, "num_channels": 3})
    rgb = upload(service, alice, "hf-models", "rgb.zip", zip_of(directory_files(colour))).json()["id"]
    large = np.zeros((20, 16, 16), dtype=np.uint8)
    bigger = upload(service, alice, "datasets", "d.npz", npz_bytes(x=large), format="npz").json()["id"]

    def spec(model: str, **dataset: Any) -> dict[str, Any]:
        return digits_spec(model={"source": "huggingface", "path": model}, **dataset)

    assert problems(post_job(service, alice, spec(rgb))) == {
        "model.path": f"model {rgb}: the images have 1 channels but the model reads 3"
    }
    wrong_size = spec(vit, dataset={"source": "npz", "path": bigger})
    assert problems(post_job(service, alice, wrong_size)) == {
        "model.path": f"model {vit}: the images are 16x16 but the model reads 8x8 "
        "(dataset.image_size resizes them)"
    }
    assert no_jobs(service, alice)
    assert post_job(service, alice, spec(vit)).status_code == 201  # digits: 1x8x8
