"""Real digits through the whole pipeline: the default lr trains at batch 16, and a run that learnt nothing
says so in summary.json and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbc_core.data import DataConfig
from lbc_core.pipeline import ModelConfig, RunConfig, run
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig
from lbc_core.training import DID_NOT_LEARN, TrainConfig


def _config(epochs: int, **train: object) -> RunConfig:
    return RunConfig(
        model=ModelConfig("lenet5"),
        data=DataConfig(source="digits"),
        sparsity=SparsityConfig(
            method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, epochs / 2)
        ),
        train=TrainConfig(epochs=epochs, device="cpu", **train),  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_the_minimal_spec_at_batch_16_learns_with_the_default_lr(tmp_path: Path) -> None:
    # The spec: every field default but batch_size 16. With a fixed lr 0.1 it stayed at chance (0.103).
    result = run(_config(10, batch_size=16), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["val_accuracy"] > 0.9
    assert summary["lr"] == pytest.approx(0.0125)
    assert summary["lr_rule"].startswith("default: 0.1 x min(batch_size, 128) / 128")
    assert summary["warnings"] == [] and result.summary["warnings"] == []
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["lr"] == pytest.approx(0.0125) and metrics["history"][0]["lr"] <= 0.0125


def test_a_run_that_learnt_nothing_carries_the_warning_into_summary_and_manifest(tmp_path: Path) -> None:
    result = run(_config(2, batch_size=128, lr=1e-6), tmp_path)
    assert result.status == "succeeded"  # it ran; the warning says the model is useless
    summary = json.loads((tmp_path / "summary.json").read_text())
    (warning,) = summary["warnings"]
    assert warning["code"] == DID_NOT_LEARN
    assert "chance level for 10 classes" in warning["message"]
    assert "try a higher train.lr (e.g. 0.1" in warning["message"]
    assert summary["lr"] == 1e-6 and summary["lr_rule"] == "given"
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["metrics"]["warnings"] == summary["warnings"]
    assert manifest["metrics"]["lr"] == 1e-6
