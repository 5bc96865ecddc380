"""The score-revival removal ablation (the authors' "dead = score 0, re-rank every step").

Constructed case: one Linear row ``w = [1, 2, 3, 4]`` at 2:4 trained on ``loss = sum(w~^2)``. Every
kept weight's signal ``g_j = w_j * 2 w~_j = 2 w_j^2`` is positive, so every alive score falls, the
combination holding the largest weights fastest. A dead score is reset to 0 each step and drifts only
by its decaying momentum, while alive scores keep falling: the dead combination overtakes them and
comes back to life. Permanent removal never brings one back.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from lbc_core.sparsity import (
    LayerPolicy,
    LBCSparsifier,
    NMPattern,
    RemovalSchedule,
    RevivalLBCSparsifier,
    ScoreOptimizer,
    Sparsifier,
    SparsifierStateError,
    SparsityConfig,
    build_sparsifier,
)
from lbc_core.sparsity.pattern import to_groups

PATTERN = NMPattern(2, 4)
# Integer epochs: alive per group 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1 over epochs 0..10.
SCHEDULE = RemovalSchedule(t_i=0, t_f=10, power=1)
OPTIMIZER = ScoreOptimizer(momentum=0.9, weight_decay=0.0)
POLICY = LayerPolicy(keep_stem_dense=False, keep_classifier_dense=False)


def _layer() -> nn.Linear:
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    return layer


def _train(sparsifier: Sparsifier, epochs: int, lr: float = 0.1) -> tuple[nn.Linear, list[torch.Tensor]]:
    """Scores train, weights stay fixed (no weight optimizer), so the signals are as stated above."""
    layer = _layer()
    sparsifier.prepare(layer)
    param = layer.parametrizations["weight"][0]
    history = []
    for epoch in range(epochs):
        sparsifier.on_step_start(epoch, 0, 1, lr)
        history.append(param.alive_bits().reshape(-1).clone())
        expected_mask = (history[-1].float() @ PATTERN.combination_table()) > 0
        assert torch.equal(param.mask.reshape(-1) != 0, expected_mask)  # forward follows the alive set
        (layer.weight**2).sum().backward()
    return layer, history


def _revived(history: list[torch.Tensor]) -> list[tuple[int, int]]:
    """(step, combination) pairs where a combination dead at the previous step is alive again."""
    events = []
    for step in range(1, len(history)):
        back = history[step] & ~history[step - 1]
        events += [(step, int(c)) for c in torch.nonzero(back).flatten()]
    return events


def test_revival_brings_a_dead_combination_back_and_zeroes_the_dead_scores() -> None:
    sparsifier = RevivalLBCSparsifier(PATTERN, POLICY, SCHEDULE, OPTIMIZER)
    layer, history = _train(sparsifier, epochs=10)

    # The first removal (epoch 2) kills (2, 3) = combination 5, the one holding the two largest weights.
    assert int(history[2].sum()) == 5 and not bool(history[2][5])
    events = _revived(history)
    assert events, [h.tolist() for h in history]
    assert sparsifier.revivals == len(events)
    param = layer.parametrizations["weight"][0]
    # Dead scores hold exactly 0 right after a ranking, alive ones do not.
    sparsifier.on_step_start(10, 0, 1, 0.1)
    assert bool((param.alpha[~param.alive] == 0).all())
    assert bool((param.alpha[param.alive] != 0).all())
    metrics = sparsifier.metrics()
    assert metrics["revivals"] == float(sparsifier.revivals)
    assert metrics["closest_revival_margin"] < 0  # a dead score overtook an alive one

    restored = RevivalLBCSparsifier(PATTERN, POLICY, SCHEDULE, OPTIMIZER)
    restored.prepare(_layer())
    restored.load_state_dict(sparsifier.state_dict())
    assert restored.revivals == sparsifier.revivals
    permanent = LBCSparsifier(PATTERN, POLICY, SCHEDULE, OPTIMIZER)
    with pytest.raises(SparsifierStateError, match="removal 'revival'"):
        restored.load_state_dict(permanent.state_dict())


def test_permanent_removal_never_revives_on_the_same_case() -> None:
    sparsifier = LBCSparsifier(PATTERN, POLICY, SCHEDULE, OPTIMIZER)
    _, history = _train(sparsifier, epochs=10)
    assert int(history[2].sum()) == 5 and not bool(history[2][5])
    assert _revived(history) == []
    for before, after in itertools.pairwise(history):
        assert not bool((after & ~before).any())  # alive sets only shrink


def test_authors_variant_gives_dead_scores_momentum_but_no_loss_signal() -> None:
    layer = _layer()
    sparsifier = RevivalLBCSparsifier(PATTERN, POLICY, SCHEDULE, OPTIMIZER)
    sparsifier.prepare(layer)
    param = layer.parametrizations["weight"][0]
    for epoch in range(3):  # the ranking at epoch 2 kills combination 5
        sparsifier.on_step_start(epoch, 0, 1, 0.1)
        if epoch < 2:
            (layer.weight**2).sum().backward()
    assert not bool(param.alive[0, 5]) and float(param.alpha[0, 5]) == 0.0
    momentum = float(param.alpha_momentum[0, 5])
    (layer.weight**2).sum().backward()
    # SGD on a zero score with zero gradient: only the momentum term moves it.
    assert float(param.alpha_momentum[0, 5]) == pytest.approx(0.9 * momentum)
    assert float(param.alpha[0, 5]) == pytest.approx(-0.1 * 0.9 * momentum)


def test_dead_gradient_variant_feeds_dead_combinations_the_signal() -> None:
    layer = _layer()
    sparsifier = RevivalLBCSparsifier(PATTERN, POLICY, SCHEDULE, OPTIMIZER, dead_gradient=True)
    sparsifier.prepare(layer)
    param = layer.parametrizations["weight"][0]
    for epoch in range(3):
        sparsifier.on_step_start(epoch, 0, 1, 0.1)
        if epoch < 2:
            (layer.weight**2).sum().backward()
    momentum = float(param.alpha_momentum[0, 5])
    (layer.weight**2).sum().backward()
    # Positions 2 and 3 are still kept by other alive combinations: signal 2*3^2 + 2*4^2 = 50.
    assert float(param.alpha_momentum[0, 5]) == pytest.approx(0.9 * momentum + 50.0)


def test_revival_run_ends_exactly_n_m_and_finalizes_verified() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    config = SparsityConfig(pattern=PATTERN, schedule=RemovalSchedule(0, 3), removal="revival")
    sparsifier = build_sparsifier(config)
    assert isinstance(sparsifier, RevivalLBCSparsifier) and not sparsifier.dead_gradient
    sparsifier.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(5):
        for step in range(4):
            sparsifier.on_step_start(epoch, step, 4, 0.05)
            x, y = torch.randn(8, 8, generator=gen), torch.randint(0, 3, (8,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    metrics = sparsifier.metrics()
    assert metrics["alive_per_group"] == 1.0 and metrics["scores_frozen"] == 1.0
    assert metrics["mask_exactly_nm"] == 1.0
    report = sparsifier.finalize()
    assert report.all_verified
    for layer in report.layers:
        assert layer.density == pytest.approx(PATTERN.density)
    weight = model[2].weight.detach()
    assert int((to_groups(weight, 4) != 0).sum(dim=1).max()) <= 2


def test_removal_option_defaults_to_permanent_and_is_validated() -> None:
    assert SparsityConfig().removal == "permanent"
    assert type(build_sparsifier(SparsityConfig())) is LBCSparsifier
    assert build_sparsifier(SparsityConfig(removal="revival_grad")).dead_gradient  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown LBC removal 'sometimes'"):
        SparsityConfig(removal="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only applies to method 'lbc'"):
        SparsityConfig(method="srste", removal="revival")
    with pytest.raises(ValueError, match="'adam' is not supported"):
        RevivalLBCSparsifier(PATTERN, optimizer=ScoreOptimizer(kind="adam"))


def test_without_a_revival_the_ablation_makes_the_same_choices_as_permanent_removal() -> None:
    """In float64, where rounding cannot split near-ties, the two removals differ only by revivals."""
    torch.manual_seed(0)

    def model() -> nn.Module:
        return nn.Sequential(
            nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)
        ).double()

    permanent_model = model()
    revival_model = model()
    revival_model.load_state_dict(permanent_model.state_dict())
    schedule = RemovalSchedule(t_i=0, t_f=3, power=3, per_step=True)
    optimizer = ScoreOptimizer(momentum=0.9, weight_decay=5e-4)
    permanent = LBCSparsifier(PATTERN, POLICY, schedule, optimizer)
    revival = RevivalLBCSparsifier(PATTERN, POLICY, schedule, optimizer)
    names = permanent.prepare(permanent_model).names
    revival.prepare(revival_model)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (permanent_model, revival_model)]
    gen = torch.Generator().manual_seed(1)
    for epoch in range(4):
        for step in range(6):
            permanent.on_step_start(epoch, step, 6, 0.05)
            revival.on_step_start(epoch, step, 6, 0.05)
            for name in names:
                ours = permanent_model.get_submodule(name).parametrizations["weight"][0].alive_bits()
                theirs = revival_model.get_submodule(name).parametrizations["weight"][0].alive_bits()
                assert torch.equal(ours, theirs), (name, epoch, step)
            x = torch.randn(16, 16, generator=gen, dtype=torch.float64)
            y = torch.randint(0, 3, (16,), generator=gen)
            for net, opt in zip((permanent_model, revival_model), opts, strict=True):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
    assert revival.revivals == 0 and permanent.alive_per_group == revival.alive_per_group == 1
    for name in names:
        torch.testing.assert_close(
            permanent_model.get_submodule(name).weight,
            revival_model.get_submodule(name).weight,
            rtol=1e-9,
            atol=1e-10,
        )
