"""End to end on the CPU N:M kernel: a Llama-class decoder's per-token latency, an MLP and a ViT forward.

Each model is built from a config (random weights, nothing downloaded), made 2:4 by one-shot magnitude
masks (every linear layer except the LM head / the catalog's dense stem and classifier), timed dense
(PyTorch's own linear on the masked weights), then swapped onto the N:M kernel (``swap_to_nm_kernel``,
``measure=False``) and timed again, at 1 thread and all threads. The Llama decoder runs greedy decoding at
batch 1 with the KV cache: a prompt, then one forward per new token; the figure is the median per token.
The outputs of the swapped model are checked against the dense one (max abs difference of the logits /
outputs against a stated tolerance; for the decoder also whether the greedy tokens are identical).

Usage: python benchmarks/llama_decode.py [--quick] [--threads 1,all] [--dtypes float32,bfloat16]
       [--layers 4] [--prompt 16] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lbc_core.benchmark.environment import cpu_model
from lbc_core.benchmark.timing import time_callable
from lbc_core.kernels.native import native_status
from lbc_core.kernels.swap import swap_to_nm_kernel
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, build_sparsifier, magnitude_mask
from lbc_core.sparsity.selection import adapter_for, weight_layers

PATTERN = NMPattern(2, 4)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Max abs difference allowed between the swapped and the dense model's outputs (logits for the decoder).
# float32: different summation order only; bfloat16: one bf16 rounding step per layer can differ.
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.25}


@dataclass(frozen=True)
class Row:
    model: str
    dtype: str
    threads: int
    what: str  # "per token" or "forward"
    dense_ms: float
    nm_ms: float
    max_abs_diff: float
    tolerance: float
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.nm_ms


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", default="1,all")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the Llama model")
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--quick", action="store_true", help="small models, a smoke run (numbers mean nothing)"
    )
    return parser.parse_args()


def thread_counts(spec: str) -> list[int]:
    return [os.cpu_count() or 1 if part == "all" else int(part) for part in spec.split(",")]


def llama_config(quick: bool, layers: int) -> dict[str, Any]:
    if quick:
        return {
            "hidden_size": 256,
            "intermediate_size": 688,
            "num_hidden_layers": 2,
            "vocab_size": 1000,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 256,
        }
    # About 1.35 GB of fp32 weights at 4 layers (206 M in the 2:4 layers, 131 M in embeddings + LM head):
    # far larger than any L3 cache, so decoding streams the weights from DRAM every token.
    return {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": layers,
        "vocab_size": 32000,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "max_position_embeddings": 2048,
    }


def one_shot_decoder(model: nn.Module) -> int:
    """Magnitude 2:4 on every linear-like layer but the LM head; returns the number of weights masked."""
    count = 0
    with torch.no_grad():
        for name, module in weight_layers(model):
            adapter = adapter_for(module)
            if name == "lm_head" or adapter is None:
                continue
            weight = module.weight
            assert isinstance(weight, torch.Tensor)
            weight.mul_(magnitude_mask(weight, PATTERN, adapter.layout))
            count += weight.numel()
    return count


def one_shot_catalog(model: nn.Module) -> None:
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=PATTERN))
    sparsifier.prepare(model)
    sparsifier.finalize()


def _greedy_step(logits: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The arg-max token of the last position and its margin over the runner-up (the top-2 logit gap)."""
    top = logits[:, -1].float().topk(2, dim=-1)
    return top.indices[:, :1], float(top.values[0, 0] - top.values[0, 1])


def decode(
    model: nn.Module, prompt: torch.Tensor, new_tokens: int
) -> tuple[list[float], torch.Tensor, list[float]]:
    """Greedy decoding with the KV cache: per-token milliseconds (after the prompt), the new tokens and
    each token's top-2 logit gap."""
    times, tokens, gaps = [], [], []
    with torch.no_grad():
        out = model(prompt, use_cache=True)
        token, gap = _greedy_step(out.logits)
        tokens.append(token)
        gaps.append(gap)
        for _ in range(new_tokens - 1):
            start = time.perf_counter()
            out = model(token, cache=out.cache, use_cache=True)
            token, gap = _greedy_step(out.logits)
            times.append((time.perf_counter() - start) * 1e3)
            tokens.append(token)
            gaps.append(gap)
    return times, torch.cat(tokens, dim=1), gaps


def compare_tokens(dense: torch.Tensor, nm: torch.Tensor, dense_gaps: list[float]) -> str:
    """Whether the greedy tokens are identical; where not, the first differing position and the dense
    model's top-2 gap there (a near tie that the outputs' difference can flip)."""
    differ = (dense != nm).flatten().nonzero()
    if not len(differ):
        return f"greedy tokens identical ({dense.shape[1]})"
    first = int(differ[0])
    return (
        f"greedy tokens: first {first} identical, then differ; dense top-2 gap there {dense_gaps[first]:.2g}"
    )


