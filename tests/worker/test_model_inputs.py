"""A job naming an uploaded Hugging Face model gets a local directory holding only the files the engine
reads, checked again after extraction; a stored archive that no longer passes the checks fails the job's
inputs, naming the problem."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from jobs import auth
from jobs.db import transaction
from jobs.models import HFModel, Job
from jobs.spec import parse_spec
from jobs.uploads import validate_model
from lbc_formats.hf_directory import check_model_dir
from tests.hf_models import hand_made_model, tokenizer_json, zip_of
from tests.worker.test_execution import ctx, settings
from worker.context import WorkerContext
from worker.inputs import InputError, resolve_inputs

__all__ = ["ctx", "settings"]  # fixtures shared with test_execution

SPEC = {"model": {"source": "huggingface", "path": "PLACEHOLDER"}, "dataset": {"source": "digits"}}


def _stored_model(ctx: WorkerContext, tmp_path: Path, checked: bytes, stored: bytes) -> tuple[Job, str]:
    """An upload row whose summary comes from checking ``checked``, with ``stored`` in the object store."""
    archive = tmp_path / "upload.zip"
    archive.write_bytes(checked)
    summary = validate_model(archive).summary
    archive.write_bytes(stored)
    with transaction(ctx.sessions) as session:
        owner = auth.get_or_create_owner(session, "alice")
        put = ctx.store.put_file("hf-models/m/model.zip", archive)
        row = HFModel(
            owner_id=owner.id,
            name="m",
            format="huggingface",
            filename="model.zip",
            size=put.size,
            sha256=put.sha256,
            storage_key=put.key,
            summary=summary,
        )
        session.add(row)
        session.flush()
        job = Job(owner_id=owner.id, spec={}, method="lbc", pattern="2:4", architecture="huggingface")
        return job, row.id


def test_only_the_files_the_engine_reads_are_extracted_and_checked_again(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    files = hand_made_model(
        **{
            "tokenizer.json": tokenizer_json().encode(),
            "README.md": b"# card",
            "onnx/model.onnx": b"\x08\x01",
        }
    )
    data = zip_of(files, prefix="my-model/")
    job, model_id = _stored_model(ctx, tmp_path, data, data)
    spec = parse_spec({**SPEC, "model": {"source": "huggingface", "path": model_id}})

    resolved = resolve_inputs(ctx, job, spec, tmp_path / "scratch")

    assert resolved.model.path is not None
    model_dir = Path(resolved.model.path)
    assert model_dir == tmp_path / "scratch" / "inputs" / "model-files" / "my-model"
    assert sorted(p.name for p in model_dir.rglob("*") if p.is_file()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert check_model_dir(model_dir).files == ("config.json", "model.safetensors", "tokenizer.json")
    assert not (tmp_path / "scratch" / "inputs" / "model.zip").exists()


def test_a_stored_archive_that_fails_the_check_is_an_input_error(ctx: WorkerContext, tmp_path: Path) -> None:
    good = zip_of(hand_made_model())
    swapped = zip_of(hand_made_model(**{"model.safetensors": pickle.dumps({"w": 1}, protocol=4)}))
    job, model_id = _stored_model(ctx, tmp_path, good, swapped)
    spec = parse_spec({**SPEC, "model": {"source": "huggingface", "path": model_id}})

    with pytest.raises(
        InputError,
        match=f"model.path: model {model_id} model.safetensors is refused: its content is a pickle",
    ):
        resolve_inputs(ctx, job, spec, tmp_path / "scratch")
