"""Training runs that the multi-process tests start once per rank (spawned processes import this module).

Every run records what must agree between ranks and with a single process: the alive combinations at
every LBC removal, the masks after every step, the final weights and the LBC scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from lbc_core.data.digits import load_digits
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.sparsity.base import Sparsifier
from lbc_core.sparsity.lbc import LBCSparsifier
from lbc_core.training import StepEvent, TrainConfig, Trainer, TrainingCallback
from lbc_core.training.distributed import DataParallel, SingleProcess, process_group


@dataclass(frozen=True)
class Case:
    method: str
    n: int
    m: int
    # Deferred LBC score steps: the signal formed after the all-reduce joins the pending sum, and the
    # scores step once per optimizer step with the clipped weights' factor.
    grad_accumulation_steps: int = 1
    grad_clip_norm: float | None = None

    @property
    def name(self) -> str:
        extra = ""
        if self.grad_accumulation_steps > 1:
            extra += f" accumulate {self.grad_accumulation_steps}"
        if self.grad_clip_norm is not None:
            extra += f" clip {self.grad_clip_norm:g}"
        return f"{self.method} {self.n}:{self.m}{extra}"


# The proof's cases.
CASES = (
    Case("lbc", 2, 4),
    Case("lbc", 1, 16),
    Case("srste", 2, 4),
    Case("asp", 2, 4),
    Case("lbc", 2, 4, grad_accumulation_steps=2, grad_clip_norm=0.5),
    # Micro-batches of 16 per rank under no_sync: one all-reduce per optimizer step.
    Case("lbc", 2, 4, grad_accumulation_steps=2),
    # The last batch (8 samples, 4 per rank) leaves each rank 4 empty micro-batches out of 8, the synced
    # last one among them: every rank must still run it to join the step's only all-reduce.
    Case("lbc", 2, 4, grad_accumulation_steps=8),
)
# Runs whose all-reduces are counted: one backward per step, and two micro-batches per step under no_sync.
COUNTED = (CASES[0], Case("lbc", 2, 4, grad_accumulation_steps=2))
# The reference for the accumulating cases: the same global batch in one backward per rank.
ONE_BACKWARD = CASES[0]
GLOBAL_BATCH = 64  # 2 processes x 32 against 1 process x 64
SAMPLES = 520  # 8 full batches and a last one of 8 samples (uneven shards must stay exact too)
EPOCHS = 3
STOP_AT = 11  # where the run resumed on another number of processes was interrupted


@dataclass
class Record(TrainingCallback):
    """Alive sets at every removal and masks after every step."""

    sparsifier: Sparsifier
    stop_at: int | None = None

    def __post_init__(self) -> None:
        self.alive: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.masks: list[dict[str, torch.Tensor]] = []
        self.removals_seen = 0
        # Gradient all-reduces (one per DDP bucket) made during each optimizer step, when counted.
        self.reductions: list[list[int]] = [[]]

    def on_step(self, event: StepEvent) -> None:
        self.reductions.append([])
        self.masks.append({k: v.clone() for k, v in self.sparsifier.masks().items()})
        if isinstance(self.sparsifier, LBCSparsifier) and self.sparsifier.removals != self.removals_seen:
            self.removals_seen = self.sparsifier.removals
            alive = {name: p.alive_bits().clone() for name, p in self.sparsifier._iter_parametrizations()}
            self.alive.append((event.global_step, alive))

    def should_stop(self) -> bool:
        return self.stop_at is not None and len(self.masks) >= self.stop_at


def train(
    case: Case,
    parallel: SingleProcess,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    stop_at: int | None = None,
    count_reductions: bool = False,
) -> dict[str, Any]:
    digits = load_digits()
    data = _Data(digits.x[:SAMPLES].flatten(1), digits.y[:SAMPLES])
    torch.manual_seed(0)
    model = build_model("mlp", input_features=64, hidden_sizes=[64, 32], num_classes=10)
    schedule = RemovalSchedule(t_i=0, t_f=2, per_step=True)
    pattern = NMPattern(case.n, case.m)
    sparsifier = build_sparsifier(SparsityConfig(method=case.method, pattern=pattern, schedule=schedule))
    sparsifier.prepare(model)
    record = Record(sparsifier, stop_at)
    config = TrainConfig(
        epochs=EPOCHS,
        batch_size=GLOBAL_BATCH,
        lr=0.1,
        seed=5,
        device="cpu",
        grad_accumulation_steps=case.grad_accumulation_steps,
        grad_clip_norm=case.grad_clip_norm,
        processes=parallel.rank.world_size,
    )
    trainer = Trainer(
        model, sparsifier, config, data, callbacks=[record], checkpoint_path=checkpoint, parallel=parallel
    )
    if count_reductions:
        _count_reductions(trainer.forward, record)
    if resume and checkpoint is not None:
        trainer.resume(checkpoint)
        record.removals_seen = getattr(sparsifier, "removals", 0)  # only removals after the resume count
    outcome = trainer.fit()
    scores = {name: p.score.clone() for name, p in sparsifier._iter_parametrizations() if hasattr(p, "score")}
    return {
        "status": outcome.status,
        "history": outcome.history,
        "alive": record.alive,
        "masks": record.masks,
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "scores": scores,
        "reductions": record.reductions[:-1] if count_reductions else None,
    }


def _count_reductions(forward: torch.nn.Module, record: Record) -> None:
    """Register a DDP communication hook that does DDP's own all-reduce and notes each call's bucket in
    ``record.reductions`` (a new list per optimizer step)."""
    assert isinstance(forward, DistributedDataParallel), "only a multi-process run all-reduces"

    # Unannotated: DDP checks a hook's annotations against its types, and this module's are strings.
    def allreduce(_, bucket):
        record.reductions[-1].append(bucket.index())
        return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]

    forward.register_comm_hook(None, allreduce)


@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor


def rank_main(resume_from: str) -> dict[str, Any]:
    """One rank: every proof case, then the run resumed from a single-process checkpoint."""
    torch.set_num_threads(1)
    with process_group(torch.device("cpu")) as rank:
        parallel = DataParallel(rank)
        results: dict[str, Any] = {}
        for case in CASES:
            results[case.name] = train(case, DataParallel(rank))
        results["resumed"] = train(CASES[0], parallel, checkpoint=Path(resume_from), resume=True)
        for case in COUNTED:
            results[f"counted {case.name}"] = train(case, DataParallel(rank), count_reductions=True)
        return results
