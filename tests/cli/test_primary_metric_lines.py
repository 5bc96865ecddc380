"""The CLI shows a job's primary metric: val accuracy for classifiers, val perplexity for language models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cli.client_watch import format_epoch, format_outcome
from cli.progress import format_epoch as format_local_epoch
from cli.train import format_summary
from client.models import Job
from jobs.spec import parse_spec


def _job(result: dict[str, Any]) -> Job:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(
        id="j1", owner_id="o", name=None, state="succeeded", phase=None, method="lbc", pattern="2:4",
        architecture="lenet5", dataset_id=None, checkpoint_id=None, queue="cpu", priority=5,
        time_limit_s=None, attempt=1, max_attempts=3, cancel_requested=False, progress={}, error_type=None,
        error_message=None, created_at=now, queued_at=now, started_at=now, finished_at=now, updated_at=now,
        result=result,
    )  # fmt: skip


def test_the_outcome_line_names_the_primary_metric() -> None:
    classifier = format_outcome(_job({"val_accuracy": 0.9, "density": 0.5}))
    assert "val accuracy 0.9000" in classifier
    lm = {"val_perplexity": 42.5, "primary_metric": {"name": "val_perplexity", "higher_is_better": False}}
    line = format_outcome(_job(lm))
    assert "val perplexity 42.5000" in line and "accuracy" not in line


def test_epoch_lines_show_perplexity_for_a_language_model() -> None:
    record = {
        "epoch": 1,
        "train_loss": 3.0,
        "train_perplexity": 20.09,
        "val_loss": 3.2,
        "val_perplexity": 24.53,
    }
    for line in (format_epoch(record, 2), format_local_epoch(record, 2)):
        assert "ppl 20.09" in line and "val_ppl 24.53" in line and "acc" not in line


def test_lbc_train_summary_prints_val_perplexity(tmp_path: Any) -> None:
    spec = parse_spec(
        {"model": {"source": "huggingface", "path": "llama"}, "dataset": {"source": "text", "path": "c.txt"}}
    )
    summary = {
        "val_perplexity": 12.25,
        "primary_metric": {"name": "val_perplexity", "higher_is_better": False},
        "density": 0.6,
        "verified_nm": True,
    }
    text = format_summary(spec, summary, tmp_path)
    assert "  val perplexity 12.2500" in text
