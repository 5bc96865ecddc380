"""Runs whose method reads activations: a seeded calibration pass before training, none on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lbc_core import ModelConfig, RunConfig, SparsityConfig, TrainConfig, run
from lbc_core.data import DataConfig, load_data
from lbc_core.export.masks import load_masks
from lbc_core.pipeline import CHECKPOINT_NAME
from lbc_core.sparsity import LBCSparsifier, NMPattern, WandaSparsifier, is_nm_sparse
from lbc_core.tasks import ImageClassification
from lbc_core.training import StepEvent, TrainingCallback

DIGITS = DataConfig(source="digits", limit=300)


def config(method: str, score_init: str = "uniform", epochs: int = 3) -> RunConfig:
    return RunConfig(
        model=ModelConfig("lenet5"),
        data=DIGITS,
        sparsity=SparsityConfig(method=method, score_init=score_init, calibration_samples=64),
        train=TrainConfig(epochs=epochs, batch_size=64, lr=0.05, device="cpu", seed=3),
    )


class StopAfter(TrainingCallback):
    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.seen = 0

    def on_step(self, event: StepEvent) -> None:
        self.seen += 1

    def should_stop(self) -> bool:
        return self.seen >= self.steps


class Recorder(nn.Module):
    """Remembers which inputs it saw and in which mode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.modes: list[bool] = []
        self.grad: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        self.modes.append(self.training)
        self.grad.append(torch.is_grad_enabled())
        return x


def test_calibration_forward_runs_a_seeded_sample_in_eval_mode_without_gradients() -> None:
    data = load_data(DIGITS)
    picks = []
    for seed in (0, 0, 1):
        model = Recorder().train()
        ImageClassification().calibration_forward(
            model, data.train, 50, seed=seed, batch_size=16, device=torch.device("cpu")
        )()
        assert [x.shape[0] for x in model.seen] == [16, 16, 16, 2]
        assert model.modes == [False] * 4 and model.grad == [False] * 4
        assert model.training  # the caller's mode comes back
        picks.append(torch.cat(model.seen))
    assert torch.equal(picks[0], picks[1])  # same seed, same calibration set
    assert not torch.equal(picks[0], picks[2])
    rows = {tuple(row.flatten().tolist()) for row in data.train.x}
    assert all(tuple(row.flatten().tolist()) in rows for row in picks[0])  # training samples only

    everything = Recorder()
    ImageClassification().calibration_forward(
        everything, data.train, 10_000, seed=0, batch_size=512, device=torch.device("cpu")
    )()
    assert sum(x.shape[0] for x in everything.seen) == data.train.x.shape[0]


@pytest.mark.parametrize(("method", "score_init"), [("wanda", "uniform"), ("lbc", "wanda")])
def test_a_resumed_run_is_not_recalibrated_and_ends_with_the_uninterrupted_runs_masks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, score_init: str
) -> None:
    uninterrupted = run(config(method, score_init), tmp_path / "whole")
    assert uninterrupted.status == "succeeded" and uninterrupted.summary["verified_nm"] is True

    stopped = run(config(method, score_init), tmp_path / "split", callbacks=[StopAfter(5)])
    assert stopped.status == "stopped"
    saved = torch.load(tmp_path / "split" / CHECKPOINT_NAME, weights_only=False)
    assert saved["sparsifier"]["calibrated" if method == "wanda" else "scores_started"] is True

    sparsifier_class = WandaSparsifier if method == "wanda" else LBCSparsifier

    def refuse(*_: object) -> None:
        raise AssertionError("a resumed run must not be recalibrated")

    monkeypatch.setattr(sparsifier_class, "calibrate", refuse)
    resumed = run(config(method, score_init), tmp_path / "split")
    assert resumed.status == "succeeded" and resumed.summary["resumed_from"]["global_step"] == 5

    whole = load_masks(tmp_path / "whole" / "export" / "masks.safetensors")
    split = load_masks(tmp_path / "split" / "export" / "masks.safetensors")
    assert whole.keys() == split.keys() and whole
    for name, mask in whole.items():
        assert torch.equal(split[name], mask), name
        assert is_nm_sparse(mask.float(), NMPattern(2, 4)) and int(mask.sum()) * 2 == mask.numel()
    if method == "wanda":  # the mask fixed at calibration is the one in the checkpoint and the export
        for name, mask in whole.items():
            buffer = saved["model"][f"{name}.parametrizations.weight.0.mask"]
            assert torch.equal(buffer != 0, mask), name
    assert resumed.summary["val_accuracy"] == uninterrupted.summary["val_accuracy"]
