"""LBC with scores started from an importance prior (magnitude or Wanda) instead of uniformly."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lbc_core.sparsity import (
    LayerPolicy,
    LBCSparsifier,
    NMPattern,
    RemovalSchedule,
    ScoreOptimizer,
    SparsifierStateError,
    SparsityConfig,
    WandaSparsifier,
    build_sparsifier,
    magnitude_mask,
    prior_scores,
)
from lbc_core.sparsity.pattern import to_groups

POLICY = LayerPolicy(keep_stem_dense=False, keep_classifier_dense=True)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )


def forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A calibration forward over one batch."""

    def run_forward() -> None:
        model(x)

    return run_forward


def _inputs(seed: int = 1) -> torch.Tensor:
    # Scaled channels make activation norms differ a lot, so Wanda and magnitude disagree.
    scale = torch.logspace(-1, 1, 8).reshape(1, 8, 1, 1)
    return torch.randn(32, 8, 6, 6, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("text", ["2:4", "1:4", "2:8", "4:8"])
def test_a_combinations_start_score_is_a0_times_the_mean_relative_importance_of_its_weights(
    text: str,
) -> None:
    pattern = NMPattern.parse(text)
    importance = torch.rand(6, 16, generator=torch.Generator().manual_seed(0)) * 10
    importance[0, : pattern.m] = 0.0  # a group without information starts uniformly
    scores = to_groups(prior_scores(importance, pattern), pattern.m)
    a0 = 1.0 / pattern.combinations_per_weight
    groups = to_groups(importance, pattern.m)
    for g in range(groups.shape[0]):
        mean = float(groups[g].mean())
        for combo in itertools.combinations(range(pattern.m), pattern.n):
            alpha = a0 + float(scores[g, list(combo)].sum())
            relative = [float(groups[g, j]) / mean if mean else 1.0 for j in combo]
            assert alpha == pytest.approx(a0 * sum(relative) / pattern.n, abs=1e-6)
    assert torch.equal(scores[0], torch.zeros(pattern.m))
    # Scale-free: a layer whose activations are 1000x larger gets the same start.
    assert torch.allclose(prior_scores(importance * 1000, pattern), prior_scores(importance, pattern))
    # strength scales the deviation from the uniform start, never the ranking.
    assert torch.allclose(
        prior_scores(importance, pattern, strength=0.01), 0.01 * prior_scores(importance, pattern)
    )


def _run_without_training_signal(sparsifier: LBCSparsifier, model: nn.Module, momentum: float) -> None:
    """Every step of a full removal schedule with a loss whose gradient is zero: scores move only by
    their (uniform) weight decay and momentum, so every ranking is the prior's."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum, weight_decay=5e-4)
    x = _inputs(2)
    model.train()
    for epoch, step in itertools.product(range(4), range(5)):
        sparsifier.on_step_start(epoch, step, 5, 0.1)
        opt.zero_grad()
        (model(x) * 0.0).sum().backward()
        opt.step()


@pytest.mark.parametrize(("text", "strength"), [("2:4", 1.0), ("2:8", 1.0), ("2:4", 0.01)])
def test_magnitude_prior_without_training_signal_ends_at_the_magnitude_top_n_mask(
    text: str, strength: float
) -> None:
    pattern = NMPattern.parse(text)
    model = _model()
    dense = {name: model.get_submodule(name).weight.detach().clone() for name in ("0", "2", "6")}
    sparsifier = LBCSparsifier(
        pattern,
        POLICY,
        RemovalSchedule(t_i=0, t_f=3),
        ScoreOptimizer(momentum=0.9),
        score_init="magnitude",
        prior_strength=strength,
    )
    sparsifier.prepare(model)
    assert not sparsifier.needs_calibration
    _run_without_training_signal(sparsifier, model, momentum=0.9)
    assert sparsifier.alive_per_group == 1 and sparsifier.removals >= 3  # the whole schedule ran
    for name, mask in sparsifier.masks().items():
        assert torch.equal(mask, magnitude_mask(dense[name], pattern)), name


def test_wanda_prior_without_training_signal_ends_at_the_wanda_mask() -> None:
    pattern = NMPattern(2, 4)
    x = _inputs()
    reference_model = _model()
    wanda = WandaSparsifier(pattern, POLICY)
    wanda.prepare(reference_model)
    wanda.calibrate(forward(reference_model, x))

    model = _model()
    sparsifier = LBCSparsifier(pattern, POLICY, RemovalSchedule(t_i=0, t_f=3), score_init="wanda")
    sparsifier.prepare(model)
    assert sparsifier.needs_calibration
    with pytest.raises(SparsifierStateError, match="calibrate"):
        sparsifier.on_step_start(0, 0, 5, 0.1)
    with torch.no_grad():
        sparsifier.calibrate(forward(model, x))
    assert not sparsifier.needs_calibration
    _run_without_training_signal(sparsifier, model, momentum=0.0)

    final = sparsifier.masks()
    magnitude_differs = False
    for name, mask in wanda.masks().items():
        assert torch.equal(final[name], mask), name
        original = model.get_submodule(name).parametrizations.weight.original
        magnitude_differs |= not torch.equal(mask, magnitude_mask(original, pattern))
    assert magnitude_differs  # the activations, not only the magnitudes, chose this mask


def test_the_first_removal_drops_each_groups_least_important_combination() -> None:
    pattern = NMPattern(2, 4)
    model = _model()
    sparsifier = LBCSparsifier(
        pattern, POLICY, RemovalSchedule(t_i=0, t_f=10, power=1), score_init="magnitude"
    )
    sparsifier.prepare(model)
    sparsifier.on_step_start(2, 0, 1, 0.1)  # 6 -> 5 combinations alive, before any training
    assert sparsifier.alive_per_group == 5
    layer = model.get_submodule("2")
    alive = layer.parametrizations.weight[0].alive_bits()
    magnitude = to_groups(layer.parametrizations.weight.original.detach().abs(), 4)
    weakest_two = torch.sort(magnitude, dim=1, stable=True).indices[:, :2].sort(dim=1).values
    combos = list(itertools.combinations(range(4), 2))
    for g in range(alive.shape[0]):
        dead = [combos[c] for c in range(6) if not alive[g, c]]
        assert dead == [tuple(weakest_two[g].tolist())], g


def test_with_training_signal_a_prior_start_still_learns_and_ends_exactly_n_m() -> None:
    pattern = NMPattern(2, 4)
    model = _model()
    sparsifier = build_sparsifier(
        SparsityConfig(
            method="lbc",
            pattern=pattern,
            layers=POLICY,
            score_init="magnitude",
            schedule=RemovalSchedule(t_i=0, t_f=2),
        )
    )
    sparsifier.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = _inputs(3), torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(3))
    for epoch, step in itertools.product(range(3), range(4)):
        sparsifier.on_step_start(epoch, step, 4, 0.05)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    report = sparsifier.finalize()
    assert report.all_verified and report.method == "lbc"


def test_uniform_start_is_the_published_method_with_zero_per_weight_scores() -> None:
    model = _model()
    sparsifier = LBCSparsifier(NMPattern(2, 4), POLICY)
    sparsifier.prepare(model)
    assert not sparsifier.needs_calibration
    for name in ("0", "2", "6"):
        assert not model.get_submodule(name).parametrizations.weight[0].score.any()


def test_score_init_is_checked_against_the_method_and_the_checkpoint() -> None:
    with pytest.raises(ValueError, match="score_init 'magnitude' only applies to method 'lbc'"):
        SparsityConfig(method="asp", score_init="magnitude")
    with pytest.raises(ValueError, match="permanent removal"):
        SparsityConfig(method="lbc", score_init="wanda", removal="revival")
    with pytest.raises(ValueError, match="unknown LBC score_init"):
        LBCSparsifier(NMPattern(2, 4), score_init="random")
    with pytest.raises(ValueError, match="prior_strength must be > 0"):
        SparsityConfig(method="lbc", score_init="magnitude", prior_strength=0.0)
    with pytest.raises(ValueError, match="prior_strength must be > 0"):
        LBCSparsifier(NMPattern(2, 4), score_init="magnitude", prior_strength=-1.0)
    with pytest.raises(ValueError, match="prior_strength only applies"):
        SparsityConfig(method="lbc", prior_strength=0.5)

    model = _model()
    magnitude = LBCSparsifier(NMPattern(2, 4), POLICY, score_init="magnitude")
    magnitude.prepare(model)
    state = magnitude.state_dict()
    assert state["score_init"] == "magnitude" and state["scores_started"] is True
    uniform = LBCSparsifier(NMPattern(2, 4), POLICY)
    uniform.prepare(_model())
    with pytest.raises(SparsifierStateError, match="score_init 'magnitude', not 'uniform'"):
        uniform.load_state_dict(state)

    wanda = LBCSparsifier(NMPattern(2, 4), POLICY, score_init="wanda")
    wanda.prepare(_model())
    wanda.load_state_dict({**state, "score_init": "wanda"})
    assert not wanda.needs_calibration  # resumed: the calibrated scores came back with the model
