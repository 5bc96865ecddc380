"""Straight-through gradients of LBC, SR-STE and one-shot magnitude (ASP), checked against autograd.

Every expected value is computed independently: a functional re-implementation of the model runs on
plain tensors, and ``torch.autograd`` supplies ``dL/dw~`` (the gradient with respect to the masked
weight the layer really computes with).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.sparsity import (
    LayerPolicy,
    LBCSparsifier,
    MagnitudeSparsifier,
    NMPattern,
    RemovalSchedule,
    ScoreOptimizer,
    SRSTESparsifier,
)

SPARSIFY_ALL = LayerPolicy(keep_stem_dense=False, keep_classifier_dense=False)
PLAIN_SGD = ScoreOptimizer(kind="sgd", momentum=0.0, weight_decay=0.0)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def functional_loss(
    conv_w: torch.Tensor, fc_w: torch.Tensor, model: ConvNet, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """The same network as :class:`ConvNet`, written with plain tensors."""
    h = torch.tanh(F.conv2d(x, conv_w, model.conv.bias.detach(), padding=1)).flatten(1)
    return F.cross_entropy(F.linear(h, fc_w, model.fc.bias.detach()), y)


def original(module: nn.Module) -> torch.Tensor:
    """The trainable (unmasked) weight behind a parametrized layer."""
    return module.parametrizations.weight.original  # type: ignore[union-attr,return-value]


def state(module: nn.Module) -> nn.Module:
    """The layer's parametrization module (mask and, for LBC, score state)."""
    return module.parametrizations.weight[0]  # type: ignore[index,union-attr]


