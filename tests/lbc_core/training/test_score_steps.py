"""LBC's scores step once per optimizer step.

Gradient accumulation over k micro-batches, gradient clipping and fp16 loss scaling each give the scores
what the equivalent single step on the whole batch gives them: the summed signal of the micro-batches,
scaled by the factor the weights' gradients got (clipping's, 1 / the loss scale), and no step at all on a
step the loss scaler skips.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lbc_core.sparsity import LayerPolicy, LBCSparsifier, NMPattern, RemovalSchedule, ScoreOptimizer
from lbc_core.training import TrainConfig, Trainer, TrainingCallback, build_optimizer
from lbc_core.training.loop import StepEvent


@pytest.fixture(params=["plain", "fused"])
def kernel(request: pytest.FixtureRequest) -> str:
    """Both LBC backward paths: the PyTorch reference and the fused native step."""
    if request.param == "fused":
        request.getfixturevalue("fused_lbc_step")
    return str(request.param)


def _data(n: int = 80) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 32, generator=g)
    y = torch.randint(0, 8, (n,), generator=g)
    return SimpleNamespace(x=centers[y] + 0.7 * torch.randn(n, 32, generator=g), y=y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))


def _sparsifier(kernel: str) -> LBCSparsifier:
    return LBCSparsifier(
        NMPattern(2, 4),
        LayerPolicy(include=("*",), keep_stem_dense=False, keep_classifier_dense=True),
        RemovalSchedule(t_i=0, t_f=2, power=3, per_step=True),
        ScoreOptimizer(momentum=0.9, weight_decay=5e-4),
        kernel=kernel,
    )


class AliveTrace(TrainingCallback):
    """Every layer's alive combinations after every optimizer step."""

    def __init__(self, sparsifier: LBCSparsifier) -> None:
        self.sparsifier, self.steps = sparsifier, []

    def on_step(self, event: StepEvent) -> None:
        self.steps.append([p.alive.clone() for _, p in self.sparsifier._iter_parametrizations()])


class StopAfter(TrainingCallback):
    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    def on_step(self, event: StepEvent) -> None:
        self.seen += 1

    def should_stop(self) -> bool:
        return self.seen >= self.steps


def _trainer(kernel: str, stop_after: int | None = None, **settings: object) -> tuple[Trainer, AliveTrace]:
    model, sparsifier = _model(), _sparsifier(kernel)
    sparsifier.prepare(model)
    trace = AliveTrace(sparsifier)
    callbacks: list[TrainingCallback] = [trace]
    if stop_after is not None:
        callbacks.append(StopAfter(stop_after))
    values: dict[str, object] = {"epochs": 3, "batch_size": 32, "lr": 0.05, "weight_decay": 5e-4, **settings}
    config = TrainConfig(**values)  # type: ignore[arg-type]
    return Trainer(model, sparsifier, config, _data(), callbacks=callbacks), trace


def _scores(trainer: Trainer) -> list[torch.Tensor]:
    return [p.score for _, p in trainer.sparsifier._iter_parametrizations()]


