"""The dependency direction of the code base, and the library's public surface."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lbc_core

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_jobs_package_imports_without_torch() -> None:
    code = "import sys, jobs, jobs.spec; assert 'torch' not in sys.modules, 'jobs pulled in torch'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_library_imports_without_the_onnx_extra() -> None:
    code = (
        "import sys, lbc_core, lbc_core.export, lbc_core.pipeline, lbc_core.export.onnx_export; "
        "loaded = sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime', 'onnx_ir') if m in sys.modules); "
        "assert not loaded, f'importing the library loaded {loaded}'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_public_api_of_the_library_is_exactly_this() -> None:
    assert sorted(lbc_core.__all__) == sorted(
        [
            "METHODS", "DataBundle", "DataConfig", "DatasetError", "ExportConfig", "ExportError", "ExportResult", "LayerPolicy",
            "ModelConfig", "NMPattern", "PatternError", "RemovalSchedule", "RunConfig", "RunError", "RunResult",
            "ScoreOptimizer", "Sparsifier", "SparsityConfig", "SparsityReport", "TrainConfig", "Trainer",
            "TrainingCallback", "build_model", "build_sparsifier", "evaluate", "export_all", "get_architecture",
            "is_nm_sparse", "list_architectures", "load_compressed", "load_data", "rebuild_model", "run",
            "to_semi_structured",
        ]
    )  # fmt: skip
    for name in lbc_core.__all__:
        assert getattr(lbc_core, name) is not None, name
