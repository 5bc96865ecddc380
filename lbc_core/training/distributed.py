"""Multi-process data-parallel training: ranks started by PyTorch's elastic launcher, gradients averaged by DDP.

The single-process run is the reference. ``TrainConfig.batch_size`` is the *global* batch: every optimizer
step takes the same global batch a single process would, splits it into ``processes`` contiguous shards
(one per rank), and weights each rank's loss by ``processes * shard / batch`` so that DDP's average of the
ranks' gradients is exactly the combined batch's gradient, uneven last batches included. Methods whose state
reads the gradient (LBC's score signal) form it after that average, so every rank holds the same scores and
masks as one process would; SR-STE and one-shot magnitude masks are functions of the (identical) weights.
With gradient accumulation only a step's last micro-batch all-reduces (the others run under DDP's
``no_sync``), so the ranks communicate once per optimizer step whatever the number of micro-batches.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize

from lbc_core.sparsity.score_signal import apply_reduced_gradient

# A rank that waits longer than this at a collective (its peer hung, not died: the launcher sees deaths)
# gives up with an error instead of holding the job forever.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
# Mixed into the seeds of ranks > 0 so that their dropout and augmentation draws differ from rank 0's
# (rank 0 keeps the seed itself: a one-process run is the reference run).
_RANK_SEED_STRIDE = 1_000_000_007


@dataclass(frozen=True)
class Rank:
    """Where this process stands in its job: ``rank`` of ``world_size``, ``local_rank`` on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes checkpoints, metrics and exports, and reports to the service."""
        return self.rank == 0


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """A CUDA job gets one GPU per process, by local rank; CPU processes share the CPU."""
    if device.type != "cuda" or rank.world_size == 1:
        return device
    if rank.local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"{rank.world_size} processes need {rank.world_size} GPUs, this machine has "
            f"{torch.cuda.device_count()}"
        )
    return torch.device("cuda", rank.local_rank)


def rank_seed(seed: int, rank: Rank) -> int:
    return seed if rank.rank == 0 else (seed + rank.rank * _RANK_SEED_STRIDE) % (2**63 - 1)


class SingleProcess:
    """The trainer's hooks for one process: every hook is the identity. The reference run."""

    rank = Rank()

    def device(self, device: torch.device) -> torch.device:
        return device

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the forward pass runs through (the model itself, or its DDP wrapper)."""
        return model

    def local_batch(self, index: torch.Tensor) -> torch.Tensor:
        return index

    def accumulating(self) -> contextlib.AbstractContextManager[object]:
        """Around the forward and backward of a micro-batch that is not the step's last: its gradients
        only add to this process's own (one process has nothing to communicate)."""
        return contextlib.nullcontext()

    def loss_weight(self, local: int, total: int) -> float:
        return 1.0

    def after_backward(self, model: nn.Module) -> None:
        """Gradients are final here (averaged across ranks); the optimizer step comes next."""

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank: every rank gets the same answer, so they stop together."""
        return flag

    def sum(self, values: Sequence[float]) -> list[float]:
        return list(values)

    def seed(self, seed: int) -> int:
        return seed


class DataParallel(SingleProcess):
    """The trainer's hooks for one rank of a multi-process job (the process group must be initialised)."""

    def __init__(self, rank: Rank, *, sync_batchnorm: bool = False) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DataParallel needs an initialised process group (see init_process_group)")
        self.rank = rank
        self.sync_batchnorm = sync_batchnorm
        self._device = torch.device("cpu")
        self._wrapped: DistributedDataParallel | None = None

    def device(self, device: torch.device) -> torch.device:
        self._device = rank_device(device, self.rank)
        return self._device

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.sync_batchnorm and self._device.type != "cuda":
            raise ValueError("sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only)")
        if self.sync_batchnorm:
            # Modules are replaced in place below the root; parameters are the same objects, so the
            # optimizer, the sparsifier and checkpoints see no difference.
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        _defer_score_signals(model)
        device_ids = [self._device.index] if self._device.type == "cuda" else None
        # No buffer sync before each forward: LBC's scores, masks and momenta are buffers and are kept
        # equal by construction; sending them from rank 0 every step would cost more traffic than the
        # gradients. BatchNorm statistics stay each rank's own (rank 0's are the ones saved, as a
        # per-forward sync would also make them); SyncBatchNorm makes them global.
        self._wrapped = DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
        return self._wrapped

    def local_batch(self, index: torch.Tensor) -> torch.Tensor:
        return index.tensor_split(self.rank.world_size)[self.rank.rank]

    def accumulating(self) -> contextlib.AbstractContextManager[object]:
        # DDP's no_sync: backward adds to each rank's local .grad without an all-reduce; the next forward
        # and backward outside it all-reduce the accumulated sum. With k micro-batches a step all-reduces
        # once instead of k times, and after_backward still sees the ranks' average of the whole step's
        # gradient (LBC's signal is formed from it once per optimizer step).
        if self._wrapped is None:
            raise RuntimeError("DataParallel.accumulating needs the model wrapped first (see wrap)")
        return self._wrapped.no_sync()

    def loss_weight(self, local: int, total: int) -> float:
        # DDP averages the ranks' gradients; a mean loss over ``local`` samples weighted by
        # world * local / total makes that average the mean over all ``total`` samples.
        return self.rank.world_size * local / max(total, 1)

    def after_backward(self, model: nn.Module) -> None:
        for weight, state in _score_states(model):
            if state.scores_trainable and weight.grad is not None:
                apply_reduced_gradient(state, state.mask, weight.detach(), weight.grad)

    def any(self, flag: bool) -> bool:
        value = torch.tensor([1.0 if flag else 0.0], device=self._collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum(self, values: Sequence[float]) -> list[float]:
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def seed(self, seed: int) -> int:
        return rank_seed(seed, self.rank)

    def _collective_device(self) -> torch.device:
        return self._device if backend_for(self._device) == "nccl" else torch.device("cpu")


def _score_states(model: nn.Module) -> Iterator[tuple[nn.Parameter, Any]]:
    """``(original weight, parametrization)`` of every layer whose score signal reads the gradient (LBC)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            chain: Any = module.parametrizations["weight"]  # type: ignore[index]
            for state in chain:
                if hasattr(state, "signal_after_reduction"):
                    yield chain.original, state


def _defer_score_signals(model: nn.Module) -> None:
    for _, state in _score_states(model):
        state.signal_after_reduction = True


def rank_from_environment() -> Rank | None:
    """This process's rank as the launcher set it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), if any."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return Rank(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
    )


