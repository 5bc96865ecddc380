"""Compare N:M methods (dense, one-shot magnitude + fine-tune, SR-STE, LBC) at equal epochs.

Every run goes through the product's own pipeline (``lbc_core.pipeline.run``) and the accuracy
recorded is that of the EXPORTED model: rebuilt from ``export/model.nm.safetensors`` + manifest and
evaluated on the validation split (the pipeline verifies the export is exactly N:M).

Methods
-------
- ``dense``: no mask, ``epochs`` epochs.
- ``asp``  : one-shot magnitude N:M + fine-tune, within the SAME epoch budget: a dense run of
  ``epochs // 2`` epochs, then an ``asp`` run of ``epochs - epochs // 2`` epochs whose
  ``ModelConfig.checkpoint`` is the dense run's ``export/model.safetensors`` (the pipeline's dense
  checkpoint file, ``lbc_core.export.bundle.CHECKPOINT_FILE``). Each phase has its own warm-up +
  cosine learning-rate schedule (the fine-tune restarts the schedule).
- ``srste``: SR-STE (lambda_w = 2e-4), ``epochs`` epochs from scratch.
- ``lbc``  : LBC from scratch, t_i = 0, t_f = epochs * --lbc-tf-frac (default 1/2, the authors'
  choice), power --lbc-power (default 3).
- ``lbc_dense`` (ablation): LBC from a dense checkpoint within the same budget: the same dense
  half as ``asp``, then LBC for the other half with t_f = (fine-tune epochs) * --lbc-tf-frac.
- ``wanda``: one-shot Wanda N:M (|w| x input-activation norm over --calibration-samples training
  samples) + fine-tune, on the same dense half as ``asp``.
- ``lbc_magnitude`` / ``lbc_wanda``: ``lbc_dense`` with the scores started from the magnitude or
  the Wanda prior (``SparsityConfig.score_init``) instead of uniformly.
The methods that start from the dense half share one dense run per seed within an invocation (it
is deterministic given the seed), so its cost is paid once; each record still lists both phases.
- ``lbc_revival`` (ablation): ``lbc`` with the authors' removal instead of permanent removal
  (``SparsityConfig.removal="revival"``): dead combinations hold score 0, alive sets are re-ranked
  every step, and momentum can bring a dead combination back. ``lbc_revival_grad`` also feeds dead
  combinations the loss signal (``removal="revival_grad"``). Their records add ``revivals`` (dead ->
  alive transitions over the run, all layers), ``groups_with_revived_alive``, ``mask_exactly_nm``
  (of the training mask at the end of training) and ``closest_revival_margin`` (smallest gap
  between the weakest alive and the strongest dead score at any ranking; negative = a revival).

Cost
----
``epoch_seconds`` is the trainer's per-epoch training time (``history[i]["seconds"]``, training steps
only, validation excluded). ``peak_rss_mib`` is the process's peak resident set size during the run:
before each run the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``) and
afterwards ``VmHWM`` is read from ``/proc/self/status``. This counts everything the process touches,
torch CPU tensors included (tracemalloc would not see torch's allocator). Where the reset is not
possible (non-Linux) ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is used instead, which is a
process-lifetime peak and therefore only meaningful for the first run; the record says which.

Usage
-----
    python experiments/compare.py --dataset digits --models lenet5 \
        --patterns 2:4,1:4,2:8,4:8,1:16 --methods dense,asp,srste,lbc --seeds 0,1,2 --epochs 8 \
        --out runs/compare-digits
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from lbc_core.data import DataConfig, load_data  # noqa: E402
from lbc_core.export import rebuild_model  # noqa: E402
from lbc_core.pipeline import ModelConfig, RunConfig, run  # noqa: E402
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig  # noqa: E402
from lbc_core.training import TrainConfig, evaluate  # noqa: E402

MNIST_PATH = REPO / ".." / "shared" / "data" / "mnist-t10k"
METHODS = (
    "dense",
    "asp",
    "srste",
    "lbc",
    "lbc_dense",
    "lbc_revival",
    "lbc_revival_grad",
    "wanda",
    "lbc_magnitude",
    "lbc_wanda",
)
# compare.py method -> LBC score start, for the methods that run LBC on the dense half.
LBC_FROM_DENSE = {"lbc_dense": "uniform", "lbc_magnitude": "magnitude", "lbc_wanda": "wanda"}
# One-shot methods that fine-tune the dense half with a fixed mask.
ONE_SHOT = ("asp", "wanda")
# compare.py method -> SparsityConfig.removal for the LBC-from-scratch methods.
LBC_REMOVALS = {"lbc": "permanent", "lbc_revival": "revival", "lbc_revival_grad": "revival_grad"}


def parse_pattern(text: str) -> NMPattern:
    n, m = text.split(":")
    return NMPattern(int(n), int(m))


def data_config(dataset: str, augment: bool) -> DataConfig:
    if dataset == "mnist":
        # The fixed 8k/2k split of the t10k set (data seed 0), as in tests/lbc_core/test_accuracy_mnist.py.
        return DataConfig(source="mnist", path=str(MNIST_PATH), val_size=2000, seed=0, augment=augment)
    # scikit-learn digits (1,797 8x8 images): fixed 80/20 split, data seed 0.
    return DataConfig(source="digits", val_fraction=0.2, seed=0, augment=augment)


# ---------------------------------------------------------------- memory


def reset_peak_rss() -> str:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return "VmHWM after clear_refs reset (per run)"
    except OSError:
        return "ru_maxrss (process lifetime)"


def peak_rss_mib(source: str) -> float:
    if source.startswith("VmHWM"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    # Linux reports KiB, macOS bytes.
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def current_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------- one run


def exported_accuracy(export_dir: Path, val: Any) -> float:
    model = rebuild_model(export_dir / "manifest.json", export_dir / "model.nm.safetensors")
    return float(evaluate(model, val, device=torch.device("cpu"))["accuracy"])


def one_run(
    *,
    dataset: str,
    model: str,
    width: float,
    pattern: NMPattern,
    method: str,
    seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
    augment: bool,
    work: Path,
    val: Any,
    tf_frac: float = 0.5,
    power: float = 3.0,
    calibration_samples: int = 128,
    prior_strength: float = 1.0,
    dense_runs: dict[tuple[Any, ...], tuple[Path, list[dict[str, Any]]]] | None = None,
) -> dict[str, Any]:
    data = data_config(dataset, augment)
    model_cfg = ModelConfig(model, {"width": width})
    warmup = 1 if epochs >= 2 else 0

    def train(n_epochs: int) -> TrainConfig:
        return TrainConfig(
            epochs=n_epochs,
            batch_size=batch_size,
            lr=lr,
            warmup_epochs=min(warmup, n_epochs - 1) if n_epochs > 1 else 0,
            weight_decay=5e-4,
            seed=seed,
            device="cpu",
        )

    phases: list[tuple[str, RunConfig]] = []
    if method in ONE_SHOT or method in LBC_FROM_DENSE:
        dense_epochs = epochs // 2
        tune = epochs - dense_epochs
        if dense_epochs < 1 or tune < 1:
            raise SystemExit(f"{method} needs epochs >= 2 (dense half + fine-tune half)")
        phases.append(
            (
                "dense-pretrain",
                RunConfig(model_cfg, data, SparsityConfig("dense", pattern), train(dense_epochs)),
            )
        )
        if method in ONE_SHOT:
            sparsity = SparsityConfig(method, pattern, calibration_samples=calibration_samples)
        else:
            sparsity = SparsityConfig(
                "lbc",
                pattern,
                schedule=RemovalSchedule(t_i=0, t_f=max(tune * tf_frac, 1), power=power),
                score_init=LBC_FROM_DENSE[method],  # type: ignore[arg-type]
                calibration_samples=calibration_samples,
                prior_strength=prior_strength,
            )
        phases.append((f"{method}-finetune", RunConfig(model_cfg, data, sparsity, train(tune))))
    elif method in LBC_REMOVALS:
        schedule = RemovalSchedule(t_i=0, t_f=max(epochs * tf_frac, 1), power=power)
        sparsity = SparsityConfig("lbc", pattern, schedule=schedule, removal=LBC_REMOVALS[method])  # type: ignore[arg-type]
        phases.append((method, RunConfig(model_cfg, data, sparsity, train(epochs))))
    else:
        phases.append((method, RunConfig(model_cfg, data, SparsityConfig(method, pattern), train(epochs))))

    rss_source = reset_peak_rss()
    rss_before = current_rss_mib()
    started = time.perf_counter()
    epoch_seconds: list[float] = []
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    checkpoint: str | None = None
    for index, (name, cfg) in enumerate(phases):
        if checkpoint is not None:
            cfg = replace(cfg, model=replace(cfg.model, checkpoint=checkpoint))
        # The dense half depends on neither the pattern nor the method that follows it.
        key = (dataset, model, width, seed, cfg.train, augment) if name == "dense-pretrain" else None
        if key is not None and dense_runs is not None and key in dense_runs:
            out, run_history = dense_runs[key]
        else:
            out = work / (f"dense-{len(dense_runs or {})}" if key is not None else f"phase{index}-{name}")
            if out.exists():
                shutil.rmtree(out)
            result = run(cfg, out, resume=False)
            if result.status != "succeeded":
                raise RuntimeError(f"{name} did not succeed: {result.status}")
            run_history, summary = result.history, result.summary
            if key is not None and dense_runs is not None:
                dense_runs[key] = (out, run_history)
        epoch_seconds += [float(h["seconds"]) for h in run_history]
        history += [
            {"phase": name, **{k: v for k, v in h.items() if isinstance(v, int | float | str)}}
            for h in run_history
        ]
        checkpoint = str(out / "export" / "model.safetensors")
    total = time.perf_counter() - started
    peak = peak_rss_mib(rss_source)
    acc = exported_accuracy(out / "export", val)
    return {
        "dataset": dataset,
        "model": model,
        "width": width,
        "pattern": str(pattern),
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "augment": augment,
        "phases": [name for name, _ in phases],
        "label": label(method, tf_frac, power, prior_strength),
        "prior_strength": prior_strength if method in ("lbc_magnitude", "lbc_wanda") else None,
        "lbc_tf_frac": tf_frac if method.startswith("lbc") else None,
        "lbc_power": power if method.startswith("lbc") else None,
        "val_accuracy": acc,  # of the exported model rebuilt from model.nm.safetensors
        "pipeline_val_accuracy": summary.get("val_accuracy"),
        "verified_nm": summary.get("verified_nm"),
        "density": summary.get("density"),
        "sparsified_layers": summary.get("sparsified_layers"),
        "skipped_layers": summary.get("skipped_layers"),
        "epoch_seconds": epoch_seconds,
        "mean_epoch_seconds": sum(epoch_seconds) / max(len(epoch_seconds), 1),
        "median_epoch_seconds": float(torch.tensor(epoch_seconds).median()) if epoch_seconds else 0.0,
        "total_seconds": total,
        "peak_rss_mib": peak,
        "rss_before_mib": rss_before,  # resident size when the run started (torch + data already loaded)
        "peak_rss_source": rss_source,
        "history": history,
        # Revival ablation only (absent from the history of permanent removal).
        **(
            {
                k: history[-1].get(k)
                for k in (
                    "revivals",
                    "groups_with_revived_alive",
                    "mask_exactly_nm",
                    "closest_revival_margin",
                )
            }
            if "revivals" in history[-1]
            else {}
        ),
    }


# ---------------------------------------------------------------- table


def label(method: str, tf_frac: float, power: float, prior_strength: float = 1.0) -> str:
    """The method name, plus the LBC schedule where it differs from the default (t_f = 1/2, p = 3)
    and the score prior's strength where it is not 1."""
    if method in ("lbc_magnitude", "lbc_wanda") and prior_strength != 1.0:
        method = f"{method}(s={prior_strength:g})"
    if method.startswith("lbc") and (tf_frac != 0.5 or power != 3.0):
        return f"{method}(tf={tf_frac:g},p={power:g})"
    return method


