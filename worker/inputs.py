"""Turn a service job's references (uploaded dataset, dense checkpoint, Hugging Face model, previous
training checkpoint) into local files in the job's scratch directory, and the spec into one that points at
them.

A service spec never names a local path: ``dataset.path``, ``dataset.val_path``, ``model.checkpoint`` and
``model.path`` are ids of the owner's uploads. Local file names are chosen here, never taken from user input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.db import transaction
from jobs.models import Checkpoint, Dataset, HFModel, Job
from jobs.spec import PATH_SOURCES, JobSpec, dump_spec, parse_spec
from jobs.storage import ObjectNotFound
from lbc_core.data import DatasetError
from lbc_core.data.archives import archive_kind, extract_archive
from lbc_core.pipeline import CHECKPOINT_NAME
from lbc_core.training import CheckpointError, load_checkpoint, resume_point
from lbc_formats.errors import FormatError
from lbc_formats.hf_directory import check_model_dir
from worker.context import WorkerContext

log = logging.getLogger(__name__)

_ARCHIVE_SUFFIX = {"zip": ".zip", "tar": ".tar"}


class InputError(ValueError):
    """An input the job names cannot be used (missing, someone else's, malformed): retrying cannot help."""


@dataclass(frozen=True)
class Resume:
    key: str
    epoch: int
    step: int
    global_step: int

    def position(self) -> dict[str, int]:
        """``resumed_from``: the same numbers as the engine's ``resumed_from`` and the resume log line."""
        return resume_point(self.epoch, self.step, self.global_step)

    def as_event(self) -> dict[str, Any]:
        return {"resumed_from": self.position()}


def _local_name(stem: str, stored_filename: str) -> str:
    """``stem`` plus a suffix from a fixed list, so the loaders recognise the kind of file."""
    lowered = stored_filename.lower()
    suffixes = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip", ".npz")
    # Text datasets: the loader tells JSON lines, CSV and plain text apart by the suffix.
    for suffix in (*suffixes, ".jsonl", ".csv", ".txt", ".json"):
        if lowered.endswith(suffix):
            return stem + suffix
    return stem


def download(ctx: WorkerContext, key: str, path: Path, what: str) -> Path:
    """Fetch a stored object; a missing one is the job's input problem (``what`` names the field)."""
    try:
        ctx.store.download_file(key, path)
    except ObjectNotFound:
        raise InputError(f"{what}: the stored file is missing ({key})") from None
    return path


def _descend(root: Path) -> Path:
    """The directory holding the files: archives often wrap everything in one top-level folder."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        else:
            return root


def fetch_dataset(ctx: WorkerContext, dataset: Dataset, directory: Path, stem: str) -> Path:
    """Download ``dataset`` under ``directory``; archives are extracted safely and the directory returned."""
    local = download(
        ctx, dataset.storage_key, directory / _local_name(stem, dataset.filename), "dataset.path"
    )
    if archive_kind(local) is None:
        if dataset.format in ("mnist", "imagefolder"):
            raise InputError(f"dataset {dataset.id}: a {dataset.format} upload must be a .zip or tar archive")
        return local
    target = directory / f"{stem}-files"
    target.mkdir()
    extract_archive(local, target)
    local.unlink()
    # MNIST wants the directory holding the IDX files; ImageFolder and CIFAR find their own root.
    return _descend(target) if dataset.format == "mnist" else target


def fetch_model(ctx: WorkerContext, model: HFModel, directory: Path) -> Path:
    """Download an uploaded Hugging Face model, extract only the files its upload check said the engine
    reads, and check the extracted directory again (the same check the API ran on the archive)."""
    local = download(ctx, model.storage_key, directory / _local_name("model", model.filename), "model.path")
    if archive_kind(local) is None:
        raise InputError(f"model {model.id}: the stored upload is not a .zip or tar archive")
    root = tuple(p for p in str(model.summary.get("root") or "").split("/") if p)
    wanted = {(*root, name) for name in model.summary.get("files") or []}
    target = directory / "model-files"
    target.mkdir()
    try:
        extract_archive(local, target, select=wanted.__contains__)
        local.unlink()
        model_dir = target.joinpath(*root)
        check_model_dir(model_dir)
    except (DatasetError, FormatError) as exc:
        raise InputError(f"model.path: model {model.id} {exc}") from exc
    return model_dir


def _owned(model: type[Any], object_id: str, job: Job, ctx: WorkerContext, field: str) -> Any:
    with transaction(ctx.sessions) as session:
        row = session.get(model, object_id)
        if row is None or row.owner_id != job.owner_id:
            raise InputError(f"{field}: {object_id} is not one of the job owner's uploads")
        session.expunge(row)
        return row


def resolve_inputs(ctx: WorkerContext, job: Job, spec: JobSpec, scratch: Path) -> JobSpec:
    """Download the job's uploads into ``scratch/inputs`` and return the spec pointing at them."""
    data = dump_spec(spec)
    inputs = scratch / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    dataset = data["dataset"]
    if spec.dataset.source in PATH_SOURCES:
        dataset_id = job.dataset_id or spec.dataset.path
        if not dataset_id:
            raise InputError(f"dataset.path: source {spec.dataset.source!r} needs an uploaded dataset")
        row = _owned(Dataset, dataset_id, job, ctx, "dataset.path")
        log.info("downloading dataset %s (%s, %d bytes)", row.id, row.format, row.size)
        dataset["path"] = str(fetch_dataset(ctx, row, inputs, "dataset"))
        if spec.dataset.val_path:
            val = _owned(Dataset, spec.dataset.val_path, job, ctx, "dataset.val_path")
            log.info("downloading validation dataset %s (%d bytes)", val.id, val.size)
            dataset["val_path"] = str(fetch_dataset(ctx, val, inputs, "validation"))
    if spec.dataset.tokenizer:
        row = _owned(Dataset, spec.dataset.tokenizer, job, ctx, "dataset.tokenizer")
        directory = inputs / "tokenizer"
        directory.mkdir(exist_ok=True)
        dataset["tokenizer"] = str(
            download(ctx, row.storage_key, directory / "tokenizer.json", "dataset.tokenizer")
        )
    checkpoint_id = job.checkpoint_id or spec.model.checkpoint
    if checkpoint_id:
        row = _owned(Checkpoint, checkpoint_id, job, ctx, "model.checkpoint")
        log.info("downloading dense checkpoint %s (%d bytes)", row.id, row.size)
        # The loader sniffs the content (safetensors or a weights-only torch file), not the name; the
        # name is the upload's id, which the engine's messages then show ("checkpoint <id> does not fit").
        data["model"]["checkpoint"] = str(download(ctx, row.storage_key, inputs / row.id, "model.checkpoint"))
    if spec.model.source == "huggingface" and spec.model.path:
        model = _owned(HFModel, spec.model.path, job, ctx, "model.path")
        log.info("downloading model %s (%s, %d bytes)", model.id, model.summary.get("model_type"), model.size)
        data["model"]["path"] = str(fetch_model(ctx, model, inputs))
    return parse_spec(data, source=f"job {job.id}")


def fetch_resume_checkpoint(ctx: WorkerContext, job: Job, out_dir: Path) -> Resume | None:
    """Put the previous attempt's latest complete checkpoint where the engine resumes from.

    A missing or unreadable one is not fatal: the attempt starts over (and says so in its log).
    """
    if not job.checkpoint_key:
        return None
    path = out_dir / CHECKPOINT_NAME
    try:
        ctx.store.download_file(job.checkpoint_key, path)
        state = load_checkpoint(path)
    except ObjectNotFound:
        log.warning("checkpoint %s is missing from the store; starting from scratch", job.checkpoint_key)
        return None
    except CheckpointError as exc:
        log.warning("checkpoint %s is unreadable (%s); starting from scratch", job.checkpoint_key, exc)
        path.unlink(missing_ok=True)
        return None
    return Resume(job.checkpoint_key, state.epoch, state.step, state.global_step)
