"""How good is LBC's learned choice? Compare it, at the end of the removal phase, with magnitude and an oracle.

LBC is trained from scratch exactly as ``experiments/compare.py`` trains method ``lbc`` (same data,
model, optimizer, seed and schedule) but stopped at epoch ``t_f``, where the last removal leaves one
combination per group. At that point, for one Linear layer (default ``classifier.3``, LeNet-5's
second fully connected layer), every group's kept combination is compared with:

- **magnitude**: the top-N |w| of the group's current weights (a fresh one-shot ranking);
- **oracle** (greedy, per group): with every other group of every layer fixed at LBC's choice, the
  loss on a fixed selection set (``--select-size`` training images, no augmentation) is evaluated for
  every candidate combination of the group, and the lowest-loss candidate is kept;
- **random**: a uniformly random combination per group (the floor; chance agreement is 1/C(M, N)).

Reported per run: exact-match rate of the kept combination and mean overlap of kept weights (share
of the N kept positions in common) for each pair, how often the oracle's and magnitude's choice was
among LBC's finalists (the combinations still alive just before the last removal), and the loss and
accuracy of the network with the layer under each mask, on the selection set and on the validation
split. The oracle is fitted on the selection set, so only the validation columns are unbiased for it.
No fine-tuning happens after the choice: this measures the decision, not what training recovers.

Usage
-----
    python experiments/score_quality.py --runs digits:2:4,digits:1:4,mnist:2:4 --seeds 0,1,2 \
        --threads 1 --out experiments/results/score-quality
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "experiments"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from lbc_core.data import load_data  # noqa: E402
from lbc_core.models import build_model  # noqa: E402
from lbc_core.pipeline import ModelConfig, model_arguments, score_optimizer_for  # noqa: E402
from lbc_core.sparsity import LBCSparsifier, NMPattern, RemovalSchedule, magnitude_mask, to_groups  # noqa: E402
from lbc_core.sparsity.pattern import from_groups  # noqa: E402
from lbc_core.training import (  # noqa: E402
    TrainConfig,
    Trainer,
    TrainingCallback,
    evaluate,
    learning_rate,
    steps_per_epoch,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MASKS = ("lbc", "magnitude", "oracle", "oracle_seq", "random")


# ---------------------------------------------------------------- pure logic (unit-tested)


def combination_index(mask_groups: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
    """``[G, M]`` 0/1 masks holding exactly N kept positions -> ``[G]`` lexicographic combination index."""
    table = pattern.combination_table(mask_groups.device).bool()
    match = (mask_groups.bool().unsqueeze(1) == table.unsqueeze(0)).all(dim=2)  # [G, C]
    bad = match.sum(dim=1) != 1
    if bool(bad.any()):
        group = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"group {group} keeps {int(mask_groups[group].sum())} of {pattern.m}, not exactly {pattern.n}"
        )
    return match.float().argmax(dim=1)


def agreement(a: torch.Tensor, b: torch.Tensor, pattern: NMPattern) -> dict[str, float]:
    """Exact-match rate of two ``[G]`` combination choices, and mean share of kept positions in common."""
    if a.shape != b.shape:
        raise ValueError(f"choices differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    table = pattern.combination_table()
    common = (table[a] * table[b]).sum(dim=1) / pattern.n
    return {"exact_match": float((a == b).float().mean()), "mean_overlap": float(common.mean())}


def per_variant_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[V, B, classes]`` logits -> ``[V]`` mean cross-entropy per variant."""
    v, b, k = logits.shape
    losses = nn.functional.cross_entropy(logits.reshape(v * b, k), targets.repeat(v), reduction="none")
    return losses.reshape(v, b).mean(dim=1)


