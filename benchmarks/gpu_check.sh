#!/usr/bin/env bash
# Proves the CUDA paths on the NVIDIA GPU of this machine, in one run, and writes every table to a folder:
#   1. the environment (GPU, driver, CUDA, torch, cuSPARSELt);
#   2. every test marked `cuda`;
#   3. LBC 2:4 training on CUDA with bf16 autocast (ResNet-50, ViT) through the product pipeline, with the
#      export checked exactly 2:4 and converted to semi-structured 2:4 (benchmarks/gpu_train_check.py);
#   4. dense vs semi-structured GEMM time, every backend, ResNet-50 / ViT-B / Llama-7B shapes
#      (benchmarks/gpu_gemm_sweep.py);
#   5. where a semi-structured call's time goes: host overhead vs kernel (benchmarks/gpu_overhead_probe.py);
#   6. the product's speedup report for ViT-B/16, a Llama-7B MLP block and ResNet-50, built twice to check
#      its keep-sparse advice (benchmarks/gpu_models_report.py).
# Steps 4 and 6 run twice: calls launched eagerly, and replayed from captured CUDA graphs.
# Usage: bash benchmarks/gpu_check.sh OUT_DIR
# PYTHON picks the interpreter (default: .venv/bin/python, else python3). On a machine without a package
# index, LBC_WHEELS_DIR names a folder of wheels that are installed first (the project's service
# dependencies that the interpreter lacks); the project itself runs from this source tree.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_check.sh OUT_DIR}"
mkdir -p "$out"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -n "${LBC_WHEELS_DIR:-}" ]; then
  site="$(mktemp -d)"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$LBC_WHEELS_DIR"/*.whl \
    || { echo "gpu_check: installing the wheels in $LBC_WHEELS_DIR failed" >&2; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA GPU visible to $PYTHON; nothing to prove here" >&2
  exit 1
fi
status=0
step() {  # step NAME TIMEOUT_S COMMAND...: run, log to OUT/NAME.log, remember a failure
  local name="$1" limit="$2"; shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  local started=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - started)) s"
  [ "$rc" -eq 0 ] || { status=1; tail -n 25 "$out/$name.log"; }
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
  "$PYTHON" - <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
print("cusparselt available", torch.backends.cusparselt.is_available(),
      "version", torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None)
print("cudnn", torch.backends.cudnn.version())
PY
} >"$out/environment.txt" 2>&1
cat "$out/environment.txt"

# Only the files that hold CUDA tests: collecting the rest needs the browser and fuzzing test tools.
mapfile -t cuda_files < <(grep -rl "pytest.mark.cuda" tests --include="test_*.py" | sort)
step cuda_tests 150 "$PYTHON" -m pytest -m cuda -q -rA -p no:cacheprovider \
  -o addopts="--strict-markers --import-mode=importlib" "${cuda_files[@]}"
step overhead_probe 60 "$PYTHON" benchmarks/gpu_overhead_probe.py --out "$out/overhead_probe.json"
[ -n "${GPU_CHECK_ONLY_TESTS:-}" ] && exit "$status"
step train_check 150 "$PYTHON" benchmarks/gpu_train_check.py --out "$out/train"
step gemm_sweep 150 "$PYTHON" benchmarks/gpu_gemm_sweep.py --out "$out"
step gemm_sweep_graph 150 "$PYTHON" benchmarks/gpu_gemm_sweep.py --out "$out" --launch cuda-graph
step models_report 150 "$PYTHON" benchmarks/gpu_models_report.py --out "$out"
step models_report_graph 150 "$PYTHON" benchmarks/gpu_models_report.py --out "$out" --launch cuda-graph
cp "$out/train/train_check.json" "$out/" 2>/dev/null
rm -rf "$out/train/runs"
exit "$status"
