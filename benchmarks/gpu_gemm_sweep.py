"""Dense versus semi-structured 2:4 GEMM time for real model shapes, every backend, two passes.

The GEMM is ``Y[M, N] = X[M, K] @ W[N, K]^T`` as ``F.linear`` runs it, W being 2:4 sparse (magnitude
top-2 of every 4 along K). Shapes are the Linear / 1x1- and 3x3-conv (im2col) GEMMs of ResNet-50, the
Linear layers of ViT-B/16 and a Llama-7B-class attention projection and MLP; M is the number of rows
(batch x tokens or positions) from 1 upward. Backends: PyTorch's cuSPARSELt path (default algorithm,
and the algorithm ``torch._cslt_sparse_mm_search`` picks when that exists) and its CUTLASS path.

Each row is timed twice, in two passes over the whole table (so the GPU's clock and thermal state of one
pass is not shared by both timings of a row). Pass 1 gives the keep-sparse / keep-dense advice the
product's speedup report would give (``lbc_core.benchmark.recommend``); pass 2 checks it: an advice
"sparse" holds when pass 2 finds the sparse kernel faster too.

Usage:
  python benchmarks/gpu_gemm_sweep.py --out DIR            # on a CUDA GPU
  python benchmarks/gpu_gemm_sweep.py --out DIR --quick    # a few shapes (also runs, dense only, on CPU)
Writes DIR/gemm_sweep.json and DIR/gemm_sweep.md, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lbc_core.benchmark import DEFAULT_MIN_SPEEDUP, recommend
from lbc_core.benchmark.kernels import CUSPARSELT, CUTLASS, DENSE_ROW_MULTIPLE, convert_weight
from lbc_core.benchmark.report import CORRECTNESS_RTOL
from lbc_core.benchmark.timing import Timing, time_callable
from lbc_core.export.semi_structured import CUTLASS_MAJOR
from lbc_core.sparsity import NMPattern, magnitude_mask

# (model, layer, N = out features, K = reduction)
SHAPES: tuple[tuple[str, str, int, int], ...] = (
    ("resnet50", "layer1 conv1 1x1 (256->64)", 64, 256),
    ("resnet50", "layer1 conv2 3x3 (64->64)", 64, 576),
    ("resnet50", "layer1 conv3 1x1 (64->256)", 256, 64),
    ("resnet50", "layer2 conv2 3x3 (128->128)", 128, 1152),
    ("resnet50", "layer3 conv1 1x1 (1024->256)", 256, 1024),
    ("resnet50", "layer3 conv2 3x3 (256->256)", 256, 2304),
    ("resnet50", "layer3 conv3 1x1 (256->1024)", 1024, 256),
    ("resnet50", "layer4 conv1 1x1 (2048->512)", 512, 2048),
    ("resnet50", "layer4 conv2 3x3 (512->512)", 512, 4608),
    ("resnet50", "layer4 conv3 1x1 (512->2048)", 2048, 512),
    ("vit-b", "attn.qkv", 2304, 768),
    ("vit-b", "attn.proj", 768, 768),
    ("vit-b", "mlp.fc1", 3072, 768),
    ("vit-b", "mlp.fc2", 768, 3072),
    ("llama-7b", "attn q/k/v/o", 4096, 4096),
    ("llama-7b", "mlp gate/up", 11008, 4096),
    ("llama-7b", "mlp down", 4096, 11008),
)
QUICK_SHAPES = (SHAPES[4], SHAPES[12], SHAPES[16])
M_VALUES = (1, 16, 256, 1024, 4096, 16384)
QUICK_M_VALUES = (1, 256, 4096)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
SEARCHED = "cuSPARSELt-searched"


@dataclass
class Row:
    model: str
    layer: str
    n: int
    k: int
    m: int
    dtype: str
    backend: str
    dense_ms: list[float]  # one median per pass
    sparse_ms: list[float]
    advice: str  # pass 1: "sparse" | "dense" | "n/a"
    speedups: list[float]
    note: str = ""

    @property
    def held(self) -> bool | None:
        """Whether pass 2 agrees with pass 1's advice (None without two passes or a sparse timing)."""
        if len(self.speedups) < 2 or self.advice == "n/a":
            return None
        return self.speedups[1] > 1.0 if self.advice == "sparse" else self.speedups[1] < DEFAULT_MIN_SPEEDUP


