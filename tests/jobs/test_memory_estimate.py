"""The memory estimate of a job on ``train.processes`` = P processes: each rank holds the model, its
gradients, optimizer and sparsity state, DDP's gradient buckets and the activations of its share of the
batch; CPU ranks share the host's memory (P ranks' worth against the limit), CUDA ranks have a GPU each
(one rank's worth against the limit, which is then per GPU). With ``train.grad_accumulation_steps`` = k
only one micro-batch's activations (a k-th of a rank's share) are alive at once."""

from __future__ import annotations

import math
from typing import Any

import pytest

from jobs.admission import LIMIT_SETTING, job_memory, over_limit, training_advice
from jobs.sizing import (
    FLOAT_BYTES,
    MemoryEstimate,
    ModelShape,
    format_bytes,
    inference_memory,
    training_memory,
)
from jobs.spec import JobSpec, parse_spec
from lbc_catalog.timing import TIMING_ROTATION_BYTES

# Activations dominate: 10 k outputs per sample against 1 k parameters and a one-sample validation.
SHAPE = ModelShape(parameters=1_000, weight_parameters=800, layer_outputs=10_000, largest_output=1_000)
TRAINING: dict[str, Any] = {
    "batch_size": 30,
    "eval_batch_size": 1,
    "optimizer": "sgd",
    "momentum": 0.9,
    "method": "lbc",
}


def _spec(**train: Any) -> JobSpec:
    return parse_spec(
        {
            "model": {"architecture": "resnet20"},
            "dataset": {"source": "digits"},
            "sparsity": {"method": "lbc", "n": 2, "m": 4},
            "train": {"epochs": 1, "batch_size": 64, **train},
        }
    )


def test_one_process_is_the_sum_of_its_parts_without_buckets() -> None:
    one = training_memory(SHAPE, **TRAINING)

    assert (one.processes, one.buckets) == (1, 0)
    assert one.activations == FLOAT_BYTES * 30 * 3 * 10_000
    assert (
        one.total
        == one.per_process
        == (one.weights + one.gradients + one.optimizer + one.sparsity + one.activations)
    )
    assert "processes" not in one.describe() and "buckets" not in one.describe()


def test_cpu_processes_each_hold_a_rank_and_share_the_host() -> None:
    one = training_memory(SHAPE, **TRAINING)
    four = training_memory(SHAPE, **TRAINING, processes=4)

    # Every rank: the whole model and its state, its own share of the batch (ceil(30 / 4) = 8 samples),
    # and DDP's buckets, a copy of the gradients.
    assert (four.weights, four.gradients, four.optimizer, four.sparsity) == (
        one.weights,
        one.gradients,
        one.optimizer,
        one.sparsity,
    )
    assert four.activations == FLOAT_BYTES * math.ceil(30 / 4) * 3 * 10_000
    assert four.buckets == four.gradients
    assert four.total == 4 * four.per_process > one.total
    described = four.describe()
    assert described.startswith(f"about {format_bytes(four.total)} (4 processes x about ")
    assert f"x about {format_bytes(four.per_process)}: " in described
    assert f"gradient buckets {format_bytes(four.buckets)}" in described


def test_cuda_processes_are_sized_per_gpu() -> None:
    four = training_memory(SHAPE, **TRAINING, processes=4, per_device=True)

    assert four.total == four.per_process
    assert four.describe().startswith(
        f"about {format_bytes(four.total)} per GPU (4 processes, one GPU each: 1.0 k parameters: weights "
    )


def test_a_process_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="processes must be at least 1, got 0"):
        training_memory(SHAPE, **TRAINING, processes=0)


def test_a_job_spec_is_sized_for_its_processes_and_device() -> None:
    alone = job_memory(_spec(device="cpu"))
    cpu = job_memory(_spec(device="cpu", processes=4))
    auto = job_memory(_spec(processes=4))  # the worker that takes it may have no GPU
    cuda = job_memory(_spec(device="cuda", processes=4))
    cuda_n = job_memory(_spec(device="cuda:1", processes=4))

    assert (alone.processes, cpu.processes) == (1, 4)
    assert cpu.total == auto.total == 4 * cpu.per_process
    assert cuda.total == cuda_n.total == cuda.per_process == cpu.per_process
    assert not cpu.per_device and cuda.per_device


