"""Without a compiler the product still works: the pure-PyTorch path, said in the status and the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, logging, torch
logging.basicConfig(level=logging.INFO)
from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import pack_weight
from lbc_core.kernels.swap import swap_to_nm_kernel
from lbc_core.sparsity import NMPattern, magnitude_mask
nm = NMPattern(2, 4)
w = torch.randn(20, 16); w = w * magnitude_mask(w, nm)
x = torch.randn(3, 16)
y = nm_linear(x, pack_weight(w, nm))
model = torch.nn.Sequential(torch.nn.Linear(16, 20))
with torch.no_grad():
    model[0].weight.copy_(w)
swap = swap_to_nm_kernel(model, nm, measure=False)
status = native_status()
print(json.dumps({"available": status.available, "selected": status.selected, "describe": status.describe(),
                  "max_error": float((y - x @ w.T).abs().max()), "swapped": list(swap.swapped),
                  "kept": [d.reason for d in swap.kept_dense]}))
"""


def _probe(tmp_path: Path, **env: str) -> tuple[dict, str]:
    environ = {**os.environ, "LBC_NM_BUILD_DIR": str(tmp_path / "build"), **env}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_without_a_compiler_the_pure_pytorch_path_runs_and_says_so(tmp_path: Path) -> None:
    result, log = _probe(tmp_path, LBC_NM_CXX=str(tmp_path / "no-such-compiler"))
    assert result["available"] is False and result["selected"] == "pytorch"
    assert "pure-PyTorch N:M path (no native kernel: no C++ compiler" in result["describe"]
    assert "using the pure-PyTorch path" in log
    assert result["max_error"] < 1e-5
    # Not swapped: the fallback is correct but slower than dense, and the reason says so.
    assert result["swapped"] == []
    assert result["kept"] == [f"kept dense: {result['describe']}"]


def test_build_command_reports_a_missing_compiler(tmp_path: Path) -> None:
    environ = {**os.environ, "LBC_NM_BUILD_DIR": str(tmp_path), "LBC_NM_CXX": str(tmp_path / "missing-c++")}
    done = subprocess.run(
        [sys.executable, "-m", "lbc_core.kernels", "build"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "N:M CPU kernel not built: no C++ compiler" in done.stderr
    assert "pure-PyTorch path" in done.stderr


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_environment_variable_forces_a_path(isa: str) -> None:
    # The default build directory: make install built the library there already.
    environ = {**os.environ, "LBC_NM_KERNEL_ISA": isa}
    environ.pop("LBC_NM_BUILD_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "lbc_core.kernels", "status"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"native N:M CPU kernel, {isa} path" in done.stdout


OLD_COMPILER = """#!/bin/sh
# A compiler that predates -mavx512bf16 (GCC 9): refuses the flag, compiles everything else.
for arg in "$@"; do
  if [ "$arg" = "-mavx512bf16" ]; then
    echo "c++: error: unrecognized command-line option '-mavx512bf16'" >&2
    exit 1
  fi
done
exec c++ "$@"
"""

STATUS_PROBE = """
import json, torch
from lbc_core.kernels.native import native_status, nm_linear
from lbc_core.kernels.packing import pack_weight
from lbc_core.sparsity import NMPattern
status = native_status()
try:
    nm_linear(torch.zeros(1, 4, dtype=torch.bfloat16), pack_weight(torch.zeros(1, 4, dtype=torch.bfloat16), NMPattern(2, 4)), isa="avx512bf16")
    forced = "ran"
except RuntimeError as exc:
    forced = str(exc).splitlines()[0]
print(json.dumps({"available": status.available, "isas": list(status.isas), "forced": forced}))
"""


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="x86-64 Linux build")
def test_a_compiler_without_avx512bf16_builds_every_other_path(tmp_path: Path) -> None:
    compiler = tmp_path / "old-c++"
    compiler.write_text(OLD_COMPILER)
    compiler.chmod(0o755)
    environ = {**os.environ, "LBC_NM_BUILD_DIR": str(tmp_path / "build"), "LBC_NM_CXX": str(compiler)}
    done = subprocess.run(
        [sys.executable, "-c", STATUS_PROBE],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["available"] is True
    assert "avx512bf16" not in result["isas"] and "scalar" in result["isas"]
    assert "built without nm_block_avx512bf16.cpp" in done.stderr
    assert "unrecognized command-line option '-mavx512bf16'" in done.stderr
    assert "avx512bf16 path was forced but cannot run here (not in this build" in result["forced"]
