"""LBC 2:4 on real MNIST digits: the exported, verified-N:M model must be accurate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lbc_core.data import DataConfig, load_data
from lbc_core.export import rebuild_model
from lbc_core.pipeline import ModelConfig, RunConfig, run
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig
from lbc_core.sparsity.pattern import to_groups
from lbc_core.training import TrainConfig, evaluate

MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist-t10k"


@pytest.mark.slow
def test_lbc_2of4_lenet_reaches_97_percent_on_mnist_with_the_exported_model(tmp_path: Path) -> None:
    data = DataConfig(source="mnist", path=str(MNIST), val_size=2000, seed=0, augment=True)
    config = RunConfig(
        model=ModelConfig("lenet5", {"width": 2.0}),
        data=data,
        sparsity=SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 4)),
        train=TrainConfig(epochs=8, batch_size=64, lr=0.05, warmup_epochs=1, weight_decay=5e-4, seed=0),
    )
    result = run(config, tmp_path)
    assert result.status == "succeeded"
    assert result.summary["verified_nm"]

    export = tmp_path / "export"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["verified"] and manifest["pattern"]["n"] == 2 and manifest["pattern"]["m"] == 4
    # The manifest records the score optimizer actually used: the weights' SGD, so scores are exact.
    assert manifest["extra"]["config"]["sparsity"]["score_optimizer"]["kind"] == "sgd"
    assert manifest["extra"]["config"]["sparsity"]["score_optimizer"]["momentum"] == 0.9
    assert manifest["extra"]["score_optimizer_exact"] is True

    # Evaluate the model a user would load: rebuilt from the compressed N:M file alone.
    model = rebuild_model(export / "manifest.json", export / "model.nm.safetensors")
    sparsified = [layer["name"] for layer in manifest["layers"]]
    assert len(sparsified) == 3
    for name in sparsified:
        weight = model.get_submodule(name).weight.detach()
        assert int((to_groups(weight, 4) != 0).sum(dim=1).max()) <= 2, name
    val = load_data(data).val
    assert val.y.shape[0] == 2000
    accuracy = evaluate(model, val, device=torch.device("cpu"))["accuracy"]
    assert accuracy >= 0.97, f"exported LBC 2:4 LeNet reached only {accuracy:.4f}"
    assert accuracy == pytest.approx(result.summary["val_accuracy"], abs=1e-9)
