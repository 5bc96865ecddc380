"""A user's own Hugging Face model end to end through the service: upload the directory, train it on an
uploaded text corpus, download the result and load it with ``from_pretrained`` as it is.

The worker runs in this process (``execution.run_job``) against the same database and object store as the
API, so the test covers the real upload checks, the submit-time checks, the worker's extraction, the
engine and the published artifacts.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from jobs.states import JobState
from lbc_core.export import rebuild_model
from lbc_core.sparsity import NMPattern, is_nm_sparse
from lbc_core.sparsity.pattern import IN_OUT, to_groups
from tests.api.conftest import Service
from tests.hf_models import TINY_LLAMA, directory_files, save_tiny_model, zip_of
from worker import execution
from worker.context import build_context

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"
TINY_GPT2 = {
    "model_type": "gpt2",
    "vocab_size": 64,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 64,
}


@pytest.mark.parametrize(
    ("config", "layout"), [(TINY_LLAMA, "out_in"), (TINY_GPT2, IN_OUT)], ids=["llama", "gpt2-conv1d"]
)
def test_an_uploaded_model_trains_on_uploaded_text_and_comes_back_loadable_with_exact_nm(
    service: Service, tmp_path: Path, config: dict[str, Any], layout: str
) -> None:
    alice = service.caller()
    archive = zip_of(directory_files(save_tiny_model(tmp_path / "upload", config)), prefix="my-model/")
    model = service.client.post(
        "/v1/hf-models", files={"file": ("my-model.zip", archive, "application/zip")}, headers=alice.headers
    )
    assert model.status_code == 201, model.text
    corpus = service.client.post(
        "/v1/datasets",
        files={"file": ("shakespeare.txt", SHAKESPEARE.read_bytes()[:20_000], "text/plain")},
        data={"format": "text"},
        headers=alice.headers,
    )
    assert corpus.status_code == 201, corpus.text
    spec = {
        "task": "causal-lm",
        "model": {"source": "huggingface", "path": model.json()["id"]},
        "dataset": {"source": "text", "path": corpus.json()["id"], "block_size": 16},
        "sparsity": {"method": "lbc", "n": 2, "m": 4},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "device": "cpu"},
        "benchmark": {"enabled": False},
    }
    job = service.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]

    ctx = build_context(service.settings, worker_id="test-worker/1", send=lambda *args: None)
    try:
        assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED
    finally:
        ctx.close()
    result = service.client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()
    assert result["state"] == "succeeded", result
    assert result["result"]["primary_metric"]["name"] == "val_perplexity"

    def download(name: str) -> bytes:
        response = service.client.get(f"/v1/jobs/{job_id}/artifacts/{name}", headers=alice.headers)
        assert response.status_code == 200, (name, response.text)
        return response.content

    manifest = json.loads(download("manifest.json"))
    (tmp_path / "model.nm.safetensors").write_bytes(download("model.nm.safetensors"))
    with zipfile.ZipFile(io.BytesIO(download("hf_model.zip"))) as bundle:
        bundle.extractall(tmp_path / "out")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "hf_model").eval()

    layers = {layer["name"]: layer for layer in manifest["layers"]}
    assert layers and all(layer["layout"] == layout for layer in layers.values())
    pattern = NMPattern(2, 4)
    for name, module in loaded.named_modules():
        if name in layers:
            weight = module.weight.detach()
            assert is_nm_sparse(weight, pattern, layout), name
            # Exactly N kept per group along the reduction dimension (GPT-2's Conv1D: down the columns).
            assert int((to_groups(weight, pattern.m, layout) != 0).sum(dim=-1).max()) == pattern.n, name
    assert "lm_head" not in layers  # the LM head stays dense by default

    rebuilt = rebuild_model(manifest, tmp_path / "model.nm.safetensors")
    tokens = torch.randint(0, config["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=tokens).logits, rebuilt(input_ids=tokens).logits)
