"""LBC score-state bytes per fp32 weight byte: this library's per-weight layout vs the [G, C] layout.

The [G, C] layout (the authors' code) keeps a score, its gradient and its momentum per combination
per group. The per-weight layout keeps one score and its momentum per weight (updated inside the
backward pass, so no gradient buffer) plus C/M packed alive bits; the cached boolean mask is listed
separately because every N:M method keeps one. Usage: python benchmarks/score_memory.py
"""

from __future__ import annotations

from torch import nn

from lbc_core.sparsity import LayerPolicy, LBCSparsifier, NMPattern, RemovalSchedule, ScoreOptimizer

PATTERNS = (NMPattern(2, 4), NMPattern(2, 8), NMPattern(4, 8), NMPattern(1, 16), NMPattern(2, 16))


def main() -> None:
    layer = nn.Linear(1024, 1024)  # 1 Mi weights: large enough that fixed overheads vanish
    weight_bytes = layer.weight.numel() * layer.weight.element_size()
    print(
        f"layer: Linear 1024x1024 fp32 ({weight_bytes / 2**20:.1f} MiB of weights); score optimizer SGD+momentum"
    )
    print(
        f"{'pattern':8} {'C':>5} {'[G,C] x':>8} {'score':>7} {'momentum':>9} {'alive':>7} {'state x':>8} {'mask x':>7}"
    )
    for pattern in PATTERNS:
        model = nn.Sequential(nn.Linear(1024, 1024))
        model[0].load_state_dict(layer.state_dict())
        sparsifier = LBCSparsifier(
            pattern,
            LayerPolicy(keep_stem_dense=False, keep_classifier_dense=False),
            RemovalSchedule(0, 10),
            ScoreOptimizer(momentum=0.9),
        )
        sparsifier.prepare(model)
        state = sparsifier.state_bytes()
        reference = (
            3 * (layer.weight.numel() // pattern.m) * pattern.num_combinations * 4
        )  # score+grad+momentum
        lean = state["score"] + state.get("score_momentum", 0) + state["alive"] + state["score_steps"]
        print(
            f"{pattern!s:8} {pattern.num_combinations:>5} {reference / weight_bytes:>7.2f}x "
            f"{state['score'] / weight_bytes:>6.2f}x {state.get('score_momentum', 0) / weight_bytes:>8.2f}x "
            f"{state['alive'] / weight_bytes:>6.3f}x {lean / weight_bytes:>7.2f}x {state['mask'] / weight_bytes:>6.2f}x"
        )


if __name__ == "__main__":
    main()
