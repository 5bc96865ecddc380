"""A job that trains on several processes: torch's elastic launcher starts the ranks; this process stays the
job's link to the service.

The job's own process (the one that claimed it, holds its lease and heartbeats) launches ``processes`` ranks
with :func:`lbc_core.training.distributed.launch` and relays for rank 0: progress, metrics and checkpoints
come up through a queue and go through the ordinary :class:`ServiceCallback` here (a checkpoint is uploaded
before rank 0 goes on); stop requests (cancel, time limit, shutdown, lost lease) go down as one flag that
rank 0 polls and all ranks agree on at the next step.

Failure and cleanup: the launcher runs without restarts, so a rank that raises or dies (SIGKILL included)
ends the launch and the launcher stops the other ranks; the attempt then fails with the rank's error, and a
machine fault (a killed rank) is retryable, so the next attempt resumes from the last checkpoint. Ranks sit
in a process group of their own (signals sent to the worker's group do not kill them mid-step; the stop
flag stops them cleanly) and die with this process (``PR_SET_PDEATHSIG``), so none outlives the job.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from jobs.spec import JobSpec, SpecError
from lbc_core.models.probe import is_allocation_failure
from lbc_core.pipeline import RunResult
from lbc_core.training import StepEvent, TrainingCallback, TrainingState, resolve_device
from lbc_core.training.distributed import DataParallel, launch, process_group
from worker.lifecycle import set_parent_death_signal
from worker.runner import JobInputError, run_spec

log = logging.getLogger(__name__)

RELAY_POLL_S = 0.05


class RankFailed(RuntimeError):
    """A rank of a multi-process job died or failed with an error that is not the job's input."""


class TooManyProcesses(ValueError):
    """More CPU ranks than the worker has cores: refused before any rank starts (an input error)."""


def check_rank_count(processes: int, device: torch.device) -> None:
    """CPU ranks share this worker's cores, and every step waits for all of them: ranks beyond the cores
    only queue for a core (each importing torch first, which delays a cancel until the last one trains).
    CUDA ranks are checked against the GPUs by each rank (one GPU each)."""
    if device.type != "cpu":
        return
    cores = len(os.sched_getaffinity(0))
    if processes > cores:
        raise TooManyProcesses(
            f"train.processes is {processes} but this worker may use {cores} CPU core{'s' if cores != 1 else ''}; "
            f"CPU ranks beyond its cores only wait for each other: use at most {cores}"
        )


@dataclass(frozen=True)
class _Channels:
    """Rank 0 -> job process: events; job process -> rank 0: checkpoint acknowledgements and the stop flag."""

    events: Any  # multiprocessing Queue of (kind, payload)
    acks: Any  # multiprocessing Queue
    stop: Any  # multiprocessing Event


class _RelayCallback(TrainingCallback):
    """Rank 0's callback: everything goes to the job process, which owns the service connection."""

    def __init__(self, channels: _Channels) -> None:
        self.channels = channels

    def on_step(self, event: StepEvent) -> None:
        self.channels.events.put(("step", event))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.channels.events.put(("epoch", record))

    def on_checkpoint(self, path: Path, state: TrainingState) -> None:
        # Only where the checkpoint stands travels; the file itself is read by the job process.
        position = replace(state, model={}, optimizer={}, sparsifier={}, rng={}, history=[], running={})
        self.channels.events.put(("checkpoint", (str(path), position)))
        self.channels.acks.get()  # uploaded (or given up) before rank 0 may overwrite the file

    def should_stop(self) -> bool:
        return bool(self.channels.stop.is_set())


def _error_kind(exc: BaseException) -> str:
    """How the job process should classify a rank's exception (exceptions do not all survive pickling)."""
    if is_allocation_failure(exc):
        return "memory"
    if isinstance(exc, FloatingPointError):
        return "diverged"
    if isinstance(exc, JobInputError | SpecError | ValueError):
        return "input"
    return "other"


def rank_main(
    spec: JobSpec,
    out_dir: str,
    scratch_dir: str | None,
    resume: bool,
    channels: _Channels,
    threads: int,
    parent: int,
) -> RunResult | None:
    """One rank (a fresh process): train its share of ``spec``; rank 0 returns the run's result."""
    os.setpgid(0, 0)  # out of the worker's process group: a group-wide SIGTERM must not kill a rank mid-step
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the job process died before the request above took effect
        os._exit(1)
    if threads > 0:
        torch.set_num_threads(threads)
    device = resolve_device(spec.train.device)
    with process_group(device) as rank:
        try:
            parallel = DataParallel(rank, sync_batchnorm=spec.train.sync_batchnorm)
            callbacks = [_RelayCallback(channels)] if rank.is_writer else []
            result = run_spec(
                spec,
                out_dir,
                callbacks=callbacks,
                resume=resume,
                # Archives are extracted per rank: two ranks writing one directory would collide.
                scratch_dir=Path(scratch_dir) / f"rank{rank.rank}" if scratch_dir else None,
                parallel=parallel,
            )
        except Exception as exc:
            channels.events.put(("error", (rank.rank, _error_kind(exc), type(exc).__name__, str(exc))))
            raise
        return result if rank.is_writer else None