def _assert_same_run(ours: Trainer, ours_trace: AliveTrace, ref: Trainer, ref_trace: AliveTrace) -> None:
    assert len(ours_trace.steps) == len(ref_trace.steps) > 0
    for step, (alive, ref_alive) in enumerate(zip(ours_trace.steps, ref_trace.steps, strict=True)):
        assert all(torch.equal(a, b) for a, b in zip(alive, ref_alive, strict=True)), step
    for score, ref_score in zip(_scores(ours), _scores(ref), strict=True):
        torch.testing.assert_close(score, ref_score, rtol=1e-4, atol=1e-7)
    for param, ref_param in zip(ours.model.parameters(), ref.model.parameters(), strict=True):
        torch.testing.assert_close(param, ref_param, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k", [2, 3])  # 3: micro-batches of 11, 11, 10 (and 6, 5, 5 in the last batch)
def test_accumulating_k_micro_batches_gives_the_scores_of_the_single_large_step(kernel: str, k: int) -> None:
    reference, ref_trace = _trainer(kernel)
    reference.fit()
    accumulated, trace = _trainer(kernel, grad_accumulation_steps=k)
    accumulated.fit()
    assert accumulated.sparsifier.alive_per_group == 1  # removals happened along the way
    _assert_same_run(accumulated, trace, reference, ref_trace)


def test_scores_stepping_once_per_micro_batch_would_not_match() -> None:
    # What the deferral prevents (and what the test above would catch): k score steps per optimizer step.
    reference, _ = _trainer("plain", stop_after=2)
    reference.fit()
    per_micro_batch, _ = _trainer("plain", stop_after=2, grad_accumulation_steps=4)
    per_micro_batch.sparsifier.defer_score_steps(False)
    per_micro_batch.fit()
    score, ref_score = _scores(per_micro_batch)[0], _scores(reference)[0]
    assert not torch.allclose(score, ref_score, rtol=1e-2, atol=0)


def test_clipping_scales_the_score_signal_like_the_weights_gradients(kernel: str) -> None:
    max_norm = 0.05
    clipped, _ = _trainer(kernel, stop_after=1, grad_clip_norm=max_norm, batch_size=80)
    clipped.fit()

    # The equivalent unclipped step on the same initial model (_model() is seeded): the loss scaled by
    # the factor clipping applies to the gradients. One batch holds the whole set, in another order.
    data = _data()
    probe = _model()
    nn.functional.cross_entropy(probe(data.x), data.y).backward()
    norm = float(nn.utils.get_total_norm([p.grad for p in probe.parameters() if p.grad is not None]))
    factor = max_norm / (norm + 1e-6)
    assert factor < 0.5  # clipping is active
    reference, reference_sparsifier = _model(), _sparsifier(kernel)
    reference_sparsifier.prepare(reference)
    optimizer = build_optimizer(reference, clipped.config)
    reference_sparsifier.on_step_start(0, 0, 1, clipped.config.peak_lr)
    (nn.functional.cross_entropy(reference(data.x), data.y) * factor).backward()
    optimizer.step()

    for (_, ours), (_, ref) in zip(
        clipped.sparsifier._iter_parametrizations(),
        reference_sparsifier._iter_parametrizations(),
        strict=True,
    ):
        assert ref.score.abs().max() > 0
        torch.testing.assert_close(ours.score, ref.score, rtol=1e-4, atol=1e-9)
    for param, ref_param in zip(clipped.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(param, ref_param, rtol=1e-4, atol=1e-7)


def _fp16_trainer(kernel: str, scale: float, stop_after: int | None = None) -> tuple[Trainer, AliveTrace]:
    trainer, trace = _trainer(kernel, stop_after=stop_after, precision="fp16")
    # A fixed scale (no growth within the run): the runs below differ only in the loss scale.
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=scale, growth_interval=10**6)
    return trainer, trace


def test_loss_scaling_is_undone_on_the_score_signal(kernel: str) -> None:
    scaled, trace = _fp16_trainer(kernel, 1024.0)
    scaled.fit()
    unscaled, ref_trace = _fp16_trainer(kernel, 1.0)
    unscaled.fit()
    assert scaled.scaler is not None and scaled.scaler.get_scale() == 1024.0  # no step was skipped
    # Scaling by a power of two is exact in fp16 unless a value under- or overflows.
    _assert_same_run(scaled, trace, unscaled, ref_trace)


def test_a_step_the_loss_scaler_skips_leaves_the_scores_alone(kernel: str) -> None:
    trainer, _ = _fp16_trainer(kernel, 2.0**60, stop_after=1)  # fp16 backward overflows
    before = [score.clone() for score in _scores(trainer)]
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    assert trainer.scaler is not None and trainer.scaler.get_scale() < 2.0**60
    for score, old in zip(_scores(trainer), before, strict=True):
        assert torch.equal(score, old)
    for param, old in zip(trainer.model.parameters(), weights, strict=True):
        assert torch.equal(param.detach(), old)


def test_the_loss_scale_is_part_of_the_checkpoint() -> None:
    trainer, _ = _trainer("plain", stop_after=1, precision="fp16")
    trainer.fit()
    state = trainer.state()
    assert state.grad_scaler is not None and state.grad_scaler["scale"] == trainer.scaler.get_scale()
