"""A causal-LM run end to end through lbc_core.run: real Shakespeare text, LBC 2:4 on a tiny GPT-2 from a
Hugging Face directory (built by transformers from a config, nothing downloaded), verified export, a summary
whose primary metric is validation perplexity, and a save_pretrained directory that from_pretrained loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

import lbc_core.pipeline as pipeline
from lbc_core.data import DataConfig
from lbc_core.export import rebuild_model
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig
from lbc_core.training import TrainConfig


def test_a_causal_lm_run_reports_perplexity_and_exports_verified_2_to_4(
    tmp_path: Path, shakespeare: Path
) -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=256, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "upload")
    config = pipeline.RunConfig(
        model=pipeline.ModelConfig(source="huggingface", path=str(tmp_path / "upload")),
        data=DataConfig(source="text", path=str(shakespeare), block_size=32, limit=200),
        sparsity=SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1)),
        train=TrainConfig(epochs=2, batch_size=16, optimizer="adamw", lr=3e-3, device="cpu"),
        task="causal-lm",
    )
    result = pipeline.run(config, tmp_path / "run")
    assert result.status == "succeeded"
    summary = result.summary
    assert summary["task"] == "causal-lm"
    assert summary["primary_metric"] == {"name": "val_perplexity", "higher_is_better": False}
    assert 1 < summary["val_perplexity"] < 256 and "val_accuracy" not in summary
    assert summary["verified_nm"] and summary["sparsified_layers"] > 0
    manifest = json.loads((tmp_path / "run" / "export" / "manifest.json").read_text())
    assert manifest["data"]["tokenizer"] == "utf-8 bytes" and manifest["data"]["block_size"] == 32
    assert (manifest["data"]["train_size"], manifest["data"]["val_size"]) == (160, 40)
    assert manifest["metrics"]["val_perplexity"] == summary["val_perplexity"]
    # GPT-2's Conv1D layers are sparsified along their input dimension; the tied LM head stays dense.
    assert {layer["layout"] for layer in manifest["layers"]} == {"in_out"}
    assert "lm_head" in {skipped["name"] for skipped in manifest["skipped"]}
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "run" / "export" / "hf_model"
    ).eval()
    rebuilt = rebuild_model(manifest, tmp_path / "run" / "export" / "model.nm.safetensors")
    tokens = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, rebuilt(tokens).logits)
