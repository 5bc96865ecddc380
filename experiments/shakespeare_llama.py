"""2:4 sparsity of a small "pretrained" Llama on tiny Shakespeare: LBC against the baselines.

A user arrives with a pretrained Hugging Face model. This experiment stands one in: a small
``LlamaForCausalLM`` built from a config and trained DENSE on the corpus through our own pipeline
(method ``dense``, task ``causal-lm``); its ``export/hf_model/`` is the pretrained directory. From that
directory every method runs with the same budget (epochs, learning rate, warm-up, batch, seeds):

- ``dense``         : dense fine-tune, the reference perplexity;
- ``lbc``           : LBC 2:4 with the uniform score start (published method), t_f = half the epochs;
- ``srste``         : SR-STE 2:4 (lambda_w = 2e-4), sparse from the first step;
- ``wanda``         : one-shot Wanda 2:4 (calibrated on training blocks) + fine-tune;
- ``asp``           : one-shot magnitude 2:4 + fine-tune;
- ``lbc_magnitude`` : LBC with the scores started from the magnitude prior (``score_init="magnitude"``).

Every run goes through ``lbc_core.pipeline.run`` with the Hugging Face model source; the perplexity
recorded is the pipeline's summary ``val_perplexity`` (the model after its masks are applied for good,
and the pipeline verifies the exported weights are exactly 2:4).

Data: the corpus is cut by characters, the first ``1 - val_fraction`` for training (and for training the
byte-level BPE tokenizer) and the rest for validation (``DataConfig.val_path``), so no validation text is
seen by the tokenizer or the model. Training uses the first ``--train-blocks`` blocks (``limit``).

Usage (from the repository root; the corpus is the sibling ``shared`` checkout's)::

    python experiments/shakespeare_llama.py --out runs/shakespeare-llama --seeds 0,1

Prints a markdown table (mean +- half the range over seeds, and each seed) and writes it, with every
record, to ``OUT/results.md`` and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from lbc_core.data import DataConfig  # noqa: E402
from lbc_core.pipeline import ModelConfig, RunConfig, run  # noqa: E402
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig  # noqa: E402
from lbc_core.training import TrainConfig  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
METHODS = ("dense", "lbc", "srste", "wanda", "asp", "lbc_magnitude")


@dataclass(frozen=True)
class Setup:
    """Everything that defines one experiment; the same values for every method and seed."""

    vocab_size: int = 512
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 176  # a multiple of 16 (and of M = 4), 2.75 x hidden as in Llama
    block_size: int = 128
    train_blocks: int = 600
    val_fraction: float = 0.1
    pretrain_epochs: int = 4
    pretrain_lr: float = 3e-3
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 16
    warmup_fraction: float = 0.1


def split_corpus(corpus: Path, out: Path, val_fraction: float) -> tuple[Path, Path]:
    """The first part of the text trains (model and tokenizer), the last part validates."""
    text = corpus.read_text(encoding="utf-8")
    cut = int(len(text) * (1 - val_fraction))
    cut = text.rfind("\n", 0, cut) + 1 or cut  # at a line boundary
    train, val = out / "train.txt", out / "val.txt"
    train.write_text(text[:cut], encoding="utf-8")
    val.write_text(text[cut:], encoding="utf-8")
    return train, val


def train_tokenizer(text_file: Path, vocab_size: int, path: Path) -> Path:
    """A byte-level BPE tokenizer.json trained on the training text only."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(text_file.read_text(encoding="utf-8").splitlines(keepends=True), trainer)
    tokenizer.save(str(path))
    return path