def init_process_group(device: torch.device) -> Rank:
    """Join the job's process group (the launcher's environment says where); returns this rank."""
    rank = rank_from_environment()
    if rank is None:
        raise RuntimeError("not started by the distributed launcher (RANK and WORLD_SIZE are not set)")
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device, rank))
    dist.init_process_group(backend_for(device), timeout=COLLECTIVE_TIMEOUT)
    return rank


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Rank]:
    """``init_process_group`` for the duration of a block; the group is destroyed however it ends."""
    rank = init_process_group(device)
    try:
        yield rank
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def launch(
    entrypoint: Callable[..., Any],
    args: Sequence[Any],
    processes: int,
    *,
    run_id: str | None = None,
) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` in ``processes`` fresh processes on this machine with torch's elastic
    launcher (the machinery behind ``torchrun --standalone``); returns each rank's return value.

    No restarts: a rank that fails or dies ends the whole launch (the launcher stops the others) with
    ``torch.distributed.elastic.multiprocessing.errors.ChildFailedError``; retrying is the caller's call.
    ``entrypoint`` must be importable (processes are spawned, not forked: a forked CUDA context or
    thread pool would be unusable).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=run_id or uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    result: dict[int, Any] = elastic_launch(config, entrypoint)(*args)
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__ = [
    "COLLECTIVE_TIMEOUT",
    "DataParallel",
    "Rank",
    "SingleProcess",
    "backend_for",
    "init_process_group",
    "launch",
    "process_group",
    "rank_device",
    "rank_from_environment",
    "rank_seed",
]
