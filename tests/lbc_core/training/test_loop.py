"""The training loop: schedules, callbacks, cooperative stop and exact resume."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.training import (
    CheckpointError,
    StepEvent,
    TrainConfig,
    Trainer,
    TrainingCallback,
    learning_rate,
    load_checkpoint,
)


def _data(n: int = 96, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(4, 8, 4, 4, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    x = templates[y] + 0.5 * torch.randn(n, 8, 4, 4, generator=g)
    return SimpleNamespace(x=x, y=y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.1),  # makes the RNG state part of what resume must restore
        nn.Flatten(),
        nn.Linear(256, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )


def _trainer(method: str, tmp: Path | None, callbacks=(), epochs: int = 4) -> Trainer:
    model = _model()
    sparsifier = build_sparsifier(
        SparsityConfig(method=method, pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 2, per_step=True))
    )
    sparsifier.prepare(model)
    config = TrainConfig(epochs=epochs, batch_size=16, lr=0.05, warmup_epochs=1 if epochs > 1 else 0, seed=3)
    return Trainer(
        model,
        sparsifier,
        config,
        _data(),
        _data(32, seed=1),
        callbacks=callbacks,
        checkpoint_path=tmp / "ckpt.pt" if tmp else None,
        augment=lambda x, g: x + 0.01 * torch.randn(x.shape, generator=g),
    )


class StopAfter(TrainingCallback):
    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    def on_step(self, event: StepEvent) -> None:
        self.seen += 1

    def should_stop(self) -> bool:
        return self.seen >= self.steps


@pytest.mark.parametrize("method", ["lbc", "srste", "asp"])
@pytest.mark.parametrize("stop_after", [6, 9])  # an epoch boundary and mid-epoch
def test_resume_from_a_mid_run_checkpoint_reproduces_the_uninterrupted_run(
    tmp_path: Path, method: str, stop_after: int
) -> None:
    straight = _trainer(method, None)
    straight.fit()
    expected_masks = straight.sparsifier.masks()
    expected_state = copy.deepcopy(straight.model.state_dict())

    first = _trainer(method, tmp_path, callbacks=[StopAfter(stop_after)])
    outcome = first.fit()
    assert outcome.status == "stopped"
    assert outcome.global_step == stop_after

    resumed = _trainer(method, tmp_path)
    resumed.resume(tmp_path / "ckpt.pt")
    assert resumed.global_step == stop_after
    final = resumed.fit()
    assert final.status == "completed"
    assert final.global_step == straight.global_step
    for name, mask in resumed.sparsifier.masks().items():
        assert torch.equal(mask, expected_masks[name]), name
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected_state[key]), key
    assert [r["val_accuracy"] for r in final.history] == [r["val_accuracy"] for r in straight.history]


def test_history_records_which_mask_each_metric_was_measured_with() -> None:
    trainer = _trainer("lbc", None)
    outcome = trainer.fit()
    alive = [record["alive_per_group"] for record in outcome.history]
    assert alive[0] > 1 and alive[-1] == 1
    assert outcome.history[-1]["mask_density"] == pytest.approx(0.5)
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(
        outcome.history[0]
    )


def test_checkpoints_load_with_weights_only_and_reject_foreign_runs(tmp_path: Path) -> None:
    trainer = _trainer("lbc", tmp_path, epochs=1)
    trainer.fit()
    state = load_checkpoint(tmp_path / "ckpt.pt")  # weights_only=True inside
    assert state.epoch == 1 and state.step == 0
    other = _trainer("lbc", None)
    other.config = TrainConfig(epochs=4, batch_size=8, seed=3)
    with pytest.raises(CheckpointError, match="batch_size: 16 -> 8"):
        other.resume(tmp_path / "ckpt.pt")
    longer = _trainer("lbc", None, epochs=3)  # a different LR schedule: not the same run
    with pytest.raises(CheckpointError, match="epochs: 1 -> 3"):
        longer.resume(tmp_path / "ckpt.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_loss_going_to_nan_stops_with_a_clear_error() -> None:
    trainer = _trainer("dense", None)
    trainer.train_data = SimpleNamespace(
        x=torch.full((32, 8, 4, 4), float("nan")), y=torch.zeros(32, dtype=torch.long)
    )
    with pytest.raises(FloatingPointError, match="lower lr"):
        trainer.fit()


def test_warmup_then_cosine_learning_rate() -> None:
    config = TrainConfig(epochs=10, lr=0.1, warmup_epochs=2, min_lr=0.001)
    assert learning_rate(config, 1.0) == pytest.approx(0.05)
    assert learning_rate(config, 2.0) == pytest.approx(0.1)
    assert learning_rate(config, 6.0) == pytest.approx(0.001 + 0.5 * 0.099)
    assert learning_rate(config, 10.0) == pytest.approx(0.001)
    step = TrainConfig(epochs=10, lr=0.1, lr_schedule="step", step_milestones=(0.5, 0.75))
    assert [learning_rate(step, e) for e in (0, 5, 8)] == pytest.approx([0.1, 0.01, 0.001])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs"),
        ("batch_size", 0, "batch_size"),
        ("optimizer", "lamb", "optimizer"),
        ("lr", -1.0, "lr"),
        ("momentum", 1.0, "momentum"),
        ("warmup_epochs", 10, "warmup_epochs"),
        ("label_smoothing", 1.0, "label_smoothing"),
        ("lr_schedule", "linear", "lr_schedule"),
        ("precision", "fp8", "precision"),
        ("grad_accumulation_steps", 0, "grad_accumulation_steps"),
        ("grad_accumulation_steps", 129, r"grad_accumulation_steps must be in \[1, batch_size=128\]"),
    ],
)
def test_invalid_training_settings_are_rejected_by_name(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_adamw_trains_weights_and_scores() -> None:
    model = _model()
    sparsifier = build_sparsifier(SparsityConfig(method="lbc", schedule=RemovalSchedule(0, 1)))
    sparsifier.prepare(model)
    trainer = Trainer(
        model, sparsifier, TrainConfig(epochs=2, batch_size=16, optimizer="adamw", lr=1e-3), _data()
    )
    outcome = trainer.fit()
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"] * 1.5
    assert sparsifier.finalize().all_verified


def _bf16_trainer(device: str) -> tuple[Trainer, list[torch.dtype]]:
    model = _model()
    sparsifier = build_sparsifier(SparsityConfig(method="lbc", schedule=RemovalSchedule(0, 2, per_step=True)))
    sparsifier.prepare(model)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, precision="bf16", device=device)
    trainer = Trainer(model, sparsifier, config, _data())
    seen: list[torch.dtype] = []
    trainer.model[6].register_forward_hook(lambda _m, _args, out: seen.append(out.dtype))
    return trainer, seen


def test_bf16_precision_trains_under_autocast_and_keeps_fp32_state() -> None:
    trainer, seen = _bf16_trainer("cpu")
    outcome = trainer.fit()
    # The Linear ran in bfloat16, while weights, optimizer state and LBC scores stayed float32.
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert all(
        t.dtype in (torch.float32, torch.uint8, torch.bool, torch.int64)
        for t in trainer.sparsifier.state_dict().values()
        if isinstance(t, torch.Tensor)
    )
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"]
    assert trainer.sparsifier.finalize().all_verified


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_precision_trains_lbc_on_cuda() -> None:
    trainer, seen = _bf16_trainer("cuda")
    outcome = trainer.fit()
    assert seen and set(seen) == {torch.bfloat16}
    assert next(trainer.model.parameters()).is_cuda
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"]
    report = trainer.sparsifier.finalize()
    assert report.all_verified


def test_resume_compares_the_lr_actually_used_so_an_explicit_default_is_the_same_run(tmp_path: Path) -> None:
    # A checkpoint from before the default was batch-scaled recorded lr 0.1; at batch 128 that is the default.
    explicit = _trainer("lbc", tmp_path, epochs=1)
    explicit.config = TrainConfig(epochs=1, batch_size=128, lr=0.1, seed=3)
    explicit.fit()
    defaulted = _trainer("lbc", None, epochs=1)
    defaulted.config = TrainConfig(epochs=1, batch_size=128, seed=3)  # lr omitted: 0.1 at batch 128
    defaulted.resume(tmp_path / "ckpt.pt")
    assert defaulted.epoch == 1
    other = _trainer("lbc", None, epochs=1)
    other.config = TrainConfig(epochs=1, batch_size=128, lr=0.05, seed=3)
    with pytest.raises(CheckpointError, match=r"lr: 0\.1 -> 0\.05"):
        other.resume(tmp_path / "ckpt.pt")


def test_a_checkpoint_written_before_a_setting_existed_resumes_with_its_default(tmp_path: Path) -> None:
    trainer = _trainer("lbc", tmp_path, epochs=1)
    trainer.fit()
    # As written before grad_accumulation_steps and grad_scaler existed.
    payload = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    del payload["config"]["grad_accumulation_steps"], payload["grad_scaler"]
    torch.save(payload, tmp_path / "old.pt")
    resumed = _trainer("lbc", None, epochs=1)
    resumed.resume(tmp_path / "old.pt")
    assert resumed.epoch == 1
    accumulating = _trainer("lbc", None, epochs=1)
    accumulating.config = TrainConfig(**{**asdict(trainer.config), "grad_accumulation_steps": 2})
    with pytest.raises(CheckpointError, match=r"grad_accumulation_steps: 1 -> 2"):
        accumulating.resume(tmp_path / "old.pt")
