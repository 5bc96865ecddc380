"""export.onnx through lbc_core.run: the graph takes what the run's task feeds the model.

Image classification is covered by ``lbc train`` (tests/cli/test_train_cli.py); here a causal LM from a
Hugging Face directory (a tiny GPT-2 built from a config, nothing downloaded) on real Shakespeare text,
whose inputs are token ids by keyword, without the key/value cache, with free batch and sequence axes.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest
import torch

import lbc_core.pipeline as pipeline
from lbc_core.data import DataConfig
from lbc_core.export import rebuild_model
from lbc_core.export.onnx_export import FP32_TOLERANCE
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig
from lbc_core.training import TrainConfig

transformers = pytest.importorskip("transformers")


def test_a_causal_lm_run_exports_an_onnx_graph_over_token_ids(tmp_path: Path, shakespeare: Path) -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=256, n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "upload")
    run_config = pipeline.RunConfig(
        model=pipeline.ModelConfig(source="huggingface", path=str(tmp_path / "upload")),
        data=DataConfig(source="text", path=str(shakespeare), block_size=32, limit=100),
        sparsity=SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1)),
        train=TrainConfig(epochs=1, batch_size=16, optimizer="adamw", lr=3e-3, device="cpu"),
        task="causal-lm",
        export=pipeline.ExportConfig(onnx=True),
    )

    result = pipeline.run(run_config, tmp_path / "run")

    assert result.summary["onnx"] == {
        "status": "exported",
        "files": {"model.onnx": "verified", "model.fp16.onnx": "verified"},
    }
    export = tmp_path / "run" / "export"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["onnx"]["inputs"] == {"input_ids": ["batch", "sequence"]}
    assert manifest["onnx"]["notes"] == []
    sparsified = {layer["name"] for layer in manifest["layers"]}
    entries = [e for e in manifest["onnx"]["variants"][0]["initializers"] if e["layer"] in sparsified]
    assert {e["layer"] for e in entries} == sparsified  # GPT-2's Conv1D layers, as Gemm weights [out, in]
    assert all(e["op"] == "Gemm" and e["pattern"] == "2:4" and e["compliant_24"] for e in entries)
    # Another batch and another length than the export saw, against the model rebuilt from the exports.
    model = rebuild_model(manifest, export / "model.nm.safetensors")
    ids = torch.randint(0, 256, (3, 20))
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input_ids": ids.numpy()})
    with torch.no_grad():
        expected = model(ids, use_cache=False).logits
    bound = FP32_TOLERANCE * max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=bound)