@torch.no_grad()
def greedy_oracle(
    x_in: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    base: torch.Tensor,
    pattern: NMPattern,
    tail: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    loss_fn: LossFn = per_variant_cross_entropy,
    chunk: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group of a Linear layer, the candidate combination with the lowest loss, others at ``base``.

    ``x_in`` ``[B, in]`` is the layer's input, ``tail`` maps its output ``[*, out]`` to what
    ``loss_fn`` scores (``[V, B, ...]`` variants -> ``[V]`` losses). Changing group ``g`` (output
    row ``r``) only changes output column ``r``, by ``x_g @ (w_g * (T[c] - T[base_g]))``, so each
    candidate costs one pass of the tail, not of the whole network. Returns the choice ``[G]``
    (ties: lowest index) and every candidate's loss ``[G, C]``.
    """
    m = pattern.m
    out_f, in_f = weight.shape
    k = in_f // m
    batch = x_in.shape[0]
    table = pattern.combination_table(weight.device).to(weight.dtype)  # [C, M]
    c = table.shape[0]
    base_mask = table[base].reshape(out_f, k, m)
    y0 = x_in @ (weight * base_mask.reshape(out_f, in_f)).T
    if bias is not None:
        y0 = y0 + bias
    xg = x_in.reshape(batch, k, m)
    wg = weight.reshape(out_f, k, m)
    rows = []
    for r in range(out_f):
        coeff = wg[r].unsqueeze(1) * (table.unsqueeze(0) - base_mask[r].unsqueeze(1))  # [K, C, M]
        delta = torch.einsum("bkj,kcj->kcb", xg, coeff).reshape(k * c, batch)
        row = []
        for start in range(0, k * c, chunk):
            d = delta[start : start + chunk]
            y = y0.unsqueeze(0).repeat(d.shape[0], 1, 1)
            y[:, :, r] += d
            out = tail(y.reshape(-1, out_f))
            row.append(loss_fn(out.reshape(d.shape[0], batch, *out.shape[1:]), targets))
        rows.append(torch.cat(row).reshape(k, c))
    losses = torch.cat(rows)
    return losses.argmin(dim=1), losses


@torch.no_grad()
def sequential_oracle(
    x_in: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    base: torch.Tensor,
    pattern: NMPattern,
    tail: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    loss_fn: LossFn = per_variant_cross_entropy,
) -> torch.Tensor:
    """One coordinate-descent sweep from ``base``: group by group, keep the lowest-loss candidate
    given the choices made so far (a candidate must beat the current one strictly). Unlike
    :func:`greedy_oracle`, whose per-group choices each assume every other group unchanged, the
    result never has a higher loss on ``x_in`` than ``base``."""
    m = pattern.m
    out_f, in_f = weight.shape
    k = in_f // m
    batch = x_in.shape[0]
    table = pattern.combination_table(weight.device).to(weight.dtype)
    choice = base.clone()
    y = x_in @ (weight * table[choice].reshape(out_f, in_f)).T
    if bias is not None:
        y = y + bias
    xg = x_in.reshape(batch, k, m)
    wg = weight.reshape(out_f, k, m)
    for g in range(out_f * k):
        r, kk = divmod(g, k)
        contrib = xg[:, kk, :] @ (wg[r, kk] * table).T  # [B, C]: the group's share of output r
        current = int(choice[g])
        variants = y.unsqueeze(0).repeat(table.shape[0], 1, 1)
        variants[:, :, r] += (contrib - contrib[:, current : current + 1]).T
        out = tail(variants.reshape(-1, out_f))
        losses = loss_fn(out.reshape(table.shape[0], batch, *out.shape[1:]), targets)
        best = int(losses.argmin())
        if losses[best] < losses[current]:
            y[:, r] += contrib[:, best] - contrib[:, current]
            choice[g] = best
    return choice


# ---------------------------------------------------------------- one run


class _StopAt(TrainingCallback):
    """Stop before the first step of epoch ``epoch`` (the trainer checks before every step)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.done = 0

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.done = int(record["epoch"])

    def should_stop(self) -> bool:
        return self.done >= self.epoch


def _tail_after(model: nn.Module, layer_name: str) -> nn.Sequential:
    """The modules after ``layer_name`` in its parent ``nn.Sequential`` (must end the model)."""
    parent_name, _, child = layer_name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if not isinstance(parent, nn.Sequential) or not isinstance(parent[int(child)], nn.Linear):
        raise ValueError(f"{layer_name!r} must be an nn.Linear inside an nn.Sequential")
    return nn.Sequential(*list(parent.children())[int(child) + 1 :])


def _set_mask(param: Any, combos: torch.Tensor, pattern: NMPattern) -> None:
    table = pattern.combination_table(param.mask.device)
    param.mask.copy_(from_groups(table[combos] > 0, param.mask.shape).to(param.mask.dtype))


@torch.no_grad()
def _loss_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    return float(nn.functional.cross_entropy(logits, y)), float((logits.argmax(dim=1) == y).float().mean())


def one_run(
    dataset: str,
    data: Any,
    pattern: NMPattern,
    seed: int,
    *,
    epochs: int,
    tf_frac: float,
    layer: str,
    select_size: int,
    width: float,
    lr: float,
    batch_size: int,
    random_draws: int,
) -> dict[str, Any]:
    started = time.perf_counter()
    t_f = max(round(epochs * tf_frac), 1)
    train = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_epochs=1 if epochs >= 2 else 0,
        weight_decay=5e-4,
        seed=seed,
        device="cpu",
    )
    # As pipeline.run builds it, so training up to t_f is the same run as compare.py's "lbc".
    torch.manual_seed(seed)
    model = build_model("lenet5", **model_arguments(ModelConfig("lenet5", {"width": width}), data))
    sparsifier = LBCSparsifier(
        pattern, schedule=RemovalSchedule(t_i=0, t_f=t_f, power=3.0), optimizer=score_optimizer_for(train)
    )
    sparsifier.prepare(model)
    if layer not in sparsifier.selection.names:
        raise SystemExit(f"layer {layer!r} is not sparsified; sparsified: {sparsifier.selection.names}")
    trainer = Trainer(
        model, sparsifier, train, data.train, data.val, callbacks=[_StopAt(t_f)], augment=data.augment
    )
    outcome = trainer.fit()
    if outcome.status != "stopped" or outcome.epoch != t_f:
        raise RuntimeError(f"expected to stop at epoch {t_f}, got {outcome.status} at {outcome.epoch}")
    module = model.get_submodule(layer)
    param = module.parametrizations["weight"][0]
    finalists = param.alive_bits().clone()  # [G, C] just before the last removal
    alive_before = int(finalists.sum(dim=1)[0])
    # The removal the next step would make: the LBC choice at t_f.
    spe = steps_per_epoch(data.train, train)
    sparsifier.on_step_start(t_f, 0, spe, learning_rate(train, t_f))
    if sparsifier.alive_per_group != 1:
        raise RuntimeError(f"{sparsifier.alive_per_group} combinations per group still alive at t_f")
    model.eval()

    weight = module.parametrizations["weight"].original.detach()
    lbc = param.alive_bits().float().argmax(dim=1)
    magnitude = combination_index(to_groups(magnitude_mask(weight, pattern), pattern.m), pattern)

    gen = torch.Generator().manual_seed(10_000 + seed)
    order = torch.randperm(len(data.train.y), generator=gen)[:select_size]
    x_sel, y_sel = data.train.x[order], data.train.y[order]
    captured: dict[str, torch.Tensor] = {}
    hook = module.register_forward_hook(lambda _m, inputs, _o: captured.update(x=inputs[0].detach()))
    with torch.no_grad():
        reference = model(x_sel)
    hook.remove()
    tail = _tail_after(model, layer)
    with torch.no_grad():
        rebuilt = tail(nn.functional.linear(captured["x"], weight * param.mask, module.bias))
    torch.testing.assert_close(rebuilt, reference)  # the tail really is the rest of the network

    oracle_started = time.perf_counter()
    oracle, cand_losses = greedy_oracle(captured["x"], weight, module.bias, lbc, pattern, tail, y_sel)
    oracle_seconds = time.perf_counter() - oracle_started
    oracle_seq = sequential_oracle(captured["x"], weight, module.bias, lbc, pattern, tail, y_sel)
    c = pattern.num_combinations
    randoms = [torch.randint(0, c, lbc.shape, generator=gen) for _ in range(random_draws)]
    choices = {
        "lbc": lbc,
        "magnitude": magnitude,
        "oracle": oracle,
        "oracle_seq": oracle_seq,
        "random": randoms[0],
    }

    pairs = [
        ("lbc", "magnitude"),
        ("lbc", "oracle"),
        ("magnitude", "oracle"),
        ("random", "oracle"),
        ("lbc", "oracle_seq"),
        ("magnitude", "oracle_seq"),
    ]
    agree = {f"{a}_vs_{b}": agreement(choices[a], choices[b], pattern) for a, b in pairs}
    # Most groups barely matter (a near-tie among candidates); agreement where the choice matters
    # most: the tenth of groups with the largest spread of candidate losses.
    spread = cand_losses.max(dim=1).values - cand_losses.min(dim=1).values
    decisive = spread >= torch.quantile(spread, 0.9)
    agree_decisive = {
        f"{a}_vs_oracle": agreement(choices[a][decisive], oracle[decisive], pattern)
        for a in ("lbc", "magnitude", "random")
    }
    idx = torch.arange(lbc.shape[0])
    in_finalists = {
        name: float(finalists[idx, choices[name]].float().mean()) for name in ("oracle", "magnitude")
    }
    # Greedy per-group regret: loss increase of a choice over the oracle's, one group at a time.
    best = cand_losses.min(dim=1).values
    regret = {name: float((cand_losses[idx, choices[name]] - best).mean()) for name in ("lbc", "magnitude")}

    evaluations: dict[str, dict[str, float]] = {}
    for name in MASKS:
        draws = randoms if name == "random" else [choices[name]]
        rows = []
        for combos in draws:
            _set_mask(param, combos, pattern)
            sel_loss, sel_acc = _loss_acc(model, x_sel, y_sel)
            with torch.no_grad():
                val = evaluate(model, data.val, device=torch.device("cpu"))
            rows.append((sel_loss, sel_acc, float(val["loss"]), float(val["accuracy"])))
        evaluations[name] = {
            key: statistics.fmean(r[i] for r in rows)
            for i, key in enumerate(("select_loss", "select_accuracy", "val_loss", "val_accuracy"))
        }
    _set_mask(param, lbc, pattern)

    return {
        "dataset": dataset,
        "model": "lenet5",
        "width": width,
        "pattern": str(pattern),
        "seed": seed,
        "epochs": epochs,
        "t_f": t_f,
        "layer": layer,
        "layer_shape": list(weight.shape),
        "groups": int(lbc.shape[0]),
        "combinations": c,
        "chance_agreement": 1.0 / c,
        "alive_before_last_removal": alive_before,
        "select_size": select_size,
        "random_draws": random_draws,
        "agreement": agree,
        "agreement_decisive_tenth": agree_decisive,
        "changed_by_oracle_seq": float((oracle_seq != lbc).float().mean()),
        "in_lbc_finalists": in_finalists,
        "mean_greedy_regret": regret,
        "masks": evaluations,
        "oracle_seconds": oracle_seconds,
        "total_seconds": time.perf_counter() - started,
        "history": [{k: v for k, v in h.items() if isinstance(v, int | float)} for h in outcome.history],
    }


