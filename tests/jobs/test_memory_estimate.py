"""The memory estimate of a job on ``train.processes`` = P processes: each rank holds the model, its
gradients, optimizer and sparsity state, DDP's gradient buckets and the activations of its share of the
batch; CPU ranks share the host's memory (P ranks' worth against the limit), CUDA ranks have a GPU each
(one rank's worth against the limit, which is then per GPU)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from jobs.admission import LIMIT_SETTING, job_memory, over_limit, training_advice
from jobs.sizing import FLOAT_BYTES, ModelShape, format_bytes, training_memory
from jobs.spec import JobSpec, parse_spec

# Activations dominate: 10 k outputs per sample against 1 k parameters and a one-sample validation.
SHAPE = ModelShape(parameters=1_000, weight_parameters=800, layer_outputs=10_000, largest_output=1_000)
TRAINING = {
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
        f"({limit} bytes, {LIMIT_SETTING}); use a smaller model (model.args), a smaller train.batch_size "
        "or fewer train.processes"
    )
    # The same job on CUDA processes needs one rank on each GPU; here a rank's quarter of the batch saves
    # more activation bytes than DDP's buckets add, so a GPU holds less than the one process did.
    cuda = _spec(device="cuda", processes=4)
    assert over_limit(job_memory(cuda), limit, "model", training_advice(cuda)) is None
