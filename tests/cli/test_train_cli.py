"""The real ``lbc`` command: help, spec validation, a local run, and Ctrl-C followed by a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

TINY: dict[str, Any] = {
    "name": "tiny digits run",
    "model": {"architecture": "lenet5"},
    "dataset": {"source": "digits", "limit": 300},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu"},
}


def lbc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def lbc(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lbc_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "error"}


def write_spec(directory: Path, data: dict[str, Any], name: str = "job.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def with_train(**train: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(TINY))
    data["train"].update(train)
    return data


# -- help and validation (no torch needed) -------------------------------------------------------------------


def test_top_level_help_does_not_import_torch_or_pydantic() -> None:
    code = (
        "import sys\nfrom cli.main import build_parser\nbuild_parser().format_help()\n"
        "bad = [m for m in ('torch', 'lbc_core', 'worker', 'pydantic') if m in sys.modules]\nassert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=_env())
    result = lbc("--help")
    assert result.returncode == 0 and "train" in result.stdout and "spec" in result.stdout


def test_train_help_documents_every_spec_field() -> None:
    from jobs.spec import JobSpec

    result = lbc("train", "--help")
    assert result.returncode == 0
    for path in _leaf_paths(JobSpec):
        assert f"  {path}: " in result.stdout, path
    assert "train.epochs: integer; default 10" in result.stdout
    assert "lenet5: LeNet-5" in result.stdout  # the architecture catalog with its arguments
    assert "--no-resume" in result.stdout and "--device" in result.stdout


def test_train_help_lists_the_training_defaults_and_the_tasks_a_model_source_cannot_do() -> None:
    result = lbc("train", "--help")
    assert result.returncode == 0
    assert "causal-lm with a huggingface model: adamw, lr 5e-05" in result.stdout
    assert "(with sgd: lr 0.001, weight_decay 0)" in result.stdout
    assert (
        "causal-lm with a catalog model: refused, the catalog architectures do image-classification only; a "
        "causal-lm job needs a Hugging Face model (model.source: huggingface)"
    ) in " ".join(result.stdout.split())


def _leaf_paths(model: Any, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    paths = []
    for name, info in model.model_fields.items():
        options = [info.annotation, *getattr(info.annotation, "__args__", ())]
        nested = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
        paths.extend(_leaf_paths(nested, f"{prefix}{name}.") if nested else [f"{prefix}{name}"])
    return paths


def test_invalid_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TINY))
    data["sparsity"].update(n=4, m=4)
    data["train"]["epochz"] = 3
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "sparsity.n: " in result.stderr and "train.epochz: unknown field" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_spec_file_and_data_path_exit_2(tmp_path: Path) -> None:
    result = lbc("train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "file not found" in result.stderr
    data = {**TINY, "dataset": {"source": "mnist", "path": str(tmp_path / "no-mnist")}}
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "dataset.path: " in result.stderr and "does not exist" in result.stderr


def test_device_override_is_validated(tmp_path: Path) -> None:
    result = lbc("train", str(write_spec(tmp_path, TINY)), "--out", str(tmp_path / "out"), "--device", "gpu0")
    assert result.returncode == 2 and "train.device: " in result.stderr


def test_spec_check_and_schema(tmp_path: Path) -> None:
    good = write_spec(tmp_path, TINY, "good.yaml")
    bad = write_spec(tmp_path, {**TINY, "model": {"architecture": "lenet6"}}, "bad.yaml")
    result = lbc("spec", "check", str(good))
    assert result.returncode == 0 and "good.yaml: ok" in result.stdout
    result = lbc("spec", "check", str(good), str(bad))
    assert result.returncode == 2 and "model.architecture: unknown architecture 'lenet6'" in result.stderr
    result = lbc("spec", "check", "--print", str(good))
    assert json.loads(result.stdout.split("\n", 1)[1])["sparsity"]["schedule"]["t_f"] is None
    schema = json.loads(lbc("spec", "schema").stdout)
    assert schema["title"] == "JobSpec" and "model" in schema["required"]


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback() -> None:
    # `lbc spec schema | head -n 1` once head has exited: the read end of stdout is already closed, so
    # the first write fails with EPIPE (closing it before the start makes that deterministic).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            lbc_command("spec", "schema"),
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=_env(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    stderr = result.stderr.decode()
    assert result.returncode == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_examples_pass_spec_check() -> None:
    examples = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.yaml"))
    result = lbc("spec", "check", *examples)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == len(examples) >= 6


# -- running ------------------------------------------------------------------------------------------------


def test_train_runs_and_writes_the_exports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = lbc("train", str(write_spec(tmp_path, TINY)), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("model.safetensors", "masks.safetensors", "model.nm.safetensors", "manifest.json"):
        assert (out / "export" / name).is_file()
        assert f"export/{name}" in result.stdout
    assert "val accuracy" in result.stdout and "verified N:M   yes" in result.stdout
    assert "epoch 2/2" in result.stderr and "alive/group" in result.stderr and "val_acc" in result.stderr
    assert json.loads((out / "spec.json").read_text())["name"] == "tiny digits run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verified_nm"] is True and summary["pattern"] == "2:4"


@pytest.mark.parametrize(
    "sparsity",
    [{"method": "wanda", "calibration_samples": 64}, {"method": "lbc", "score_init": "wanda"}],
    ids=["wanda", "lbc-wanda-prior"],
)
def test_train_calibrates_wanda_and_ends_exactly_n_m(tmp_path: Path, sparsity: dict[str, Any]) -> None:
    from lbc_core.export.masks import load_masks
    from lbc_core.sparsity import NMPattern, is_nm_sparse

    data = json.loads(json.dumps(TINY))
    data["sparsity"].update(sparsity)
    out = tmp_path / "out"
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "verified N:M   yes" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == sparsity["method"] and summary["verified_nm"] is True
    masks = load_masks(out / "export" / "masks.safetensors")
    assert masks
    for name, mask in masks.items():
        assert is_nm_sparse(mask.float(), NMPattern(2, 4)) and int(mask.sum()) * 2 == mask.numel(), name
    config = json.loads((out / "export" / "manifest.json").read_text())["extra"]["config"]["sparsity"]
    assert config["score_init"] == sparsity.get("score_init", "uniform")
    assert config["calibration_samples"] == sparsity.get("calibration_samples", 128)


def test_export_onnx_writes_checked_onnx_files_the_manifest_describes(tmp_path: Path) -> None:
    import onnxruntime

    data = json.loads(json.dumps(TINY))
    data["export"] = {"onnx": True}
    out = tmp_path / "out"
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(out), "--quiet", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "  onnx           model.onnx verified, model.fp16.onnx verified" in result.stdout
    assert "export/model.onnx" in result.stdout and "export/model.fp16.onnx" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["onnx"] == {
        "status": "exported",
        "files": {"model.onnx": "verified", "model.fp16.onnx": "verified"},
    }
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert listed["model.onnx"]["role"] == "onnx" and listed["model.fp16.onnx"]["role"] == "onnx_fp16"
    sparsified = {layer["name"] for layer in manifest["layers"]}
    for variant in manifest["onnx"]["variants"]:
        entries = {entry["layer"]: entry for entry in variant["initializers"] if entry["layer"]}
        assert {layer for layer, entry in entries.items() if entry["pattern"] == "2:4"} == sparsified
        assert all(entries[layer]["compliant_24"] for layer in sparsified)
    # The graph takes the data as the model saw it (normalised digits) and gives the exported model's logits.
    session = onnxruntime.InferenceSession(
        str(out / "export" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(None, {"input": np.zeros((3, 1, 8, 8), dtype=np.float32)})
    assert logits.shape == (3, 10)


def test_export_onnx_must_be_a_boolean() -> None:
    data = json.loads(json.dumps(TINY))
    data["export"] = {"onnx": "yes"}
    from jobs.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match=r"export\.onnx: Input should be a valid boolean"):
        parse_spec(data)


def test_train_on_two_processes_reports_progress_and_exports_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = lbc("train", str(write_spec(tmp_path, with_train(processes=2))), "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stderr and "alive/group" in result.stderr  # rank 0's progress, relayed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verified_nm"] is True
    assert json.loads((out / "spec.json").read_text())["train"]["processes"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]  # written by rank 0 only


def test_a_run_that_did_not_learn_ends_with_a_warning_that_says_what_to_change(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TINY))
    data["sparsity"]["method"] = "asp"  # fixed masks: with a tiny lr nothing learns
    data["train"]["lr"] = 1e-6
    out = tmp_path / "out"
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr  # it ran; the model is what is useless
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("WARNING (did_not_learn): the model did not learn: ")
    assert "try a higher train.lr" in last
    assert "  lr             1e-06 (given)" in result.stdout


def test_the_default_lr_is_printed_with_its_rule(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TINY))
    del data["train"]["lr"]
    data["train"]["batch_size"] = 16
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (
        "  lr             0.0125 (default: 0.1 x min(batch_size, 128) / 128 = 0.0125 at batch_size 16)"
        in (result.stdout)
    )


def test_runtime_error_exits_1_with_one_line(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TINY))
    data["sparsity"]["layers"] = {"include": ["no_such_layer*"]}
    result = lbc("train", str(write_spec(tmp_path, data)), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lbc train: error: LayerSelectionError: ")
    assert "no_such_layer" in lines[0]


def _interrupt_after(command: list[str], ready: Any, timeout: float = 90) -> tuple[int, str]:
    """Start ``command``, wait until ``ready()`` holds, press Ctrl-C; the exit code and stderr."""
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def test_ctrl_c_checkpoints_and_the_same_command_resumes(tmp_path: Path) -> None:
    # Far more epochs than either invocation gets through: each one is stopped by Ctrl-C. That the
    # resumed run also finishes correctly is tested in-process in tests/worker/test_runner.py.
    data = with_train(epochs=500, batch_size=32)
    spec, out = write_spec(tmp_path, data), tmp_path / "out"
    command = lbc_command("train", str(spec), "--out", str(out))
    checkpoint = out / "checkpoints" / "last.pt"

    code, stderr = _interrupt_after(command, checkpoint.exists)
    assert code == 130, stderr
    assert "run the same command to resume" in stderr and "Traceback" not in stderr
    assert not (out / "export").exists()
    first = json.loads((out / "metrics.json").read_text())
    assert first["resumed_from"] is None
    written = checkpoint.stat().st_mtime_ns

    # The second run resumes from the checkpoint: interrupt it once it has written a newer one.
    code, stderr = _interrupt_after(command, lambda: checkpoint.stat().st_mtime_ns != written)
    assert code == 130, stderr
    second = json.loads((out / "metrics.json").read_text())
    assert second["resumed_from"] is not None and second["resumed_from"]["epoch"] >= 1
    assert second["history"][: len(first["history"])] == first["history"]
    assert len(second["history"]) > len(first["history"])
