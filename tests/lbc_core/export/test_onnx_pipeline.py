"""export.onnx through lbc_core.run: the graph takes what the run's task feeds the model.

Image classification is covered by ``lbc train`` (tests/cli/test_train_cli.py); here a causal LM on real
Shakespeare text, whose inputs are token ids by keyword. This model fixes its length while tracing
(``int(input_ids.shape[1])``), which the export finds out by varying the sequence length, and then gives
a graph with only the batch axis free.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import onnxruntime
import pytest
import torch
from safetensors.torch import load_file

import lbc_core.pipeline as pipeline
from lbc_core.data import DataConfig
from lbc_core.export.onnx_export import FP32_TOLERANCE
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


def test_a_causal_lm_run_exports_an_onnx_graph_over_token_ids(
    tmp_path: Path, shakespeare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No catalog architecture reads token ids yet: the tiny LM stands in for the catalog's builder.
    monkeypatch.setattr(pipeline, "get_architecture", lambda name: TINY_LM)
    monkeypatch.setattr(
        pipeline, "build_model", lambda name, **args: TinyCausalLM(**{**TINY_LM.defaults, **args})
    )
    config = pipeline.RunConfig(
        model=pipeline.ModelConfig("tiny_lm"),
        data=DataConfig(source="text", path=str(shakespeare), block_size=32, limit=100),
        sparsity=SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1)),
        train=TrainConfig(epochs=1, batch_size=16, optimizer="adamw", lr=3e-3, device="cpu"),
        task="causal-lm",
        export=pipeline.ExportConfig(onnx=True),
    )

    result = pipeline.run(config, tmp_path)

    assert result.summary["onnx"] == {
        "status": "exported",
        "files": {"model.onnx": "verified", "model.fp16.onnx": "verified"},
    }
    export = tmp_path / "export"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["onnx"]["inputs"] == {"input_ids": ["batch", 32]}
    (note,) = manifest["onnx"]["notes"]
    assert note.startswith("only the batch axis is free: with other free axes, does not match PyTorch: ")
    sparsified = {layer["name"] for layer in manifest["layers"]}
    entries = [e for e in manifest["onnx"]["variants"][0]["initializers"] if e["layer"] in sparsified]
    assert {e["layer"] for e in entries} == sparsified
    assert all(e["op"] == "Gemm" and e["pattern"] == "2:4" and e["compliant_24"] for e in entries)
    # Another batch size than the export saw, against the exported sparse checkpoint.
    model = TinyCausalLM(**{**TINY_LM.defaults, **manifest["architecture"]["args"]}).eval()
    model.load_state_dict(load_file(export / "model.safetensors"))
    ids = torch.randint(0, 256, (3, 32))
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input_ids": ids.numpy()})
    with torch.no_grad():
        expected = model(input_ids=ids)
    bound = FP32_TOLERANCE * max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=bound)
