"""The fused LBC step (one native pass per layer) computes what the plain PyTorch path computes.

The fused loop performs the plain path's operations in the same order and rounds where ATen rounds (a
fused multiply-add exactly where ATen's vectorised ``add(..., alpha=)`` uses one). With SGD scores the
results are therefore bit-identical wherever ATen runs its AVX2 or AVX-512 kernels (on a CPU without FMA,
ATen rounds twice and the results agree to the last few bits). With Adam scores they agree within fp32
rounding (rtol 1e-5): Adam's step is a longer chain in which ATen's order is not pinned down here. Every
removal decision (which combinations stay alive) must be identical.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbc_core.sparsity import LayerPolicy, LBCSparsifier, NMPattern, RemovalSchedule, ScoreOptimizer
from lbc_core.sparsity.lbc import LBCMask

pytestmark = pytest.mark.usefixtures("fused_lbc_step")

OPTIMIZERS = {
    "sgd": ScoreOptimizer(momentum=0.9, weight_decay=5e-4),
    "sgd-nesterov": ScoreOptimizer(momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd-plain": ScoreOptimizer(momentum=0.0, weight_decay=0.0),
    "sgd-dampening": ScoreOptimizer(momentum=0.5, dampening=0.3, weight_decay=5e-4),
    "adam": ScoreOptimizer(kind="adam", weight_decay=5e-4),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))


def _run(kernel: str, pattern: NMPattern, optimizer: ScoreOptimizer, *, defer: bool = False):
    """A short run with progressive removal; per step: every layer's alive bits and scores."""
    model = _model()
    sparsifier = LBCSparsifier(
        pattern,
        LayerPolicy(include=("*",), keep_stem_dense=False, keep_classifier_dense=False),
        # Removal starts after an epoch: right after one Adam step every score is about +-lr, and the
        # rankings would be decided by ties that rounding breaks either way.
        RemovalSchedule(t_i=1, t_f=3, power=3, per_step=True),
        optimizer,
        kernel=kernel,
    )
    sparsifier.prepare(model)
    if defer:
        sparsifier.defer_score_steps()
    weights = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator().manual_seed(1)
    trace = []
    epochs, steps = 4, 5
    for epoch in range(epochs):
        for step in range(steps):
            sparsifier.on_step_start(epoch, step, steps, 0.05)
            weights.zero_grad()
            for _ in range(2 if defer else 1):
                x = torch.randn(24, 48, generator=data)
                y = torch.randint(0, 32, (24,), generator=data)
                nn.functional.cross_entropy(model(x), y).backward()
            sparsifier.step_scores(0.5 if defer else 1.0)
            weights.step()
            layers = [param for _, param in sparsifier._iter_parametrizations()]
            trace.append([(layer.alive.clone(), layer.score.clone(), layer.mask.clone()) for layer in layers])
    assert sparsifier.scores_frozen
    return trace, model


@pytest.mark.parametrize("pattern", [NMPattern(2, 4), NMPattern(1, 16), NMPattern(2, 8)], ids=str)
@pytest.mark.parametrize("optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_fused_step_matches_the_plain_path(pattern: NMPattern, optimizer: ScoreOptimizer) -> None:
    plain, plain_model = _run("plain", pattern, optimizer)
    fused, fused_model = _run("fused", pattern, optimizer)
    exact = optimizer.kind == "sgd" and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    tolerance = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": 1e-5, "atol": 1e-7}
    for step, (ours, reference) in enumerate(zip(fused, plain, strict=True)):
        for (alive, score, mask), (ref_alive, ref_score, ref_mask) in zip(ours, reference, strict=True):
            assert torch.equal(alive, ref_alive), step
            assert torch.equal(mask, ref_mask), step
            torch.testing.assert_close(score, ref_score, **tolerance)
    for ours_p, ref_p in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(ours_p, ref_p, **tolerance)


@pytest.mark.parametrize("pattern", [NMPattern(2, 4), NMPattern(1, 16)], ids=str)
def test_fused_accumulation_of_deferred_signals_matches_the_plain_path(pattern: NMPattern) -> None:
    plain, _ = _run("plain", pattern, OPTIMIZERS["sgd"], defer=True)
    fused, _ = _run("fused", pattern, OPTIMIZERS["sgd"], defer=True)
    for ours, reference in zip(fused, plain, strict=True):
        for (alive, score, _), (ref_alive, ref_score, _) in zip(ours, reference, strict=True):
            assert torch.equal(alive, ref_alive)
            torch.testing.assert_close(score, ref_score, rtol=1e-5, atol=1e-7)


def test_fused_step_changes_the_scores_it_is_given() -> None:
    # Guards the comparison above against both paths doing nothing.
    trace, _ = _run("fused", NMPattern(2, 4), OPTIMIZERS["sgd"])
    first_scores = trace[0][0][1]
    assert first_scores.abs().max() > 0


def test_auto_kernel_falls_back_to_the_plain_path_for_weights_it_does_not_cover() -> None:
    weight = torch.randn(8, 8, dtype=torch.bfloat16)
    layer = LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel="auto")
    layer.lr = 0.1
    w = weight.clone().requires_grad_(True)
    layer(w).sum().backward()
    assert w.grad is not None and int(layer.score_steps) == 1


def test_fused_kernel_names_what_it_cannot_run() -> None:
    weight = torch.randn(8, 8, dtype=torch.bfloat16)
    layer = LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel="fused")
    with pytest.raises(ValueError, match=r"CPU float32/float64 weights, got torch.bfloat16"):
        layer(weight.clone().requires_grad_(True))
    with pytest.raises(ValueError, match="kernel must be one of"):
        LBCSparsifier(NMPattern(2, 4), kernel="cuda")


def test_the_operator_rejects_state_of_the_wrong_shape() -> None:
    w, g, mask = torch.randn(4, 8), torch.randn(4, 8), torch.ones(4, 8)
    with pytest.raises(RuntimeError, match="score has shape"):
        torch.ops.lbc_sparsity.sgd_step(
            w, g, torch.zeros(8, 4), None, mask, torch.empty(4, 8), 0.1, 0.0, 0.0, 0.0, False, True
        )
    with pytest.raises(RuntimeError, match="mask and masked_grad are given together"):
        torch.ops.lbc_sparsity.sgd_step(
            w, g, torch.zeros(4, 8), None, mask, None, 0.1, 0.0, 0.0, 0.0, False, True
        )


def test_an_all_ones_mask_is_skipped_until_a_removal_prunes_weights() -> None:
    weight = torch.randn(4, 8)
    layer = LBCMask(weight, NMPattern(2, 4), ScoreOptimizer(), kernel="fused")
    assert layer.mask_is_dense()
    layer.remove(1)  # one combination per group: exactly 2:4
    assert not layer.mask_is_dense()
    layer.lr = 0.1
    w = weight.clone().requires_grad_(True)
    grad = torch.randn(4, 8)
    out = layer(w)
    torch.testing.assert_close(out, weight * layer.mask, rtol=0, atol=0)
    out.backward(grad)
    assert w.grad is not None
    torch.testing.assert_close(w.grad, grad * layer.mask, rtol=0, atol=0)
