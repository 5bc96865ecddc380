"""benchmarks/speedup_report.py end to end on CPU: a random 2:4 zoo model, and an export directory."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from lbc_core.export import export_all
from lbc_core.models import build_model
from lbc_core.sparsity import SparsityConfig, build_sparsifier

# A CPU without the native N:M kernel (test_report_cpu_nm.py covers the CPU that has it).
pytestmark = pytest.mark.usefixtures("no_native_kernel")

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "speedup_report.py"
FAST = ["--warmup", "0", "--repeats", "2", "--batch-sizes", "1,2", "--device", "cpu", "--threads", "1"]


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)


def test_script_prints_the_table_for_a_random_2_4_model(monkeypatch, capsys, tmp_path: Path) -> None:
    out = tmp_path / "speedup_report.json"
    _run(
        monkeypatch,
        "--arch",
        "mlp",
        "--arch-args",
        '{"input_features": 64, "hidden_dim": 64}',
        *FAST,
        "--json",
        str(out),
    )
    printed = capsys.readouterr().out
    assert "layer" in printed and "GEMM MxNxK" in printed
    assert "No sparse kernel exists for this device (cpu)" in printed
    assert json.loads(out.read_text())["model"]["name"] == "mlp"


def test_script_reads_an_export_directory(monkeypatch, capsys, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, in_channels=1)
    sparsifier = build_sparsifier(SparsityConfig(method="asp"))
    sparsifier.prepare(model)
    export_all(
        model,
        sparsifier.finalize(),
        tmp_path / "export",
        architecture="lenet5",
        architecture_args={"num_classes": 10, "in_channels": 1},
        metrics={"val_accuracy": 0.5},
        data={"input_shape": [1, 16, 16]},
        pattern="2:4",
    )
    html, svg = tmp_path / "report.html", tmp_path / "chart.svg"
    _run(monkeypatch, "--export-dir", str(tmp_path / "export"), *FAST, "--html", str(html), "--svg", str(svg))
    printed = capsys.readouterr().out
    assert "for lenet5, pattern 2:4, input (1, 16, 16)" in printed
    assert "accuracy given: 0.5000" in printed
    assert "features.3" in printed and "classifier.1" in printed
    assert html.read_text().startswith("<!DOCTYPE html>") and svg.read_text().startswith("<svg")