def test_a_job_that_fits_alone_can_be_over_the_limit_on_four_processes() -> None:
    alone, four = _spec(device="cpu"), _spec(device="cpu", processes=4)
    limit = job_memory(alone).total  # exactly fits one process

    assert over_limit(job_memory(alone), limit, "model", training_advice(alone)) is None
    problem = over_limit(job_memory(four), limit, "model", training_advice(four))
    assert problem is not None and problem.path == "model"
    assert problem.message == (
        f"the job would need {job_memory(four).describe()}, over the limit of {format_bytes(limit)} "
        f"({limit} bytes, {LIMIT_SETTING}); use a smaller model (model.args), a smaller train.batch_size, "
        "more train.grad_accumulation_steps or fewer train.processes"
    )
    # The same job on CUDA processes needs one rank on each GPU; here a rank's quarter of the batch saves
    # more activation bytes than DDP's buckets add, so a GPU holds less than the one process did.
    cuda = _spec(device="cuda", processes=4)
    assert over_limit(job_memory(cuda), limit, "model", training_advice(cuda)) is None


def _parts(estimate: MemoryEstimate) -> tuple[int, ...]:
    return (
        estimate.weights,
        estimate.gradients,
        estimate.optimizer,
        estimate.sparsity,
        estimate.checkpoint,
        estimate.buckets,
    )


def test_accumulation_sizes_activations_for_one_micro_batch_and_nothing_else() -> None:
    one = training_memory(SHAPE, **TRAINING)
    four = training_memory(SHAPE, **TRAINING, accumulation_steps=4)

    # batch.split(4) of 30 rows: micro-batches of 8, 8, 7 and 7 rows; the largest is alive at a time.
    assert four.activations == FLOAT_BYTES * 8 * 3 * 10_000
    assert _parts(four) == _parts(one)
    assert one.total - four.total == one.activations - four.activations > 0


def test_accumulation_splits_each_ranks_share() -> None:
    # 30 rows on 4 ranks: shares of 8, 8, 7, 7; each split in 3: micro-batches of at most 3 rows.
    ranks = training_memory(SHAPE, **TRAINING, processes=4, accumulation_steps=3)

    assert ranks.activations == FLOAT_BYTES * math.ceil(math.ceil(30 / 4) / 3) * 3 * 10_000
    assert ranks.activations == FLOAT_BYTES * 3 * 3 * 10_000
    assert _parts(ranks) == _parts(training_memory(SHAPE, **TRAINING, processes=4))


def test_accumulation_never_sizes_activations_below_the_validation_batch() -> None:
    # 30 validation samples need 30 x 3 x 1 k outputs: more than one training row's 3 x 10 k.
    validating = {**TRAINING, "eval_batch_size": 30}
    estimate = training_memory(SHAPE, **validating, accumulation_steps=30)

    assert estimate.activations == FLOAT_BYTES * 30 * 3 * 1_000


def test_an_accumulation_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="accumulation_steps must be at least 1, got 0"):
        training_memory(SHAPE, **TRAINING, accumulation_steps=0)


def test_a_job_refused_for_its_activations_fits_with_four_micro_batches() -> None:
    whole, split = _spec(device="cpu"), _spec(device="cpu", grad_accumulation_steps=4)
    refused, accepted = job_memory(whole), job_memory(split)
    limit = accepted.total  # exactly fits the job in 4 micro-batches of 16 rows

    problem = over_limit(refused, limit, "model", training_advice(whole))
    assert problem is not None
    assert problem.message.endswith("or more train.grad_accumulation_steps")
    assert over_limit(accepted, limit, "model", training_advice(split)) is None
    # Only the activations were over: everything else is the same job's.
    assert _parts(accepted) == _parts(refused)
    assert accepted.activations < refused.activations


def test_a_benchmark_counts_the_weight_copies_its_cpu_timings_cycle_through() -> None:
    small = ModelShape(parameters=1_000_000, weight_parameters=1_000_000, layer_outputs=10, largest_output=10)
    large = ModelShape(parameters=10**9, weight_parameters=10**9, layer_outputs=10, largest_output=10)
    small_weights = FLOAT_BYTES * small.parameters
    # The dense model, its N:M copy, and copies as large as the model (dense, then packed).
    assert inference_memory(small, batch_sizes=[1]).weights == 2 * small_weights + 2 * small_weights
    # A model larger than the rotation gets at most TIMING_ROTATION_BYTES of copies of each kind.
    large_weights = FLOAT_BYTES * large.parameters
    assert inference_memory(large, batch_sizes=[1]).weights == 2 * large_weights + 2 * TIMING_ROTATION_BYTES
