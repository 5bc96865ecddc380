"""A causal-LM run end to end through lbc_core.run: real Shakespeare text, LBC 2:4, verified export and a
summary whose primary metric is validation perplexity.

No catalog architecture reads token ids yet (language models come from the model source), so the test
stands the tiny LM in for the catalog's builder; everything else is the real pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import lbc_core.pipeline as pipeline
from lbc_core.data import DataConfig
from lbc_core.models import ArchitectureInfo
from lbc_core.models.causal_lm import TinyCausalLM
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig
from lbc_core.training import TrainConfig

TINY_LM = ArchitectureInfo(
    "tiny_lm",
    "a tiny causal LM",
    MappingProxyType({"vocab_size": 256, "max_positions": 128, "embed_dim": 32, "depth": 1, "num_heads": 2}),
    (0, 0),
)


def test_a_causal_lm_run_reports_perplexity_and_exports_verified_2_to_4(
    tmp_path: Path, shakespeare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "get_architecture", lambda name: TINY_LM)
    built: list[dict[str, Any]] = []

    def build(name: str, **args: Any) -> TinyCausalLM:
        built.append(args)
        return TinyCausalLM(**{**TINY_LM.defaults, **args})

    monkeypatch.setattr(pipeline, "build_model", build)
    config = pipeline.RunConfig(
        model=pipeline.ModelConfig("tiny_lm"),
        data=DataConfig(source="text", path=str(shakespeare), block_size=32, limit=200),
        sparsity=SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1)),
        train=TrainConfig(epochs=2, batch_size=16, optimizer="adamw", lr=3e-3, device="cpu"),
        task="causal-lm",
    )
    result = pipeline.run(config, tmp_path)
    assert result.status == "succeeded"
    # The data fills in the vocabulary (UTF-8 bytes) and the block size; no num_classes for a language model.
    assert built == [{"vocab_size": 256, "max_positions": 32}]
    summary = result.summary
    assert summary["task"] == "causal-lm"
    assert summary["primary_metric"] == {"name": "val_perplexity", "higher_is_better": False}
    assert 1 < summary["val_perplexity"] < 256 and "val_accuracy" not in summary
    assert summary["verified_nm"] and summary["sparsified_layers"] > 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["data"]["tokenizer"] == "utf-8 bytes" and manifest["data"]["block_size"] == 32
    assert (manifest["data"]["train_size"], manifest["data"]["val_size"]) == (160, 40)
    assert manifest["metrics"]["val_perplexity"] == summary["val_perplexity"]