def bench_llama(args: argparse.Namespace, dtype: torch.dtype, threads: list[int]) -> list[Row]:
    import transformers

    config = transformers.LlamaConfig(**llama_config(args.quick, args.layers))
    torch.manual_seed(0)
    model: nn.Module = transformers.LlamaForCausalLM(config)
    model = model.to(dtype).eval()
    masked = one_shot_decoder(model)
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt), generator=torch.Generator().manual_seed(1))
    label = f"Llama {config.num_hidden_layers}x{config.hidden_size}/{config.intermediate_size} ({masked / 1e6:.0f} M 2:4)"

    def run_all() -> tuple[dict[int, float], torch.Tensor, list[float], torch.Tensor]:
        per_token = {}
        for count in threads:
            torch.set_num_threads(count)
            decode(model, prompt, 4)  # warm-up: allocator, thread pool, first-call costs
            times, tokens, gaps = decode(model, prompt, args.new_tokens)
            per_token[count] = statistics.median(times)
        with torch.no_grad():
            logits = model(prompt).logits.float()
        return per_token, tokens, gaps, logits

    dense, dense_tokens, dense_gaps, dense_logits = run_all()
    swap_to_nm_kernel(model, PATTERN, measure=False)
    nm, nm_tokens, _, nm_logits = run_all()
    diff = float((nm_logits - dense_logits).abs().max())
    same = compare_tokens(dense_tokens, nm_tokens, dense_gaps)
    return [
        Row(
            label,
            str(dtype).removeprefix("torch."),
            count,
            "per token",
            dense[count],
            nm[count],
            diff,
            TOLERANCE[dtype],
            same,
        )
        for count in threads
    ]


def bench_catalog(
    name: str,
    label: str,
    build_args: dict[str, Any],
    input_shape: tuple[int, ...],
    dtype: torch.dtype,
    threads: list[int],
    note: str,
) -> list[Row]:
    torch.manual_seed(0)
    model = build_model(name, **build_args)
    one_shot_catalog(model)
    model = model.to(dtype).eval()
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(1)).to(dtype)

    def run_all() -> tuple[dict[int, float], torch.Tensor]:
        timings = {}
        with torch.no_grad():
            for count in threads:
                torch.set_num_threads(count)
                forward: Callable[[], object] = lambda: model(x)  # noqa: E731
                timings[count] = time_callable(
                    forward, device="cpu", warmup=3, repeats=15, min_repeat_ms=5.0
                ).median_ms
            return timings, model(x).float()

    dense, dense_out = run_all()
    swap_to_nm_kernel(model, PATTERN, measure=False)
    nm, nm_out = run_all()
    diff = float((nm_out - dense_out).abs().max())
    return [
        Row(
            label,
            str(dtype).removeprefix("torch."),
            count,
            "forward",
            dense[count],
            nm[count],
            diff,
            TOLERANCE[dtype],
            note,
        )
        for count in threads
    ]


def main() -> None:
    args = parse_args()
    threads = thread_counts(args.threads)
    status = native_status()
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}")
    print(f"kernel: {status.describe()}")
    print(f"load average at start (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"pattern {PATTERN} one-shot magnitude; batch 1; dense = PyTorch's linear on the masked weights")
    if not status.available:
        print("the native kernel is not loaded: nothing would be swapped, so nothing is timed")
        return
    quick = args.quick
    rows: list[Row] = []
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        rows += bench_llama(args, dtype, threads)
        mlp_args = (
            {"input_features": 512, "hidden_dim": 512, "depth": 2}
            if quick
            else {"input_features": 4096, "hidden_dim": 4096, "depth": 4}
        )
        rows += bench_catalog(
            "mlp",
            f"MLP {mlp_args['depth']}x{mlp_args['hidden_dim']}",
            mlp_args,
            (mlp_args["input_features"],),
            dtype,
            threads,
            "1 input row",
        )
        vit_args = (
            {"embed_dim": 128, "depth": 2, "num_heads": 4, "image_size": 32, "patch_size": 8}
            if quick
            else {"embed_dim": 1024, "depth": 8, "num_heads": 16, "image_size": 32, "patch_size": 8}
        )
        tokens = (vit_args["image_size"] // vit_args["patch_size"]) ** 2 + 1
        rows += bench_catalog(
            "vit",
            f"ViT {vit_args['depth']}x{vit_args['embed_dim']}",
            vit_args,
            (3, vit_args["image_size"], vit_args["image_size"]),
            dtype,
            threads,
            f"1 image = {tokens} token rows",
        )
    header = f"{'model':42} {'dtype':8} {'thr':>3} {'what':9} {'dense ms':>9} {'2:4 ms':>9} {'speedup':>7} {'max|diff|':>9} {'tol':>6}  note"
    print(header)
    print("-" * len(header))
    for row in rows:
        ok = "ok" if row.max_abs_diff <= row.tolerance else "OVER"
        print(
            f"{row.model:42} {row.dtype:8} {row.threads:>3} {row.what:9} {row.dense_ms:9.2f} {row.nm_ms:9.2f} "
            f"{row.speedup:6.2f}x {row.max_abs_diff:9.2e} {row.tolerance:6.2g}  {ok}; {row.note}"
        )
    print(f"load average at end (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
