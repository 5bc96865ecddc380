"""Which default learning-rate rule trains at every batch size? Prints one JSON line per run.

Each run is a job spec run by the product's own pipeline (``lbc_core.pipeline.run``) with every training field
at its default except the batch size, the optimizer, the warm-up and the learning rate, which each rule derives
from ``--base-lr`` (the lr at the reference batch of 128):

- ``fixed``       : base, whatever the batch (the defaults before batch scaling)
- ``linear``      : base x batch / 128
- ``capped``      : base x min(batch, 128) / 128 (linear below the reference, never above base)
- ``sqrt``        : base x sqrt(batch / 128)
- ``capped_sqrt`` : base x sqrt(min(batch, 128) / 128)

The accuracy is the exported model's on the validation split (what ``summary.json`` reports). The results
and the rule chosen from them are in docs/reliability.md.

Usage
-----
    python experiments/lr_defaults.py --dataset digits --models lenet5,mlp,resnet20 \
        --batches 16,64,128,256 --rules fixed,linear,capped,sqrt > runs/lr-digits.jsonl
    python experiments/lr_defaults.py --optimizer adamw --base-lr 0.003 --rules capped_sqrt ...
    python experiments/lr_defaults.py --dataset mnist --path ../shared/data/mnist-t10k --val-size 2000 ...
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from jobs.spec import parse_spec  # noqa: E402
from lbc_core import run  # noqa: E402
from worker.runner import to_run_config  # noqa: E402

RULES = ("fixed", "linear", "capped", "sqrt", "capped_sqrt")


def rule_lr(rule: str, base: float, batch: int) -> float:
    """The learning rate ``rule`` gives at ``batch`` from ``base`` at the reference batch of 128."""
    if rule == "fixed":
        return base
    if rule == "linear":
        return base * batch / 128
    if rule == "capped":  # linear below the reference batch, never above the reference lr
        return base * min(batch, 128) / 128
    if rule == "sqrt":
        return base * math.sqrt(batch / 128)
    if rule == "capped_sqrt":
        return base * math.sqrt(min(batch, 128) / 128)
    raise ValueError(f"unknown rule {rule!r}; choose from {RULES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--path", default=None)
    parser.add_argument("--models", default="lenet5,mlp,resnet20")
    parser.add_argument("--batches", default="16,64,128,256")
    parser.add_argument("--rules", default="fixed,capped")
    parser.add_argument("--base-lr", type=float, default=0.1, help="lr at the reference batch of 128")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--method", default="lbc")
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--val-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = {"source": args.dataset, "path": args.path, "val_size": args.val_size}
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for rule in args.rules.split(","):
                lr = rule_lr(rule, args.base_lr, batch)
                spec = parse_spec(
                    {
                        "model": {"architecture": model},
                        "dataset": {k: v for k, v in dataset.items() if v is not None},
                        "sparsity": {"method": args.method, "n": 2, "m": 4},
                        "train": {
                            "epochs": args.epochs,
                            "batch_size": batch,
                            "optimizer": args.optimizer,
                            "lr": lr,
                            "warmup_epochs": args.warmup_epochs,
                            "seed": args.seed,
                            "device": "cpu",
                        },
                    }
                )
                config = to_run_config(spec)
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as out:
                    result = run(config, out, resume=False)
                first = result.history[0]["train_loss"]
                best = min(r["train_loss"] for r in result.history)
                record = {
                    "dataset": args.dataset,
                    "model": model,
                    "batch": batch,
                    "rule": rule,
                    "lr": lr,
                    "optimizer": args.optimizer,
                    "method": args.method,
                    "warmup_epochs": args.warmup_epochs,
                    "val_accuracy": round(result.summary["val_accuracy"], 4),
                    "first_train_loss": round(first, 4),
                    "best_train_loss": round(best, 4),
                    "seconds": round(time.perf_counter() - started, 1),
                }
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
