"""The product's speedup report, on a GPU, for ViT-B/16, a Llama-7B-class MLP block and ResNet-50, twice.

Each model gets a one-shot magnitude 2:4 mask on every eligible layer (random weights: timings do not
depend on values) and ``lbc_core.benchmark.build_speedup_report`` runs exactly as a worker runs it:
per-layer dense vs semi-structured time, end-to-end latency of the dense model vs the converted one,
fp16 and bf16. The report is built twice; the second run checks the first one's advice: every layer
advised "sparse" must measure faster sparse again at every batch size and dtype.

Usage: python benchmarks/gpu_models_report.py --out DIR [--models vit-b,llama-mlp,resnet50]
Writes DIR/report_<model>.json, DIR/report_<model>.txt and DIR/models_summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lbc_core.benchmark import build_speedup_report, render_text
from lbc_core.models import build_model
from lbc_core.sparsity import LayerPolicy, NMPattern, SparsityConfig, build_sparsifier


class LlamaMLP(nn.Module):
    """A Llama-7B MLP block: down(silu(gate(x)) * up(x)), 4096 -> 11008 -> 4096, no biases."""

    def __init__(self, dim: int = 4096, hidden: int = 11008) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


VIT_B = {
    "image_size": 224,
    "patch_size": 16,
    "depth": 12,
    "embed_dim": 768,
    "num_heads": 12,
    "num_classes": 1000,
}
MODELS: dict[str, dict[str, Any]] = {
    # batch = images
    "vit-b": {"input_shape": (3, 224, 224), "batch_sizes": (1, 64, 256)},
    # batch = tokens (decode: 1; prefill / batched serving: more)
    "llama-mlp": {"input_shape": (4096,), "batch_sizes": (1, 16, 256, 4096)},
    "resnet50": {"input_shape": (3, 224, 224), "batch_sizes": (1, 32)},
}


def build(name: str) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    if name == "vit-b":
        model: nn.Module = build_model("vit", **VIT_B)
    elif name == "llama-mlp":
        model = LlamaMLP()
    else:
        model = build_model("resnet50", num_classes=1000)
    mlp_block = name == "llama-mlp"  # no stem or classifier: every projection is sparsified
    policy = LayerPolicy(keep_stem_dense=not mlp_block, keep_classifier_dense=not mlp_block)
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=NMPattern(2, 4), layers=policy))
    sparsifier.prepare(model)
    layers = [layer.name for layer in sparsifier.finalize().layers]
    return model.eval(), layers


def report(name: str, model: nn.Module, layers: list[str], dtypes: list[str], launch: str) -> dict[str, Any]:
    setup = MODELS[name]
    result = build_speedup_report(
        model,
        input_shape=setup["input_shape"],
        batch_sizes=setup["batch_sizes"],
        dtypes=dtypes,
        device="cuda",
        layers=layers,
        model_name=name,
        warmup=5,
        repeats=15,
        min_repeat_ms=0.5,
        launch=launch,
    )
    return {"dict": result.to_dict(), "text": render_text(result)}


def advice_check(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Layers advised sparse by ``first`` whose every measurement in ``second`` is faster sparse."""
    again = {layer["name"]: layer for layer in second["layers"]}
    advised = [layer["name"] for layer in first["layers"] if layer["recommendation"] == "sparse"]
    failed = []
    for name in advised:
        slower = [
            f"batch {m['batch_size']} {m['dtype']}: {m['speedup']}"
            for m in again[name]["measurements"]
            if m["speedup"] is None or m["speedup"] <= 1.0
        ]
        if slower:
            failed.append({"layer": name, "slower_on_second_run": slower})
    same_advice = sum(
        1 for layer in first["layers"] if again[layer["name"]]["recommendation"] == layer["recommendation"]
    )
    return {
        "layers": len(first["layers"]),
        "advised_sparse": len(advised),
        "advised_sparse_but_slower": failed,
        "same_advice_on_both_runs": same_advice,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--launch", choices=("eager", "cuda-graph"), default="eager")
    options = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_models_report: needs a CUDA GPU")
    options.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    for name in options.models.split(","):
        try:
            model, layers = build(name)
            first = report(name, model, layers, options.dtypes.split(","), options.launch)
            second = report(name, model, layers, options.dtypes.split(","), options.launch)
        except Exception as exc:  # one model's failure must not hide the others
            summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(name, summary[name], flush=True)
            continue
        stem = f"report_{name}" + ("" if options.launch == "eager" else "_graph")
        (options.out / f"{stem}.json").write_text(json.dumps(first["dict"], indent=1))
        (options.out / f"{stem}.txt").write_text(first["text"] + "\n--- second run ---\n" + second["text"])
        e2e = [
            {k: m[k] for k in ("batch_size", "dtype", "speedup")}
            | {"dense_ms": m["dense"]["median_ms"] if m["dense"] else None}
            | {"sparse_ms": m["sparse"]["median_ms"] if m["sparse"] else None}
            for m in first["dict"]["end_to_end"]["measurements"]
        ]
        summary[name] = {
            "summary": first["dict"]["summary"],
            "end_to_end": e2e,
            "advice_check": advice_check(first["dict"], second["dict"]),
        }
        print(first["text"], flush=True)
        print(json.dumps(summary[name]["advice_check"]), flush=True)
    suffix = "" if options.launch == "eager" else "_graph"
    (options.out / f"models_summary{suffix}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