def grads_wrt_masked_weight(model: ConvNet, masks: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
    """``dL/dw~`` for both layers, with ``w~ = w * mask`` as an independent leaf."""
    wt_conv = (original(model.conv).detach() * masks["conv"]).requires_grad_()
    wt_fc = (original(model.fc).detach() * masks["fc"]).requires_grad_()
    loss = functional_loss(wt_conv, wt_fc, model, x, y)
    g_conv, g_fc = torch.autograd.grad(loss, [wt_conv, wt_fc])
    return {"conv": g_conv, "fc": g_fc}


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(6, 8, 4, 4, generator=gen), torch.randint(0, 4, (6,), generator=gen)


def nm_group_counts(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Kept entries per group, computed without the library: channels-last for conv, rows for linear."""
    if mask.dim() == 4:
        mask = mask.permute(0, 2, 3, 1)
    return mask.reshape(-1, m).sum(dim=1)


def lbc_with_partial_mask(
    pattern: NMPattern, optimizer: ScoreOptimizer = PLAIN_SGD
) -> tuple[ConvNet, LBCSparsifier, torch.optim.Optimizer]:
    """An LBC run whose mask is neither dense nor final: 2 of C combinations alive per group."""
    torch.manual_seed(0)
    model = ConvNet()
    sparsifier = LBCSparsifier(pattern, SPARSIFY_ALL, RemovalSchedule(t_i=0, t_f=10, power=1), optimizer)
    sparsifier.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):  # learn some scores while dense
        sparsifier.on_step_start(0, step, 3, lr=0.5)
        x, y = batch(step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    # 1:4 has C = 4; at t = 7 the schedule allows 1 + ceil(3 * 0.3) = 2 alive combinations.
    sparsifier.on_step_start(7, 0, 3, lr=1.0)
    assert sparsifier.alive_per_group == 2
    assert not sparsifier.scores_frozen
    return model, sparsifier, opt


# ---------------------------------------------------------------------------------------------
# LBC
# ---------------------------------------------------------------------------------------------


def test_lbc_weight_gradient_is_the_mask_times_the_gradient_of_the_masked_weight() -> None:
    model, sparsifier, _ = lbc_with_partial_mask(NMPattern(1, 4))
    masks = sparsifier.masks()
    for mask in masks.values():
        assert 0 < mask.float().mean() < 1  # partially pruned: the check below is not trivial
    x, y = batch(100)

    # Independent reference: autograd of loss(w * mask) with respect to w.
    w_conv = original(model.conv).detach().clone().requires_grad_()
    w_fc = original(model.fc).detach().clone().requires_grad_()
    ref_loss = functional_loss(w_conv * masks["conv"], w_fc * masks["fc"], model, x, y)
    ref_conv, ref_fc = torch.autograd.grad(ref_loss, [w_conv, w_fc])

    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(original(model.conv).grad, ref_conv)
    torch.testing.assert_close(original(model.fc).grad, ref_fc)

    dwt = grads_wrt_masked_weight(model, masks, x, y)
    for name, module in (("conv", model.conv), ("fc", model.fc)):
        grad = original(module).grad
        assert grad is not None
        torch.testing.assert_close(grad, masks[name] * dwt[name])
        assert torch.all(grad[~masks[name]] == 0)  # pruned weights get no weight gradient


def test_lbc_score_signal_is_w_times_grad_of_masked_weight_for_every_weight_pruned_ones_included() -> None:
    model, sparsifier, _ = lbc_with_partial_mask(NMPattern(1, 4), PLAIN_SGD)
    masks = sparsifier.masks()
    x, y = batch(200)
    dwt = grads_wrt_masked_weight(model, masks, x, y)
    weights = {"conv": original(model.conv).detach().clone(), "fc": original(model.fc).detach().clone()}
    before = {"conv": state(model.conv).score.clone(), "fc": state(model.fc).score.clone()}

    # lr=1 was passed to on_step_start; with plain SGD the score moves by exactly -g.
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()

    for name, module in (("conv", model.conv), ("fc", model.fc)):
        expected_signal = weights[name] * dwt[name]
        delta = state(module).score - before[name]
        torch.testing.assert_close(delta, -expected_signal)
        pruned = ~masks[name]
        assert pruned.any()
        # Pruned weights keep receiving the signal (their weight gradient is zero, their score's is not).
        assert torch.count_nonzero(delta[pruned]) > 0.9 * int(pruned.sum())


def test_lbc_score_step_scales_with_the_learning_rate_given_to_on_step_start() -> None:
    model, sparsifier, _ = lbc_with_partial_mask(NMPattern(1, 4), PLAIN_SGD)
    sparsifier.on_step_start(7, 1, 3, lr=0.25)
    masks = sparsifier.masks()
    x, y = batch(300)
    dwt = grads_wrt_masked_weight(model, masks, x, y)
    w = original(model.fc).detach().clone()
    before = state(model.fc).score.clone()
    F.cross_entropy(model(x), y).backward()
    torch.testing.assert_close(state(model.fc).score - before, -0.25 * w * dwt["fc"])


def test_lbc_scores_are_not_trained_in_eval_mode_or_without_grad() -> None:
    model, _, _ = lbc_with_partial_mask(NMPattern(1, 4))
    before = state(model.conv).score.clone()
    x, _ = batch(1)
    with torch.no_grad():
        model(x)
    model.eval()
    model(x).sum().backward()
    torch.testing.assert_close(state(model.conv).score, before, rtol=0, atol=0)


def test_lbc_forward_computes_with_the_masked_weight() -> None:
    model, sparsifier, _ = lbc_with_partial_mask(NMPattern(1, 4))
    masks = sparsifier.masks()
    torch.testing.assert_close(model.conv.weight, original(model.conv) * masks["conv"])
    x, _ = batch(5)
    expected = F.linear(
        torch.tanh(F.conv2d(x, original(model.conv) * masks["conv"], model.conv.bias, padding=1)).flatten(1),
        original(model.fc) * masks["fc"],
        model.fc.bias,
    )
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("text", ["1:4", "2:4", "2:8"])
def test_lbc_after_scores_freeze_scores_stop_changing_and_the_mask_is_exact_n_m(text: str) -> None:
    pattern = NMPattern.parse(text)
    torch.manual_seed(1)
    model = ConvNet()
    sparsifier = LBCSparsifier(
        pattern, SPARSIFY_ALL, RemovalSchedule(t_i=0, t_f=2, power=3), ScoreOptimizer()
    )
    sparsifier.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def train_step(epoch: int, step: int) -> None:
        sparsifier.on_step_start(epoch, step, 2, lr=0.05)
        x, y = batch(10 * epoch + step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for epoch in range(2):
        for step in range(2):
            train_step(epoch, step)
    assert not sparsifier.scores_frozen
    sparsifier.on_step_start(2, 0, 2, lr=0.05)
    assert sparsifier.alive_per_group == 1
    assert sparsifier.scores_frozen
    frozen_masks = sparsifier.masks()
    frozen_scores = {n: state(m).score.clone() for n, m in (("conv", model.conv), ("fc", model.fc))}
    frozen_momentum = {
        n: state(m).score_momentum.clone() for n, m in (("conv", model.conv), ("fc", model.fc))
    }
    weights_before = original(model.conv).detach().clone()

    for epoch in range(2, 5):
        for step in range(2):
            train_step(epoch, step)

    assert not torch.equal(original(model.conv).detach(), weights_before)  # weights still train
    for name, module in (("conv", model.conv), ("fc", model.fc)):
        torch.testing.assert_close(state(module).score, frozen_scores[name], rtol=0, atol=0)
        torch.testing.assert_close(state(module).score_momentum, frozen_momentum[name], rtol=0, atol=0)
        mask = sparsifier.masks()[name]
        assert torch.equal(mask, frozen_masks[name])
        assert torch.all(nm_group_counts(mask, pattern.m) == pattern.n)
        assert torch.all(nm_group_counts(module.weight.detach() != 0, pattern.m) <= pattern.n)
        assert int(state(module).alive_bits().sum(dim=1).max()) == 1
    assert sparsifier.metrics()["scores_frozen"] == 1.0
    assert sparsifier.metrics()["mask_density"] == pytest.approx(pattern.density)


def test_lbc_frozen_layers_still_get_the_masked_weight_gradient() -> None:
    torch.manual_seed(2)
    model = ConvNet()
    sparsifier = LBCSparsifier(NMPattern(2, 4), SPARSIFY_ALL, RemovalSchedule(t_i=0, t_f=1), PLAIN_SGD)
    sparsifier.prepare(model)
    sparsifier.on_step_start(1, 0, 1, lr=1.0)
    assert sparsifier.scores_frozen
    masks = sparsifier.masks()
    x, y = batch(7)
    dwt = grads_wrt_masked_weight(model, masks, x, y)
    F.cross_entropy(model(x), y).backward()
    torch.testing.assert_close(original(model.conv).grad, masks["conv"] * dwt["conv"])
    torch.testing.assert_close(original(model.fc).grad, masks["fc"] * dwt["fc"])


def test_lbc_removal_keeps_the_best_scored_combination_and_dead_combinations_never_return() -> None:
    pattern = NMPattern(2, 4)
    torch.manual_seed(3)
    model = ConvNet()
    LBCSparsifier(pattern, SPARSIFY_ALL).prepare(model)
    lbc_state = state(model.fc)
    table = pattern.combination_table()
    scores = torch.randn_like(lbc_state.score)
    lbc_state.score.copy_(scores)
    lbc_state.remove(3)
    combo_scores = scores.reshape(-1, 4) @ table.T  # a Linear's groups are rows of 4 inputs
    alive = lbc_state.alive_bits()
    assert torch.equal(alive.sum(dim=1), torch.full((alive.shape[0],), 3))
    expected = torch.zeros_like(alive).scatter_(1, combo_scores.topk(3, dim=1).indices, True)
    assert torch.equal(alive, expected)
    mask = ((alive.float() @ table) > 0).reshape(lbc_state.mask.shape)
    assert torch.equal(lbc_state.mask, mask)

    # Make a dead combination the best by far: removal never brings it back.
    dead = (~alive).float().argmax(dim=1)
    lbc_state.score.copy_((table[dead] * 100.0).reshape(lbc_state.score.shape))
    lbc_state.remove(1)
    final = lbc_state.alive_bits()
    assert torch.all(final.sum(dim=1) == 1)
    assert not torch.any(final & ~alive)


# ---------------------------------------------------------------------------------------------
# SR-STE
# ---------------------------------------------------------------------------------------------


def test_srste_gradient_is_straight_through_plus_decay_on_pruned_weights() -> None:
    torch.manual_seed(4)
    model = ConvNet()
    decay = 0.3  # large, so the decay term is far above numerical noise
    pattern = NMPattern(2, 4)
    sparsifier = SRSTESparsifier(pattern, SPARSIFY_ALL, decay=decay)
    sparsifier.prepare(model)
    x, y = batch(8)
    w = {"conv": original(model.conv).detach().clone(), "fc": original(model.fc).detach().clone()}
    masks = {name: nm_topn_mask(w[name], pattern) for name in w}
    dwt = grads_wrt_masked_weight(model, masks, x, y)

    F.cross_entropy(model(x), y).backward()
    for name, module in (("conv", model.conv), ("fc", model.fc)):
        expected = dwt[name] + decay * (~masks[name]) * w[name]
        torch.testing.assert_close(original(module).grad, expected)
        # Pruned weights receive a gradient (straight through), unlike a fixed mask.
        assert torch.count_nonzero(original(module).grad[~masks[name]]) > 0


def test_srste_without_decay_passes_the_gradient_straight_through() -> None:
    torch.manual_seed(5)
    model = ConvNet()
    pattern = NMPattern(1, 4)
    SRSTESparsifier(pattern, SPARSIFY_ALL, decay=0.0).prepare(model)
    x, y = batch(9)
    masks = {
        "conv": nm_topn_mask(original(model.conv), pattern),
        "fc": nm_topn_mask(original(model.fc), pattern),
    }
    dwt = grads_wrt_masked_weight(model, masks, x, y)
    F.cross_entropy(model(x), y).backward()
    torch.testing.assert_close(original(model.conv).grad, dwt["conv"])
    torch.testing.assert_close(original(model.fc).grad, dwt["fc"])


def test_srste_default_decay_is_2e_4_and_negative_decay_is_rejected() -> None:
    assert SRSTESparsifier(NMPattern(2, 4)).decay == 2e-4
    with pytest.raises(ValueError, match="lambda_w must be >= 0"):
        SRSTESparsifier(NMPattern(2, 4), decay=-1e-3)


def test_srste_forward_mask_is_the_magnitude_top_n_of_the_current_weights_every_forward() -> None:
    torch.manual_seed(6)
    model = ConvNet()
    pattern = NMPattern(2, 4)
    sparsifier = SRSTESparsifier(pattern, SPARSIFY_ALL)
    sparsifier.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(4):
        x, y = batch(step)
        w_conv = original(model.conv).detach().clone()
        expected_mask = nm_topn_mask(w_conv, pattern)
        torch.testing.assert_close(model.conv.weight, w_conv * expected_mask)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        assert torch.equal(sparsifier.masks()["conv"], expected_mask)
        opt.step()
    # Reorder magnitudes by hand: the next forward follows.
    with torch.no_grad():
        original(model.fc).copy_(
            torch.arange(original(model.fc).numel(), dtype=torch.float32).reshape(4, 128)
        )
    _ = model(batch(0)[0])
    expected = torch.tensor([False, False, True, True]).repeat(4, 32)
    assert torch.equal(sparsifier.masks()["fc"], expected)
    with torch.no_grad():  # decreasing values: now positions 0 and 1 of each group are largest
        original(model.fc).copy_(torch.arange(512, 0, -1, dtype=torch.float32).reshape(4, 128))
    torch.testing.assert_close(model.fc.weight, original(model.fc) * ~expected)
    assert torch.equal(sparsifier.masks()["fc"], ~expected)


# ---------------------------------------------------------------------------------------------
# One-shot magnitude (ASP)
# ---------------------------------------------------------------------------------------------


def test_asp_mask_is_fixed_from_prepare_time_magnitudes_and_never_changes_while_weights_train() -> None:
    torch.manual_seed(7)
    model = ConvNet()
    pattern = NMPattern(2, 4)
    initial = {"conv": model.conv.weight.detach().clone(), "fc": model.fc.weight.detach().clone()}
    sparsifier = MagnitudeSparsifier(pattern, SPARSIFY_ALL)
    sparsifier.prepare(model)
    expected = {name: nm_topn_mask(w, pattern) for name, w in initial.items()}
    for name, mask in sparsifier.masks().items():
        assert torch.equal(mask, expected[name])

    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for step in range(5):
        x, y = batch(step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for name, module in (("conv", model.conv), ("fc", model.fc)):
            grad = original(module).grad
            assert torch.all(grad[~expected[name]] == 0)  # pruned weights get zero gradient
            assert torch.count_nonzero(grad[expected[name]]) > 0
        opt.step()

    # Even if pruned entries become the largest, the mask stays the prepare-time one.
    with torch.no_grad():
        original(model.conv).mul_(~expected["conv"] * 1000.0 + 1.0)
    _ = model(batch(0)[0])
    for name, module in (("conv", model.conv), ("fc", model.fc)):
        assert torch.equal(sparsifier.masks()[name], expected[name])
        assert torch.all(module.weight.detach()[~expected[name]] == 0)
        torch.testing.assert_close(module.weight, original(module) * expected[name])
    assert parametrize.is_parametrized(model.conv)


def test_asp_pruned_weights_stay_at_their_prepare_time_values_under_plain_sgd() -> None:
    torch.manual_seed(8)
    model = ConvNet()
    sparsifier = MagnitudeSparsifier(NMPattern(1, 4), SPARSIFY_ALL)
    sparsifier.prepare(model)
    mask = sparsifier.masks()["fc"]
    before = original(model.fc).detach().clone()
    model_copy = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(3):
        x, y = batch(step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    after = original(model.fc).detach()
    assert torch.equal(after[~mask], before[~mask])
    assert not torch.equal(after[mask], original(model_copy.fc).detach()[mask])


def nm_topn_mask(weight: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
    """Independent top-N-by-|w| mask along the reduction dimension (conv: channels-last)."""
    w = weight.detach()
    groups = (w.permute(0, 2, 3, 1) if w.dim() == 4 else w).reshape(-1, pattern.m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.abs().topk(pattern.n, dim=1).indices, True)
    if w.dim() == 4:
        out, cin, kh, kw = w.shape
        return keep.reshape(out, kh, kw, cin).permute(0, 3, 1, 2)
    return keep.reshape(w.shape)
