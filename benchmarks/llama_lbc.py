"""LBC vs dense on a Llama-class decoder: training step time and LBC's state bytes per weight byte.

A Llama model is built by transformers from a config (nothing downloaded) and prepared through the Hugging
Face source's dense defaults (the LM head stays dense; embeddings are not linear layers). LBC is timed in
its removal phase (scores training), its most expensive phase, with the score optimizer that follows
AdamW (Adam) as the pipeline picks it, and with SGD+momentum. Targets: <= 1.05x the dense step time and
<= 2.5x the weight bytes of score state (mask excluded: every N:M method keeps one).
Usage: python benchmarks/llama_lbc.py [--steps 12] [--hidden 128] [--layers 2] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import torch
import transformers

from lbc_core.models.huggingface import dense_defaults
from lbc_core.sparsity import NMPattern, RemovalSchedule, ScoreOptimizer, SparsityConfig, build_sparsifier
from lbc_core.sparsity.lbc import LBCSparsifier

VARIANTS: tuple[tuple[str, str, ScoreOptimizer | None], ...] = (
    ("dense", "dense", None),
    ("lbc adam", "lbc", ScoreOptimizer(kind="adam", momentum=0.0, weight_decay=0.0)),
    ("lbc sgd", "lbc", ScoreOptimizer(kind="sgd", momentum=0.9)),
)


def build(options: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=options.vocab,
        hidden_size=options.hidden,
        intermediate_size=options.hidden * 8 // 3 // 16 * 16,
        num_hidden_layers=options.layers,
        num_attention_heads=options.hidden // 64,
        num_key_value_heads=options.hidden // 64,
        max_position_embeddings=options.seq,
    )
    return transformers.LlamaForCausalLM(config)


def run(options: argparse.Namespace, method: str, score: ScoreOptimizer | None) -> dict[str, Any]:
    model = build(options)
    sparsifier = build_sparsifier(
        SparsityConfig(
            method=method, pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1000), score_optimizer=score
        )
    )
    selection = sparsifier.prepare(model, dense_defaults(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, options.vocab, (options.batch, options.seq))
    times = []
    for i in range(options.warmup + options.steps):
        start = time.perf_counter()
        sparsifier.on_step_start(0, i, 10_000, 1e-4)
        loss = model(input_ids=tokens, labels=tokens).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= options.warmup:
            times.append(time.perf_counter() - start)
    weight_bytes = sum(
        model.get_submodule(t.name).parametrizations.weight.original.numel() * 4 for t in selection.targets
    )
    state = sparsifier.state_bytes() if isinstance(sparsifier, LBCSparsifier) else {}
    score = sum(v for k, v in state.items() if k != "mask")
    return {"times": times, "layers": len(selection.targets), "weight_bytes": weight_bytes, "state": score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{platform.processor() or platform.machine()}, threads={options.threads}; Llama hidden={options.hidden} "
        f"layers={options.layers} vocab={options.vocab}, batch {options.batch}x{options.seq} tokens, 2:4"
    )
    # Interleave repeats so drift on a shared machine hits every variant alike.
    samples: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    results: dict[str, dict[str, Any]] = {}
    for _ in range(3):
        for name, method, score in VARIANTS:
            results[name] = run(options, method, score)
            samples[name] += results[name]["times"]
    dense = statistics.median(samples["dense"])
    print(
        f"{'variant':9} {'median ms':>10} {'vs dense':>9} {'(<=1.05x)':>9} {'layers':>7} {'state/weight':>13} {'(<=2.5x)':>9}"
    )
    for name, _, _ in VARIANTS:
        median = statistics.median(samples[name])
        r = results[name]
        ratio = r["state"] / r["weight_bytes"] if r["weight_bytes"] and r["state"] else 0.0
        print(
            f"{name:9} {median * 1e3:>10.1f} {median / dense:>8.3f}x {'':>9} {r['layers']:>7} {ratio:>12.2f}x"
        )


if __name__ == "__main__":
    main()