def run_spec_processes(
    spec: JobSpec,
    out_dir: Path,
    callback: TrainingCallback,
    *,
    scratch_dir: Path | None = None,
    resume: bool = True,
    threads: int = 0,
    run_id: str | None = None,
) -> RunResult:
    """Train ``spec`` on ``spec.train.processes`` ranks; ``callback`` sees what a one-process run shows it."""
    context = multiprocessing.get_context("spawn")
    channels = _Channels(context.Queue(), context.Queue(), context.Event())
    launched: dict[str, Any] = {}
    scratch = str(scratch_dir) if scratch_dir else None

    def run_launch() -> None:
        try:
            with _may_start_children():
                launched["results"] = launch(
                    rank_main,
                    (spec, str(out_dir), scratch, resume, channels, threads, os.getpid()),
                    spec.train.processes,
                    run_id=run_id,
                )
        except BaseException as exc:
            launched["error"] = exc

    # The launcher runs off the main thread so that it does not replace this process's SIGTERM handler
    # (a worker shutdown must reach the ranks as a stop request, which the relay below sends).
    launcher = threading.Thread(target=run_launch, name="rank-launcher", daemon=True)
    launcher.start()
    errors: list[tuple[int, str, str, str]] = []
    relay_error: BaseException | None = None
    while True:
        try:
            kind, payload = channels.events.get(timeout=RELAY_POLL_S)
        except queue.Empty:
            if not launcher.is_alive():
                break
        else:
            try:
                _dispatch(kind, payload, callback, errors)
            except Exception as exc:  # the service link failed: stop the ranks, report after they exit
                relay_error = relay_error or exc
                channels.stop.set()
            finally:
                if kind == "checkpoint":
                    channels.acks.put(True)
        if relay_error is None and callback.should_stop():
            channels.stop.set()
    launcher.join()
    if relay_error is not None:
        raise relay_error
    if "error" in launched:
        raise _failure(launched["error"], errors) from launched["error"]
    result: RunResult = launched["results"][0]
    return result


@contextlib.contextmanager
def _may_start_children() -> Iterator[None]:
    """Let a Celery pool process start the ranks with the standard library's multiprocessing.

    Celery's pool (billiard) installs its own process object as multiprocessing's current process: a
    daemon, with billiard's authentication key type. multiprocessing refuses children to daemons (they
    would be orphaned when the daemon is ended; the ranks instead ask the kernel to kill them when this
    process dies, PR_SET_PDEATHSIG in :func:`rank_main`), and can only hand its own key type to a spawned
    child. Both are set for the launch and put back after it. A no-op outside a pool process.
    """
    config: dict[str, Any] = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    saved: dict[str, Any] = {key: config[key] for key in ("daemon", "authkey") if key in config}
    config["daemon"] = False
    if "authkey" in saved:
        config["authkey"] = multiprocessing.process.AuthenticationString(  # type: ignore[attr-defined]
            bytes(saved["authkey"])
        )
    try:
        yield
    finally:
        config.update(saved)


def _dispatch(kind: str, payload: Any, callback: TrainingCallback, errors: list[Any]) -> None:
    if kind == "step":
        callback.on_step(payload)
    elif kind == "epoch":
        callback.on_epoch_end(payload)
    elif kind == "checkpoint":
        path, state = payload
        callback.on_checkpoint(Path(path), state)
    elif kind == "error":
        errors.append(payload)


def _failure(exc: BaseException, errors: list[tuple[int, str, str, str]]) -> BaseException:
    """The exception the attempt fails with: a rank killed by a signal (its peers then fail with connection
    errors, which are consequences), else the first error a rank reported, else how a rank ended."""
    failures: dict[int, Any] = getattr(exc, "failures", None) or {}
    killed = [
        (rank, failure)
        for rank, failure in sorted(failures.items())
        # SIGTERM is what the launcher sends the survivors; it is never the cause.
        if failure.exitcode < 0 and failure.signal_name() != "SIGTERM"
    ]
    if killed:
        rank, failure = killed[0]
        return RankFailed(
            f"training process rank {rank} (pid {failure.pid}) died with signal {failure.signal_name()}"
        )
    if errors:
        rank, kind, name, message = errors[0]
        if kind == "input":
            return JobInputError(message, name)
        if kind == "diverged":
            return FloatingPointError(message)
        if kind == "memory":
            return MemoryError(message)
        return RankFailed(f"rank {rank} failed: {name}: {message}")
    if not failures:
        return RankFailed(f"the training processes could not be started: {type(exc).__name__}: {exc}")
    rank, failure = min(failures.items())
    return RankFailed(
        f"training process rank {rank} (pid {failure.pid}) ended with exit code {failure.exitcode}"
    )


__all__ = ["RankFailed", "TooManyProcesses", "check_rank_count", "rank_main", "run_spec_processes"]