def two_four(n: int, k: int, dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """A random ``(n, k)`` weight pruned to 2:4 along k by magnitude (top 2 of every 4)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    weight = torch.randn((n, k), generator=generator, device=device, dtype=torch.float32)
    return (weight * magnitude_mask(weight, NMPattern(2, 4))).to(dtype).contiguous()


def sparse_linear(
    weight: torch.Tensor, backend: str, x: torch.Tensor
) -> tuple[Callable[[], torch.Tensor] | None, str]:
    """A call of F.linear on the 2:4 form of ``weight`` (rows padded as the report pads them), or why not."""
    rows = x.shape[0]
    pad = (-rows) % DENSE_ROW_MULTIPLE
    xp = F.pad(x, (0, 0, 0, pad)) if pad else x
    try:
        sparse = convert_weight(CUSPARSELT if backend == SEARCHED else backend, weight)
        if backend == SEARCHED:
            search = getattr(torch, "_cslt_sparse_mm_search", None)
            if search is None or not hasattr(sparse, "alg_id_cusparselt"):
                return None, "this PyTorch has no cuSPARSELt algorithm search"
            sparse.alg_id_cusparselt = int(search(sparse.packed, xp.t()))
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        return None, f"conversion failed: {exc}".splitlines()[0][:160]

    def call() -> torch.Tensor:
        return F.linear(xp, sparse)[:rows] if pad else F.linear(xp, sparse)

    try:
        out = call()
    except (RuntimeError, NotImplementedError) as exc:
        return None, f"matmul failed: {exc}".splitlines()[0][:160]
    expected = F.linear(x, weight).float()
    error = float((out.float() - expected).abs().max()) / (float(expected.abs().max()) or 1.0)
    if not error <= CORRECTNESS_RTOL:
        return None, f"wrong result (relative error {error:.3g})"
    return call, ""


def timed(fn: Callable[[], object], device: torch.device, repeats: int, graph: bool) -> Timing:
    return time_callable(fn, device=device, warmup=5, repeats=repeats, min_repeat_ms=0.5, cuda_graph=graph)


def sweep(
    device: torch.device,
    shapes: tuple[tuple[str, str, int, int], ...],
    m_values: tuple[int, ...],
    passes: int,
    graph: bool = False,
) -> list[Row]:
    on_gpu = device.type == "cuda"
    backends: list[str] = []
    if on_gpu:
        if torch.backends.cusparselt.is_available():
            backends += [CUSPARSELT, SEARCHED]
        # Timed where the product would not use it too (Hopper), so the table shows why; graph timing skips it.
        if not graph or torch.cuda.get_device_capability(device)[0] == CUTLASS_MAJOR:
            backends.append(CUTLASS)
    dtypes = DTYPES if on_gpu else {"float32": torch.float32}
    rows: dict[tuple[object, ...], Row] = {}
    for run in range(passes):
        for model, layer, n, k in shapes:
            for dtype_name, dtype in dtypes.items():
                weight = two_four(n, k, dtype, device, seed=n * 7 + k)
                for m in m_values:
                    x = torch.randn((m, k), device=device, dtype=dtype)
                    dense = timed(lambda x=x, w=weight: F.linear(x, w), device, 15, graph).median_ms
                    for backend in backends or ["none"]:
                        key = (model, layer, m, dtype_name, backend)
                        row = rows.setdefault(
                            key, Row(model, layer, n, k, m, dtype_name, backend, [], [], "n/a", [])
                        )
                        row.dense_ms.append(dense)
                        call, why = (
                            (None, "no semi-structured kernel on this device")
                            if not backends
                            else sparse_linear(weight, backend, x)
                        )
                        if call is None:
                            row.note = why
                            continue
                        sparse = timed(call, device, 15, graph).median_ms
                        row.sparse_ms.append(sparse)
                        row.speedups.append(dense / sparse)
                        if run == 0:
                            _, row.advice, _ = recommend(
                                Timing(dense, dense, dense, 1, 1, ""),
                                Timing(sparse, sparse, sparse, 1, 1, ""),
                            )
                        del call
                    del x
                del weight
                if on_gpu:
                    torch.cuda.empty_cache()
        print(f"pass {run + 1} of {passes} done", file=sys.stderr, flush=True)
    return list(rows.values())


def _fmt(values: list[float], digits: int = 3) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values) if values else "-"


def markdown(rows: list[Row], environment: str) -> str:
    lines = [
        f"Environment: {environment}",
        "",
        "| model | layer | N x K | M | dtype | backend | dense ms (pass 1 / 2) | sparse ms | speedup | advice | held |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        held = {None: "-", True: "yes", False: "**no**"}[r.held]
        speed = _fmt(r.speedups, 2) if r.speedups else r.note
        lines.append(
            f"| {r.model} | {r.layer} | {r.n}x{r.k} | {r.m} | {r.dtype} | {r.backend} | {_fmt(r.dense_ms)} | "
            f"{_fmt(r.sparse_ms)} | {speed} | {r.advice} | {held} |"
        )
    return "\n".join(lines) + "\n"


def summary(rows: list[Row]) -> dict[str, object]:
    advised = [r for r in rows if r.advice == "sparse"]
    checked = [r for r in rows if r.held is not None]
    best: dict[str, float] = {}
    for r in rows:
        if r.speedups:
            best[r.backend] = max(best.get(r.backend, 0.0), statistics.median(r.speedups))
    large = [r for r in rows if r.speedups and r.m >= 4096 and r.n * r.k >= 4096 * 4096]
    return {
        "rows": len(rows),
        "advised_sparse": len(advised),
        "advice_checked": len(checked),
        "advice_flipped": [
            f"{r.model} {r.layer} M={r.m} {r.dtype} {r.backend}" for r in checked if not r.held
        ],
        "best_speedup_by_backend": best,
        "large_gemm_speedups": {
            f"{r.model} {r.layer} M={r.m} {r.dtype} {r.backend}": round(statistics.median(r.speedups), 3)
            for r in large
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="three shapes, three M values")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--launch",
        choices=("eager", "cuda-graph"),
        default="eager",
        help="eager calls, or calls replayed from a captured CUDA graph (no host launch overhead)",
    )
    options = parser.parse_args()
    device = torch.device(options.device)
    shapes = QUICK_SHAPES if options.quick else SHAPES
    m_values = QUICK_M_VALUES if options.quick else M_VALUES
    if device.type == "cpu":  # dense only, and small: this mode exists so the script itself is tested
        m_values = tuple(m for m in m_values if m <= 256)
    torch.manual_seed(0)
    graph = options.launch == "cuda-graph"
    rows = sweep(device, shapes, m_values, options.passes, graph)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    environment = (
        f"{name}, {options.launch} launch, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"cuSPARSELt {torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else 'n/a'}"
    )
    options.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, environment)
    suffix = "" if options.launch == "eager" else "_graph"
    (options.out / f"gemm_sweep{suffix}.md").write_text(table, encoding="utf-8")
    result = {"environment": environment, "summary": summary(rows), "rows": [asdict(r) for r in rows]}
    (options.out / f"gemm_sweep{suffix}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(table)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
