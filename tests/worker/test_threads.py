"""``LBC_WORKER_THREADS`` caps torch's threads in the process that runs a job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from jobs.settings import Settings
from jobs.states import JobState
from tests.worker.test_execution import FAST, load, settings, submit
from worker import execution
from worker.context import build_context

__all__ = ["settings"]  # fixture shared with test_execution


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_a_job_runs_with_the_configured_thread_count(settings: Settings, restore_threads: int) -> None:
    torch.set_num_threads(2)  # what a worker on a 2-core machine starts with
    ctx = build_context(
        settings.model_copy(update={"worker_threads": 1}), worker_id="w/1", send=lambda *a: None
    )
    try:
        job_id = submit(ctx, FAST)
        assert execution.run_job(ctx, job_id) is JobState.SUCCEEDED
        assert load(ctx, job_id).state == JobState.SUCCEEDED.value
        assert torch.get_num_threads() == 1
    finally:
        ctx.close()


def test_zero_leaves_torch_default_alone(restore_threads: int) -> None:
    torch.set_num_threads(2)
    execution.limit_threads(0)
    assert torch.get_num_threads() == 2
    execution.limit_threads(1)
    assert torch.get_num_threads() == 1


def test_the_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="worker_threads"):
        Settings(worker_threads=-1)
