"""Multi-process training (gloo, 2 CPU processes started by torch's elastic launcher) against one process.

2 processes x 32 samples must train exactly like 1 process x 64: the same alive combinations at every LBC
removal, the same masks after every step, the same final weights (to floating-point tolerance), and ranks
that hold bitwise identical scores and masks; also with gradient accumulation and clipping, where LBC's
scores step once per optimizer step on the signal formed after the all-reduce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lbc_core.training import TrainConfig
from lbc_core.training.distributed import SingleProcess, launch
from tests.lbc_core.training import ddp_scenarios as scenarios

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The single-process references, then one launch of 2 ranks that runs every case."""
    torch.set_num_threads(1)
    single = {case.name: scenarios.train(case, SingleProcess()) for case in scenarios.CASES}
    checkpoint = tmp_path_factory.mktemp("ddp") / "last.pt"
    stopped = scenarios.train(
        scenarios.CASES[0], SingleProcess(), checkpoint=checkpoint, stop_at=scenarios.STOP_AT
    )
    assert stopped["status"] == "stopped" and checkpoint.exists()
    with pytest.MonkeyPatch.context() as patch:
        # Spawned ranks import the scenarios by name: they need the repository root on their path.
        patch.syspath_prepend(str(Path(__file__).parents[3]))
        ranks = launch(scenarios.rank_main, (str(checkpoint),), processes=2)
    return {"single": single, "ranks": [ranks[0], ranks[1]]}


def _assert_same_alive(actual: list[Any], expected: list[Any]) -> None:
    assert [step for step, _ in actual] == [step for step, _ in expected]
    for (step, got), (_, want) in zip(actual, expected, strict=True):
        for name in want:
            assert torch.equal(got[name], want[name]), f"alive sets of {name} differ after step {step}"


@pytest.mark.parametrize("case", [case.name for case in scenarios.CASES])
def test_two_processes_train_like_one_process_on_the_combined_batch(runs: dict[str, Any], case: str) -> None:
    single = runs["single"][case]
    rank0 = runs["ranks"][0][case]

    assert rank0["status"] == single["status"] == "completed"
    if case.startswith("lbc"):
        assert len(single["alive"]) >= 4  # removals happened, down to one combination per group
        _assert_same_alive(rank0["alive"], single["alive"])
    assert len(rank0["masks"]) == len(single["masks"])
    for step, (got, want) in enumerate(zip(rank0["masks"], single["masks"], strict=True)):
        for name in want:
            assert torch.equal(got[name], want[name]), f"{case}: mask of {name} differs after step {step + 1}"
    for name, want in single["weights"].items():
        torch.testing.assert_close(rank0["weights"][name], want, rtol=1e-4, atol=1e-5, msg=f"{case}: {name}")
    for name, want in single["scores"].items():
        torch.testing.assert_close(rank0["scores"][name], want, rtol=1e-4, atol=1e-6, msg=f"{case}: {name}")
    # The epoch's training loss counts every sample of every rank once.
    for got, want in zip(rank0["history"], single["history"], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["train_accuracy"] == pytest.approx(want["train_accuracy"])


@pytest.mark.parametrize("case", [case.name for case in scenarios.CASES])
def test_every_rank_holds_the_same_masks_and_scores_at_every_step(runs: dict[str, Any], case: str) -> None:
    rank0, rank1 = (ranks[case] for ranks in runs["ranks"])

    for step, (a, b) in enumerate(zip(rank0["masks"], rank1["masks"], strict=True)):
        for name in a:
            assert torch.equal(a[name], b[name]), f"{case}: ranks disagree on {name} after step {step + 1}"
    _assert_same_alive(rank1["alive"], rank0["alive"])
    for name in rank0["scores"]:
        assert torch.equal(rank0["scores"][name], rank1["scores"][name]), f"{case}: scores of {name}"
    for name in rank0["weights"]:
        assert torch.equal(rank0["weights"][name], rank1["weights"][name]), f"{case}: weights {name}"


def _assert_same_run(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    """Alive sets at every removal, masks after every step, final weights and scores."""
    assert len(want["alive"]) >= 4, "removals must happen, down to one combination per group"
    _assert_same_alive(got["alive"], want["alive"])
    assert len(got["masks"]) == len(want["masks"])
    for step, (a, b) in enumerate(zip(got["masks"], want["masks"], strict=True)):
        for name in b:
            assert torch.equal(a[name], b[name]), f"{what}: mask of {name} differs after step {step + 1}"
    for name, value in want["weights"].items():
        torch.testing.assert_close(got["weights"][name], value, rtol=1e-4, atol=1e-5, msg=f"{what}: {name}")
    for name, value in want["scores"].items():
        torch.testing.assert_close(got["scores"][name], value, rtol=1e-4, atol=1e-6, msg=f"{what}: {name}")


@pytest.mark.parametrize(
    "case",
    [case.name for case in scenarios.CASES if case.grad_accumulation_steps > 1 and not case.grad_clip_norm],
)
def test_micro_batches_without_all_reduces_train_like_one_backward_of_the_global_batch(
    runs: dict[str, Any], case: str
) -> None:
    """2 processes x k micro-batches (all-reduced once, after the last) against 1 process and against 2
    processes taking each step's global batch in one backward."""
    accumulated = runs["ranks"][0][case]
    reference = scenarios.ONE_BACKWARD.name

    _assert_same_run(accumulated, runs["single"][reference], f"{case} on 2 processes vs 1 process")
    _assert_same_run(accumulated, runs["ranks"][0][reference], f"{case} vs one backward on 2 processes")


def test_accumulating_micro_batches_all_reduce_once_per_optimizer_step(runs: dict[str, Any]) -> None:
    one, accumulated = (runs["ranks"][0][f"counted {case.name}"] for case in scenarios.COUNTED)
    steps = len(one["masks"])

    # The digits MLP's gradients fit in one DDP bucket: one all-reduce per backward.
    assert one["reductions"] == [[0]] * steps
    # Two micro-batches per step, and still one all-reduce: the first backward ran under no_sync.
    assert accumulated["reductions"] == [[0]] * steps
    assert scenarios.COUNTED[1].grad_accumulation_steps == 2
    # Counting did not change what was trained.
    _assert_same_run(accumulated, runs["ranks"][0][scenarios.COUNTED[1].name], "counted run")


def test_a_single_process_checkpoint_resumes_on_two_processes(runs: dict[str, Any]) -> None:
    single = runs["single"]["lbc 2:4"]
    resumed = runs["ranks"][0]["resumed"]

    assert resumed["status"] == "completed"
    after = [(step, alive) for step, alive in single["alive"] if step > scenarios.STOP_AT]
    assert after, "the interrupted run must still have removals ahead of it"
    _assert_same_alive(resumed["alive"], after)
    for name, want in single["weights"].items():
        torch.testing.assert_close(resumed["weights"][name], want, rtol=1e-4, atol=1e-5, msg=name)
    assert resumed["history"][-1]["train_loss"] == pytest.approx(
        single["history"][-1]["train_loss"], rel=1e-4
    )


def test_every_process_needs_a_share_of_each_batch() -> None:
    with pytest.raises(ValueError, match=r"processes \(8\) must not exceed batch_size \(4\)"):
        TrainConfig(batch_size=4, processes=8)
    with pytest.raises(ValueError, match=r"processes must be in \[1, 64\]"):
        TrainConfig(processes=0)