# ---------------------------------------------------------------- report


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    std = (statistics.stdev(values) if len(values) > 1 else 0.0) * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_tables(records: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["pattern"], r["layer"]), []).append(r)
    lines = [
        "Exact match of the kept combination (% of groups, mean ± std over seeds). oracle = greedy per "
        "group with all others at LBC's choice; decisive = the tenth of groups with the largest spread "
        "of candidate losses; seq = one coordinate-descent sweep from LBC's choice",
        "",
        "| dataset | pattern | layer (groups) | seeds | chance 1/C | LBC=mag | LBC=oracle | mag=oracle | "
        "random=oracle | LBC=oracle (decisive) | mag=oracle (decisive) | random=oracle (decisive) | "
        "LBC=seq | mag=seq |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (ds, pat, layer), rs in sorted(groups.items()):
        a = [r["agreement"] for r in rs]
        d = [r["agreement_decisive_tenth"] for r in rs]
        cells = [_ms([x[k]["exact_match"] for x in a]) for k in ("lbc_vs_magnitude", "lbc_vs_oracle")]
        cells += [_ms([x[k]["exact_match"] for x in a]) for k in ("magnitude_vs_oracle", "random_vs_oracle")]
        cells += [_ms([x[k]["exact_match"] for x in d]) for k in ("lbc_vs_oracle", "magnitude_vs_oracle")]
        cells += [_ms([x["random_vs_oracle"]["exact_match"] for x in d])]
        cells += [
            _ms([x[k]["exact_match"] for x in a]) for k in ("lbc_vs_oracle_seq", "magnitude_vs_oracle_seq")
        ]
        lines.append(
            f"| {ds} | {pat} | {layer} ({rs[0]['groups']}) | {len(rs)} | "
            f"{100 * rs[0]['chance_agreement']:.1f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Mean overlap of kept weights (% of the N kept positions in common), and how often a choice was "
        "among LBC's finalists (combinations alive just before the last removal)",
        "",
        "| dataset | pattern | LBC/mag | LBC/oracle | mag/oracle | random/oracle | oracle in finalists | "
        "mag in finalists | finalists per group |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (ds, pat, _layer), rs in sorted(groups.items()):
        a = [r["agreement"] for r in rs]
        cells = [
            _ms([x[k]["mean_overlap"] for x in a])
            for k in ("lbc_vs_magnitude", "lbc_vs_oracle", "magnitude_vs_oracle", "random_vs_oracle")
        ]
        cells += [_ms([r["in_lbc_finalists"][k] for r in rs]) for k in ("oracle", "magnitude")]
        cells += [str(rs[0]["alive_before_last_removal"])]
        lines.append(f"| {ds} | {pat} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Network with the layer under each mask (every other layer at LBC's choice, no fine-tuning): "
        "loss (accuracy %)",
        "",
        "| dataset | pattern | set | LBC | magnitude | greedy oracle | seq oracle | random (mean of draws) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (ds, pat, _layer), rs in sorted(groups.items()):
        for split, label in (("select", "selection (the oracles' own)"), ("val", "validation")):
            cells = []
            for name in MASKS:
                losses = [r["masks"][name][f"{split}_loss"] for r in rs]
                accs = [r["masks"][name][f"{split}_accuracy"] for r in rs]
                cells.append(f"{_ms(losses, 1.0, 3)} ({_ms(accs)})")
            lines.append(f"| {ds} | {pat} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from compare import data_config, environment

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--runs", default="digits:2:4", help="comma-separated dataset:N:M, e.g. digits:2:4,mnist:2:4"
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument(
        "--tf-frac", type=float, default=0.5, help="t_f as a fraction of the epochs (as compare.py)"
    )
    p.add_argument("--layer", default="classifier.3", help="a sparsified nn.Linear inside an nn.Sequential")
    p.add_argument(
        "--select-size", type=int, default=512, help="training images the oracle scores candidates on"
    )
    p.add_argument("--random-draws", type=int, default=5)
    p.add_argument("--width", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument(
        "--out", required=True, help="directory: runs.jsonl is appended to per run, results.json at the end"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    for item in args.runs.split(","):
        dataset, _, text = item.strip().partition(":")
        if dataset not in ("digits", "mnist"):
            p.error(f"unknown dataset {dataset!r} in {item!r}")
        runs.append((dataset, NMPattern.parse(text)))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    loaded: dict[str, Any] = {}
    for dataset, pattern in runs:
        # MNIST with random-crop augmentation, digits without: the configs of compare.py's sweeps.
        if dataset not in loaded:
            loaded[dataset] = load_data(data_config(dataset, augment=dataset == "mnist"))
        for seed in seeds:
            rec = one_run(
                dataset,
                loaded[dataset],
                pattern,
                seed,
                epochs=args.epochs,
                tf_frac=args.tf_frac,
                layer=args.layer,
                select_size=args.select_size,
                width=args.width,
                lr=args.lr,
                batch_size=args.batch_size,
                random_draws=args.random_draws,
            )
            records.append(rec)
            with (out / "runs.jsonl").open("a") as fh:  # kept if a later run is interrupted
                fh.write(json.dumps(rec) + "\n")
            a = rec["agreement"]
            print(
                f"{dataset} {pattern} seed={seed}: LBC=mag {100 * a['lbc_vs_magnitude']['exact_match']:.1f}% "
                f"LBC=oracle {100 * a['lbc_vs_oracle']['exact_match']:.1f}% "
                f"mag=oracle {100 * a['magnitude_vs_oracle']['exact_match']:.1f}% "
                f"(chance {100 * rec['chance_agreement']:.1f}%) oracle {rec['oracle_seconds']:.1f}s "
                f"total {rec['total_seconds']:.1f}s",
                flush=True,
            )
    tables = summary_tables(records)
    payload = {"environment": {**environment(), "argv": sys.argv}, "runs": records, "tables": tables}
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    print(tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