def summarize(records: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["model"], r["pattern"], r.get("label", r["method"])), []).append(r)
    lines = [
        f"{'dataset':8} {'model':8} {'pattern':7} {'method':20} {'n':>2} {'acc mean':>9} {'std':>7} "
        f"{'med s/ep':>8} {'peakMiB':>8}"
    ]
    for (ds, model, pat, meth), rs in sorted(groups.items()):
        accs = torch.tensor([r["val_accuracy"] for r in rs], dtype=torch.float64)
        std = float(accs.std(unbiased=True)) if len(rs) > 1 else 0.0
        sec = sum(r["median_epoch_seconds"] for r in rs) / len(rs)
        mem = sum(r["peak_rss_mib"] for r in rs) / len(rs)
        lines.append(
            f"{ds:8} {model:8} {pat:7} {meth:20} {len(rs):>2} {100 * float(accs.mean()):9.2f} "
            f"{100 * std:7.2f} {sec:8.3f} {mem:8.1f}"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--models", default="lenet5", help="comma-separated architectures (lenet5, resnet20, ...)")
    p.add_argument("--patterns", default="2:4", help="comma-separated N:M (keep-N), e.g. 2:4,1:4")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=float, default=2.0)
    p.add_argument("--augment", action="store_true", help="random-crop augmentation of training batches")
    p.add_argument("--lbc-tf-frac", type=float, default=0.5, help="LBC t_f as a fraction of its epochs")
    p.add_argument("--lbc-power", type=float, default=3.0, help="LBC removal schedule power")
    p.add_argument(
        "--prior-strength", type=float, default=1.0, help="lbc_magnitude / lbc_wanda: prior strength"
    )
    p.add_argument(
        "--calibration-samples", type=int, default=128, help="training samples calibrating wanda / lbc_wanda"
    )
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--out", required=True, help="directory; runs.jsonl is appended to (one JSON per run)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}")
    patterns = [parse_pattern(t.strip()) for t in args.patterns.split(",") if t.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "runs.jsonl"
    val = load_data(data_config(args.dataset, args.augment)).val
    env = environment()
    (out / "environment.json").write_text(json.dumps({**env, "argv": sys.argv}, indent=2))
    records: list[dict[str, Any]] = []
    dense_runs: dict[tuple[Any, ...], tuple[Path, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="lbc-compare-") as tmp:
        for model in models:
            for pattern in patterns:
                for seed in seeds:
                    for method in methods:
                        rec = one_run(
                            dataset=args.dataset,
                            model=model,
                            width=args.width,
                            pattern=pattern,
                            method=method,
                            seed=seed,
                            epochs=args.epochs,
                            lr=args.lr,
                            batch_size=args.batch_size,
                            augment=args.augment,
                            work=Path(tmp),
                            val=val,
                            tf_frac=args.lbc_tf_frac,
                            power=args.lbc_power,
                            calibration_samples=args.calibration_samples,
                            prior_strength=args.prior_strength,
                            dense_runs=dense_runs,
                        )
                        rec["environment"] = env
                        records.append(rec)
                        with jsonl.open("a") as fh:
                            fh.write(json.dumps(rec) + "\n")
                        print(
                            f"{args.dataset} {model} {pattern} {method:6} seed={seed} "
                            f"acc={100 * rec['val_accuracy']:.2f} s/ep={rec['mean_epoch_seconds']:.3f} "
                            f"peak={rec['peak_rss_mib']:.0f}MiB",
                            flush=True,
                        )
    print(summarize(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