def build_llama(setup: Setup, tokenizer: Path, directory: Path, seed: int = 0) -> Path:
    """A randomly initialised LlamaForCausalLM saved with save_pretrained, with its tokenizer beside it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=setup.vocab_size,
        hidden_size=setup.hidden,
        intermediate_size=setup.intermediate,
        num_hidden_layers=setup.layers,
        num_attention_heads=setup.heads,
        num_key_value_heads=setup.heads,
        max_position_embeddings=setup.block_size,
        tie_word_embeddings=False,  # the LM head stays dense and separate, as in larger Llamas
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    (directory / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    return directory


def run_config(
    setup: Setup,
    model_dir: Path,
    train_text: Path,
    val_text: Path,
    method: str,
    seed: int,
    *,
    epochs: int,
    lr: float,
) -> RunConfig:
    """One pipeline run from a Hugging Face directory; only ``method`` and ``seed`` vary between runs."""
    lbc_method = method.startswith("lbc")
    sparsity = SparsityConfig(
        method="lbc" if lbc_method else method,
        pattern=NMPattern(2, 4),
        # Removal finishes at half the budget (the LBC authors' choice), evaluated every step.
        schedule=RemovalSchedule(t_i=0.0, t_f=epochs / 2, power=3.0, per_step=True),
        score_init="magnitude" if method == "lbc_magnitude" else "uniform",
    )
    return RunConfig(
        task="causal-lm",
        model=ModelConfig(source="huggingface", path=str(model_dir)),
        data=DataConfig(
            source="text",
            path=str(train_text),
            val_path=str(val_text),
            tokenizer=str(model_dir / "tokenizer.json"),
            block_size=setup.block_size,
            limit=setup.train_blocks,
            seed=seed,
        ),
        sparsity=sparsity,
        train=TrainConfig(
            epochs=epochs,
            batch_size=setup.batch_size,
            optimizer="adamw",
            lr=lr,
            weight_decay=0.01,
            warmup_epochs=setup.warmup_fraction * epochs,
            grad_clip_norm=1.0,
            seed=seed,
            device="cpu",
        ),
    )


def run_method(
    setup: Setup, model_dir: Path, train_text: Path, val_text: Path, method: str, seed: int, out: Path
) -> dict[str, Any]:
    config = run_config(
        setup, model_dir, train_text, val_text, method, seed, epochs=setup.epochs, lr=setup.lr
    )
    start = time.perf_counter()
    result = run(config, out, resume=False)
    return {
        "method": method,
        "seed": seed,
        "val_perplexity": result.summary["val_perplexity"],
        "seconds": round(time.perf_counter() - start, 1),
        "out": str(out),
    }


def pretrain(setup: Setup, corpus: Path, out: Path) -> tuple[Path, Path, Path, dict[str, Any]]:
    """Tokenizer, random Llama, dense training: returns the pretrained directory and the text files."""
    out.mkdir(parents=True, exist_ok=True)
    train_text, val_text = split_corpus(corpus, out, setup.val_fraction)
    tokenizer = train_tokenizer(train_text, setup.vocab_size, out / "tokenizer.json")
    scratch = build_llama(setup, tokenizer, out / "llama-init")
    config = run_config(
        setup, scratch, train_text, val_text, "dense", 0, epochs=setup.pretrain_epochs, lr=setup.pretrain_lr
    )
    start = time.perf_counter()
    result = run(config, out / "pretrain", resume=False)
    record = {
        "val_perplexity": result.summary["val_perplexity"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    return out / "pretrain" / "export" / "hf_model", train_text, val_text, record


def table(records: Sequence[dict[str, Any]], methods: Sequence[str], dense_key: str = "dense") -> str:
    seeds = sorted({r["seed"] for r in records})
    by = {(r["method"], r["seed"]): r["val_perplexity"] for r in records}
    dense = [by[(dense_key, s)] for s in seeds if (dense_key, s) in by]
    dense_mean = statistics.fmean(dense) if dense else None
    head = "| method | val perplexity (mean ± half range) | vs dense | " + " | ".join(
        f"seed {s}" for s in seeds
    )
    lines = [head + " |", "|---" * (3 + len(seeds)) + "|"]
    for method in methods:
        values = [by[(method, s)] for s in seeds if (method, s) in by]
        if not values:
            continue
        mean = statistics.fmean(values)
        spread = (max(values) - min(values)) / 2
        ratio = f"{mean / dense_mean:.3f}x" if dense_mean else "-"
        cells = " | ".join(f"{by[(method, s)]:.2f}" if (method, s) in by else "-" for s in seeds)
        lines.append(f"| {method} | {mean:.2f} ± {spread:.2f} | {ratio} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Setup()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(**{name: getattr(args, name) for name in vars(defaults)})
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    started = time.perf_counter()
    pretrained, train_text, val_text, pre = pretrain(setup, args.corpus, args.out)
    print(f"pretrained dense: val perplexity {pre['val_perplexity']:.2f} ({pre['seconds']} s)", flush=True)
    records: list[dict[str, Any]] = []
    command = "python experiments/shakespeare_llama.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    machine = f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}"
    # Methods outer, seeds inner, results rewritten after each run: a cut-short sweep keeps whole rows.
    for method in methods:
        for seed in seeds:
            record = run_method(
                setup, pretrained, train_text, val_text, method, seed, args.out / f"{method}-seed{seed}"
            )
            print(
                f"{method} seed {seed}: val perplexity {record['val_perplexity']:.2f} ({record['seconds']} s)"
            )
            sys.stdout.flush()
            records.append(record)
            report = (
                f"{table(records, methods)}\n\n"
                f"Pretrained (dense, before fine-tuning): val perplexity {pre['val_perplexity']:.2f}.\n"
                f"Total wall time {time.perf_counter() - started:.0f} s on {machine}.\nCommand: `{command}`\n"
            )
            (args.out / "results.md").write_text(report, encoding="utf-8")
            results = {"setup": vars(setup), "pretrain": pre, "records": records, "command": command}
            (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print((args.out / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
