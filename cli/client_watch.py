"""Live view of a service job for ``lbc status --watch`` and ``lbc submit --wait``: a tqdm bar fed by
the job's events (epoch/step, loss, validation accuracy, alive combinations per group) plus one line per
state, phase and epoch, every server-given text escaped (``cli.terminal``). Never imports torch."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from cli.terminal import shown

if TYPE_CHECKING:
    from client import Event, Job


class JobWatcher:
    """Feed it events (``on_event``); the bar is drawn on a terminal only, the lines everywhere."""

    def __init__(self, job_id: str, stream: TextIO | None = None) -> None:
        self.job_id = job_id
        self.stream = stream or sys.stderr
        self.epochs: int | None = None
        self.val_metric: tuple[str, float] | None = None  # the latest validation accuracy or perplexity
        self.alive: float | None = None
        self._bar: tqdm[Any] | None = None

    def on_event(self, event: Event) -> None:
        data = event.data
        if event.kind == "progress":
            self._progress(data)
        elif event.kind == "metrics":
            for key in ("val_accuracy", "val_perplexity"):
                if isinstance(data.get(key), int | float):
                    self.val_metric = (key, float(data[key]))
            if isinstance(data.get("alive_per_group"), int | float):
                self.alive = float(data["alive_per_group"])
            self._write(format_epoch(data, self.epochs))
        elif event.kind == "phase":
            if isinstance(data.get("epochs"), int):
                self.epochs = data["epochs"]
            extra = ", ".join(f"{k} {v}" for k, v in data.items() if k != "phase")
            self._write(f"phase: {data.get('phase', '?')}" + (f" ({extra})" if extra else ""))
        elif event.kind == "state":
            self._state(event)

    def _progress(self, data: dict[str, Any]) -> None:
        total, done = data.get("total_steps"), data.get("global_step")
        if isinstance(data.get("epochs"), int):
            self.epochs = data["epochs"]
        if not isinstance(total, int) or not isinstance(done, int):
            return
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                leave=False,
                disable=not _is_terminal(self.stream),
            )
        self._bar.total = total
        self._bar.n = min(done, total)
        self._bar.set_description(
            shown(f"epoch {data.get('epoch', '?')}/{data.get('epochs', '?')}"), refresh=False
        )
        postfix: dict[str, str] = {}
        if isinstance(data.get("loss"), int | float):
            postfix["loss"] = f"{data['loss']:.4f}"
        if self.val_metric is not None:
            key, value = self.val_metric
            postfix["val_acc" if key == "val_accuracy" else "val_ppl"] = f"{value:.4f}"
        if self.alive is not None:
            postfix["alive/group"] = f"{self.alive:g}"
        self._bar.set_postfix({key: shown(value) for key, value in postfix.items()}, refresh=False)
        self._bar.refresh()

    def _state(self, event: Event) -> None:
        data = event.data
        state = str(data.get("state", "?"))
        details = [f"attempt {event.attempt}"] if event.attempt else []
        for key in ("reason", "error_type"):
            if data.get(key):
                details.append(str(data[key]))
        self._write(f"state: {state}" + (f" ({'; '.join(details)})" if details else ""))

    def _write(self, line: str) -> None:
        tqdm.write(shown(line), file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_epoch(record: dict[str, Any], epochs: int | None) -> str:
    parts = [f"epoch {record.get('epoch', '?')}/{epochs or '?'}"]
    for key, label, fmt in (
        ("train_loss", "loss", ".4f"),
        ("train_accuracy", "acc", ".4f"),
        ("val_loss", "val_loss", ".4f"),
        ("val_accuracy", "val_acc", ".4f"),
        ("train_perplexity", "ppl", ".2f"),
        ("val_perplexity", "val_ppl", ".2f"),
        ("lr", "lr", ".3g"),
        ("alive_per_group", "alive/group", "g"),
        ("mask_density", "density", ".3f"),
    ):
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{label} {value:{fmt}}")
    return "  ".join(parts)


def primary_metric(result: dict[str, Any]) -> str:
    """The result key of the job's primary metric (val_accuracy for results from before tasks had one)."""
    recorded = result.get("primary_metric")
    name = recorded.get("name") if isinstance(recorded, dict) else None
    return name if isinstance(name, str) else "val_accuracy"


def format_outcome(job: Job) -> str:
    """How the job ended (or where it stands): one line, then one per warning of a succeeded job."""
    took = ""
    if job.started_at and job.finished_at:
        took = f" in {(job.finished_at - job.started_at).total_seconds():.1f}s"
    if job.state == "succeeded":
        result = job.result or {}
        parts = []
        primary = primary_metric(result)
        if isinstance(result.get(primary), int | float):
            parts.append(f"{primary.replace('_', ' ')} {result[primary]:.4f}")
        if isinstance(result.get("density"), int | float):
            parts.append(f"density {result['density']:.3f}")
        if "verified_nm" in result:
            parts.append(f"verified N:M {'yes' if result['verified_nm'] else 'NO'}")
        line = f"job {job.id} succeeded{took}" + (f": {', '.join(parts)}" if parts else "")
        # The job ran, but a model that did not learn is useless: say so on lines nobody can miss.
        return "\n".join([line, *format_warnings(job)])
    if job.state == "failed":
        return f"job {job.id} failed{took}: {job.error_type or 'error'}: {job.error_message or ''}".rstrip(
            ": "
        )
    return f"job {job.id} {job.state}{took}"


def format_warnings(job: Job) -> list[str]:
    """One ``WARNING (code): message`` line per warning of the job's result."""
    return [f"WARNING ({warning.code}): {warning.message}" for warning in job.warnings]


def format_progress(progress: dict[str, Any]) -> str:
    parts = []
    if "epoch" in progress:
        parts.append(f"epoch {progress['epoch']}/{progress.get('epochs', '?')}")
    if "step" in progress:
        parts.append(f"step {progress['step']}/{progress.get('steps_per_epoch', '?')}")
    if isinstance(progress.get("fraction"), int | float):
        parts.append(f"{progress['fraction']:.0%}")
    if isinstance(progress.get("loss"), int | float):
        parts.append(f"loss {progress['loss']:.4f}")
    return ", ".join(parts)


def format_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
