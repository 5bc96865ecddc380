"""LBC 2:4 training on a CUDA GPU through the product's own pipeline, with bfloat16 autocast, then checks.

For a ResNet-50 and a ViT (synthetic images, a few hundred optimizer steps each) it runs
``lbc_core.run`` exactly as a job does (``train.device: cuda``, ``train.precision: bf16``) and checks:
- the run succeeded and the pipeline verified every sparsified layer as exactly 2:4;
- the compressed export rebuilds to the same weights as the dense-layout export, every sparsified layer
  exactly 2:4 again (counted independently of the pipeline's own check);
- the rebuilt model converts to PyTorch's semi-structured 2:4 form on the GPU and its fp16 output
  matches the dense fp16 output.

Usage: python benchmarks/gpu_train_check.py --out DIR [--steps 320]
Writes DIR/train_check.json and prints one line per model; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lbc_core import (
    DataConfig,
    ModelConfig,
    NMPattern,
    RemovalSchedule,
    RunConfig,
    SparsityConfig,
    TrainConfig,
    run,
)
from lbc_core.data.synthetic import SyntheticSpec
from lbc_core.export import (
    CHECKPOINT_FILE,
    COMPRESSED_FILE,
    MANIFEST_FILE,
    load_state_dict_file,
    rebuild_model,
    to_semi_structured,
)
from lbc_core.sparsity import count_violations

EPOCHS = 5
VAL = 512
MODELS: dict[str, dict[str, Any]] = {
    # ResNet-50 as torchvision builds it, on 64x64 images (a quarter of ImageNet's side: same layers).
    "resnet50": {"args": {}, "input_shape": (3, 64, 64), "batch_size": 64, "lr": 0.05},
    # A ViT-S/4-class encoder on 32x32 images: 65 tokens of width 384, 6 blocks.
    "vit": {
        "args": {"image_size": 32, "patch_size": 4, "depth": 6, "embed_dim": 384, "num_heads": 6},
        "input_shape": (3, 32, 32),
        "batch_size": 128,
        "lr": 0.01,
    },
}


def check(name: str, setup: dict[str, Any], steps: int, out: Path) -> dict[str, Any]:
    steps_per_epoch = max(1, steps // EPOCHS)
    batch = setup["batch_size"]
    config = RunConfig(
        model=ModelConfig(name, setup["args"]),
        data=DataConfig(
            source="synthetic",
            val_size=VAL,
            synthetic=SyntheticSpec(
                num_samples=steps_per_epoch * batch + VAL, input_shape=setup["input_shape"], num_classes=10
            ),
        ),
        sparsity=SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 2)),
        train=TrainConfig(
            epochs=EPOCHS, batch_size=batch, lr=setup["lr"], warmup_epochs=1, device="cuda", precision="bf16"
        ),
    )
    started = time.perf_counter()
    result = run(config, out / name)
    seconds = time.perf_counter() - started
    export = out / name / "export"
    manifest = json.loads((export / MANIFEST_FILE).read_text())
    rebuilt = rebuild_model(manifest, export / COMPRESSED_FILE)
    dense_layout = load_state_dict_file(export / CHECKPOINT_FILE)
    same_weights = all(torch.equal(v, dense_layout[k]) for k, v in rebuilt.state_dict().items())
    pattern = NMPattern(2, 4)
    violations = {
        layer["name"]: count_violations(rebuilt.get_submodule(layer["name"]).weight.detach(), pattern)
        for layer in manifest["layers"]
    }

    # Semi-structured conversion of the trained model, and its output against dense fp16.
    model = rebuilt.cuda().half().eval()
    x = torch.randn((64, *setup["input_shape"]), device="cuda", dtype=torch.float16)
    with torch.no_grad():
        expected = model(x).float()
        conversion = to_semi_structured(model, dtype=torch.float16)
        actual = model(x).float()
    error = float((actual - expected).abs().max()) / (float(expected.abs().max()) or 1.0)
    history = result.history
    record = {
        "model": name,
        "status": result.status,
        "optimizer_steps": steps_per_epoch * EPOCHS,
        "seconds": round(seconds, 1),
        "precision": "bf16 autocast",
        "first_epoch_train_loss": history[0]["train_loss"],
        "last_epoch_train_loss": history[-1]["train_loss"],
        "val_accuracy": result.summary["val_accuracy"],
        "density": result.summary["density"],
        "sparsified_layers": result.summary["sparsified_layers"],
        "pipeline_verified_2_4": result.summary["verified_nm"],
        "rebuilt_equals_dense_layout_export": same_weights,
        "layers_violating_2_4": {k: v for k, v in violations.items() if v},
        "semi_structured_backend": conversion.backend,
        "semi_structured_converted": len(conversion.converted),
        "semi_structured_skipped": [f"{s.name}: {s.reason}" for s in conversion.skipped],
        "semi_structured_relative_error": error,
    }
    record["ok"] = bool(
        result.status == "succeeded"
        and result.summary["verified_nm"]
        and same_weights
        and not record["layers_violating_2_4"]
        and history[-1]["train_loss"] < history[0]["train_loss"]
        and error <= 2e-2
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=320, help="optimizer steps per model (about)")
    parser.add_argument("--models", default=",".join(MODELS))
    options = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_train_check: needs a CUDA GPU")
    options.out.mkdir(parents=True, exist_ok=True)
    records = []
    for name in options.models.split(","):
        try:
            record = check(name, MODELS[name], options.steps, options.out / "runs")
        except Exception as exc:  # one model's failure must not hide the other's result
            record = {"model": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        records.append(record)
        print(json.dumps(record), flush=True)
    (options.out / "train_check.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    sys.exit(0 if all(r["ok"] for r in records) else 1)


if __name__ == "__main__":
    main()
