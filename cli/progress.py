"""Live progress of a local run (a tqdm bar plus one line per epoch) and cooperative Ctrl-C."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from tqdm import tqdm

from lbc_core.training import StepEvent, TrainingCallback


class ProgressReporter(TrainingCallback):
    """Shows step progress on a terminal and prints every epoch's metrics; ``request_stop`` ends the run.

    The bar is drawn only on a terminal; the per-epoch lines are printed everywhere (logs included).
    """

    def __init__(self, epochs: int, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.epochs = epochs
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.stop_requested = False
        self._bar: tqdm[Any] | None = None

    # -- TrainingCallback ------------------------------------------------------------------------
    def on_step(self, event: StepEvent) -> None:
        if self.quiet:
            return
        if self._bar is None:
            self._bar = tqdm(
                total=event.total_steps,
                initial=event.global_step - 1,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.25,
                leave=False,
                disable=not _is_terminal(self.stream),
            )
        self._bar.set_description(f"epoch {event.epoch + 1}/{self.epochs}", refresh=False)
        self._bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.3g}", refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if not self.quiet:
            tqdm.write(format_epoch(record, self.epochs), file=self.stream)

    def should_stop(self) -> bool:
        return self.stop_requested

    # -- control ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.stop_requested = True
        if not self.quiet:
            tqdm.write(
                "stopping at the next step and writing a checkpoint (Ctrl-C again to abort)", file=self.stream
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {record.get('epoch', '?')}/{epochs}"]
    for key, label, fmt in (
        ("train_loss", "loss", ".4f"),
        ("train_accuracy", "acc", ".4f"),
        ("val_loss", "val_loss", ".4f"),
        ("val_accuracy", "val_acc", ".4f"),
        ("train_perplexity", "ppl", ".2f"),
        ("val_perplexity", "val_ppl", ".2f"),
        ("lr", "lr", ".3g"),
        ("alive_per_group", "alive/group", ".0f"),
        ("mask_density", "density", ".3f"),
        ("seconds", "time", ".1f"),
    ):
        if isinstance(record.get(key), int | float):
            parts.append(f"{label} {record[key]:{fmt}}{'s' if key == 'seconds' else ''}")
    return "  ".join(parts)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def stop_on_sigint(reporter: ProgressReporter) -> Iterator[None]:
    """The first Ctrl-C asks the run to stop cooperatively; a second one raises KeyboardInterrupt."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if reporter.stop_requested:
            raise KeyboardInterrupt
        reporter.request_stop()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
