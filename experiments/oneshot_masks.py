"""One-shot N:M masks on a trained dense model, before any fine-tuning: magnitude vs Wanda.

This isolates the mask choice that ``asp`` / ``wanda`` (and LBC's ``magnitude`` / ``wanda`` score
priors, whose untrained top-N is the same mask) start from. Per seed: a dense model is trained
through the product's pipeline (``--dense-epochs``), then for every pattern each method's mask is
applied to those weights (Wanda calibrated on ``--calibration-samples`` training samples, seeded as
in the pipeline), finalized, and the exact-N:M model is evaluated on the validation split.

Usage
-----
    python experiments/oneshot_masks.py --dataset mnist --patterns 2:4,1:4,2:8,1:16 --seeds 0,1,2 \
        --dense-epochs 4 --augment --threads 1 --out experiments/results/oneshot-mnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from lbc_core.data import load_data  # noqa: E402
from lbc_core.models import build_model  # noqa: E402
from lbc_core.pipeline import (  # noqa: E402
    ModelConfig,
    RunConfig,
    load_dense_weights,
    model_arguments,
    run,
)
from lbc_core.sparsity import (  # noqa: E402
    NMPattern,
    SparsityConfig,
    build_sparsifier,
    input_norms,
    magnitude_mask,
    select_layers,
    wanda_mask,
)
from lbc_core.tasks import ImageClassification  # noqa: E402
from lbc_core.training import TrainConfig, evaluate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import data_config, parse_pattern  # noqa: E402

MASKS = ("asp", "wanda")  # one-shot magnitude, Wanda


def masked_accuracy(
    config: RunConfig, checkpoint: Path, data: Any, method: str, pattern: NMPattern, samples: int
) -> tuple[float, bool]:
    """Validation accuracy of the dense checkpoint under ``method``'s one-shot mask, no training."""
    model = build_model(config.model.architecture, **model_arguments(config.model, data))
    load_dense_weights(model, checkpoint)
    sparsifier = build_sparsifier(SparsityConfig(method, pattern, calibration_samples=samples))
    sparsifier.prepare(model)
    device = torch.device("cpu")
    if sparsifier.needs_calibration:
        sparsifier.calibrate(
            ImageClassification().calibration_forward(
                model, data.train, samples, seed=config.train.seed, batch_size=512, device=device
            )
        )
    report = sparsifier.finalize()
    return float(evaluate(model, data.val, device=device)["accuracy"]), report.all_verified


def _discard(_: object) -> None:
    return None


def layer_errors(
    config: RunConfig, checkpoint: Path, data: Any, pattern: NMPattern, samples: int
) -> dict[str, dict[str, float]]:
    """Per sparsified layer, ``||f(W * mask) - f(W)|| / ||f(W)||`` on the dense layer inputs of
    ``samples`` training samples, for each method's mask: the layer-wise error Wanda minimises."""
    model = build_model(config.model.architecture, **model_arguments(config.model, data))
    load_dense_weights(model, checkpoint)
    model.eval()
    names = select_layers(model, pattern).names
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: inputs.__setitem__(name, args[0].detach())
        )
        for name in names
    ]
    with torch.no_grad():
        model(data.train.x[:samples])
    for handle in handles:
        handle.remove()
    errors: dict[str, dict[str, float]] = {}
    for name in names:
        module = model.get_submodule(name)
        weight, x = module.weight.detach(), inputs[name]
        with torch.no_grad():
            norm = input_norms({name: module}, lambda module=module, x=x: _discard(module(x)))[name]
        masks = {"asp": magnitude_mask(weight, pattern), "wanda": wanda_mask(module, weight, norm, pattern)}
        with torch.no_grad():
            dense = module(x)
            errors[name] = {}
            for method, mask in masks.items():
                out = torch.func.functional_call(module, {"weight": weight * mask}, (x,))
                errors[name][method] = float((out - dense).norm() / dense.norm())
    return errors


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| pattern | dense | one-shot magnitude | one-shot Wanda | Wanda > magnitude | tie | < | mean diff (pp) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pattern in dict.fromkeys(r["pattern"] for r in records):
        rows = [r for r in records if r["pattern"] == pattern]

        def cell(key: str, rows: list[dict[str, Any]] = rows) -> str:
            values = [100 * r[key] for r in rows]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.fmean(values):.2f} ± {std:.2f}"

        diffs = [100 * (r["wanda"] - r["asp"]) for r in rows]
        win, lose = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
        lines.append(
            f"| {pattern} | {cell('dense')} | {cell('asp')} | {cell('wanda')} | {win} | "
            f"{len(diffs) - win - lose} | {lose} | {statistics.fmean(diffs):+.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--model", default="lenet5")
    p.add_argument("--width", type=float, default=2.0)
    p.add_argument("--patterns", default="2:4,1:4,2:8,1:16")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--dense-epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--calibration-samples", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True, help="directory; runs.jsonl is appended to")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    patterns = [parse_pattern(t) for t in args.patterns.split(",") if t.strip()]
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lbc-oneshot-") as tmp:
        for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
            config = RunConfig(
                ModelConfig(args.model, {"width": args.width}),
                data_config(args.dataset, args.augment),
                SparsityConfig("dense"),
                TrainConfig(
                    epochs=args.dense_epochs,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    warmup_epochs=1 if args.dense_epochs > 1 else 0,
                    seed=seed,
                    device="cpu",
                ),
            )
            dense = run(config, Path(tmp) / f"dense-{seed}", resume=False)
            checkpoint = Path(tmp) / f"dense-{seed}" / "export" / "model.safetensors"
            data = load_data(config.data)
            for pattern in patterns:
                record: dict[str, Any] = {
                    "dataset": args.dataset,
                    "model": args.model,
                    "pattern": str(pattern),
                    "seed": seed,
                    "dense_epochs": args.dense_epochs,
                    "calibration_samples": args.calibration_samples,
                    "dense": dense.summary["val_accuracy"],
                }
                for method in MASKS:
                    accuracy, verified = masked_accuracy(
                        config, checkpoint, data, method, pattern, args.calibration_samples
                    )
                    assert verified, (method, pattern)
                    record[method] = accuracy
                record["layer_output_error"] = layer_errors(
                    config, checkpoint, data, pattern, args.calibration_samples
                )
                records.append(record)
                with (out / "runs.jsonl").open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                print(
                    f"{args.dataset} {pattern} seed={seed} dense={100 * record['dense']:.2f} "
                    f"magnitude={100 * record['asp']:.2f} wanda={100 * record['wanda']:.2f}",
                    flush=True,
                )
    print(table(records))
    print("\nMean relative layer output error (dense inputs), magnitude mask vs Wanda mask:")
    for pattern in dict.fromkeys(r["pattern"] for r in records):
        rows = [r["layer_output_error"] for r in records if r["pattern"] == pattern]
        cells = [
            f"{name} {statistics.fmean(r[name]['asp'] for r in rows):.3f} vs "
            f"{statistics.fmean(r[name]['wanda'] for r in rows):.3f}"
            for name in rows[0]
        ]
        print(f"  {pattern}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
