"""A real CUDA out-of-memory error is classified like the one the worker expects: non-retryable."""

from __future__ import annotations

import pytest
import torch

from worker.execution import classify


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_cuda_allocation_failure_fails_the_job_without_retrying() -> None:
    free, _total = torch.cuda.mem_get_info()
    with pytest.raises(torch.cuda.OutOfMemoryError) as caught:
        # A plain device allocation (cudaMalloc) twice the free memory: refused at once, nothing is held.
        torch.empty(2 * free, dtype=torch.uint8, device="cuda")
    error_type, message, retryable = classify(caught.value)
    assert error_type == classify(torch.cuda.OutOfMemoryError("stand-in"))[0]
    assert not retryable
    assert "out of cuda memory" in message.lower()
    # The allocator is usable again: the failed request left nothing behind.
    assert torch.cuda.memory_allocated() < free
    torch.empty(1024, device="cuda")
