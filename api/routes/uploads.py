"""Uploaded datasets, dense checkpoints and Hugging Face models: streamed in, validated without torch, stored,
listed, deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CheckpointDep,
    CurrentOwner,
    DatasetDep,
    HFModelDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    after_commit,
    on_rollback,
)
from api.errors import CONFLICT, ERROR_RESPONSES, NOT_FOUND, ErrorEnvelope
from api.multipart import ReceivedUpload, receive_upload
from api.schemas import CheckpointList, CheckpointOut, DatasetList, DatasetOut, HFModelList, HFModelOut
from jobs import repository
from jobs.auth import Principal
from jobs.errors import Conflict, InvalidInput
from jobs.models import Checkpoint, Dataset, HFModel, Job, new_id
from jobs.quota import lock_owner, reserve_storage, storage_usage, stream_too_large
from jobs.settings import Settings
from jobs.spec import MAX_NAME_LENGTH
from jobs.states import TERMINAL
from jobs.storage import ObjectStore
from jobs.text import name_problem
from jobs.uploads import (
    CHECKPOINT_FORMATS,
    DATASET_FORMATS,
    Accepted,
    UploadInvalid,
    UploadLimits,
    safe_filename,
    validate_checkpoint,
    validate_dataset,
    validate_model,
)

datasets = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses={**ERROR_RESPONSES})
checkpoints = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"], responses={**ERROR_RESPONSES})
hf_models = APIRouter(prefix="/v1/hf-models", tags=["hf-models"], responses={**ERROR_RESPONSES})

Upload = TypeVar("Upload", Dataset, Checkpoint, HFModel)

_UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {
        "model": ErrorEnvelope,
        "description": "The file exceeds the upload limit (`payload_too_large`) or the owner's storage "
        "quota (`quota_exceeded`, with used, limit and remaining bytes in `details`)",
    },
    415: {"model": ErrorEnvelope, "description": "Not multipart/form-data"},
}


def _multipart_body(formats: tuple[str, ...], format_required: bool, example_file: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": f"The file, e.g. {example_file}"},
        **({"format": {"type": "string", "enum": list(formats)}} if formats else {}),
        "name": {
            "type": "string",
            "maxLength": MAX_NAME_LENGTH,
            "description": "A label (default: the file name); no control or bidirectional characters",
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "format"] if format_required else ["file"],
                        "properties": properties,
                    },
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            },
        }
    }


def upload_name(received: ReceivedUpload) -> str | None:
    """The upload's label: the ``name`` field, else the client's file name (cut to the name limit); ``None``
    for neither (the stored file name is used). Control and bidirectional characters are a 422 naming the
    field they came from, as in a job's name: labels are shown in terminals and in the dashboard."""
    given = received.fields.get("name", "").strip()
    if len(given) > MAX_NAME_LENGTH:
        raise _bad_name("name", f"must be at most {MAX_NAME_LENGTH} characters, got {len(given)}")
    field, name = ("name", given) if given else ("file", (received.filename or "").strip()[:MAX_NAME_LENGTH])
    problem = name_problem(name)
    if problem:
        raise _bad_name(field, problem if field == "name" else f"the file name {problem}")
    return name or None


def _bad_name(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"invalid upload: {field}: {message}", details=[{"field": field, "message": message}])


def _row_maker(
    model: type[Upload], owner: Principal, received: ReceivedUpload, accepted: Accepted, name: str | None
) -> Callable[[str, str, str], Upload]:
    """Datasets and checkpoints share their row shape; only the table differs."""

    def make_row(upload_id: str, filename: str, key: str) -> Upload:
        return model(
            id=upload_id,
            owner_id=owner.id,
            name=name or filename,
            format=accepted.format,
            filename=filename,
            size=received.size,
            sha256=received.sha256,
            storage_key=key,
            summary=accepted.summary,
        )

    return make_row


async def _store_upload(
    session: Session,
    store: ObjectStore,
    received: ReceivedUpload,
    accepted: Accepted,
    kind: str,
    make_row: Callable[[str, str, str], Upload],
    quota: int,
) -> Upload:
    """Put the validated file under ``<kind>/<id>/<safe name>`` and add its row (committed by the request).

    The quota is checked again under the owner's lock just before the insert, after the (possibly slow)
    copy into the store, so the lock is held only for the check, the insert and the commit.
    """
    upload_id = new_id()
    filename = safe_filename(received.filename, accepted.suffix, kind.rstrip("s"))
    key = f"{kind}/{upload_id}/{filename}"
    stored = await run_in_threadpool(store.put_file, key, received.path, "application/octet-stream")
    on_rollback(session, lambda: store.delete(key))
    if stored.sha256 != received.sha256 or stored.size != received.size:  # pragma: no cover - disk trouble
        raise RuntimeError(f"stored upload {key} does not match what was received")
    row = make_row(upload_id, filename, key)
    await run_in_threadpool(reserve_storage, session, row.owner_id, quota, received.size)
    session.add(row)
    await run_in_threadpool(session.flush)
    return row


async def _receive(
    request: Request, session: Session, owner: Principal, settings: Settings
) -> ReceivedUpload:
    """Stream the file in, cut off at the upload limit or at the space left in the owner's quota."""
    quota = settings.max_storage_bytes_per_owner
    usage = await run_in_threadpool(storage_usage, session, owner.id, quota) if quota else None
    # Commit the authentication touch first: no transaction (or SQLite write lock) is held open while
    # a large file crosses the network. The upload's row gets the request's next transaction.
    await run_in_threadpool(session.commit)
    directory = settings.home / "tmp"
    remaining = usage.remaining if usage is not None else None
    if usage is None or remaining is None or remaining >= settings.max_upload_bytes:
        return await receive_upload(request, directory, settings.max_upload_bytes)
    return await receive_upload(request, directory, remaining, too_large=lambda _: stream_too_large(usage))


def _limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_members=settings.max_upload_members, max_total_bytes=settings.max_upload_expanded_bytes
    )


def _referencing_jobs(session: Session, owner_id: str, kind: str, upload_id: str) -> list[str]:
    """Unfinished jobs of ``owner_id`` whose spec reads upload ``upload_id`` of ``kind`` (few: owners have a
    cap on unfinished jobs). Takes the owner's lock first, as a submit does before its insert: a job being
    submitted is either seen here or sees the upload gone (``repository.create_job``)."""
    lock_owner(session, owner_id)
    active = session.scalars(
        select(Job).where(Job.owner_id == owner_id, Job.state.notin_([s.value for s in TERMINAL]))
    )
    return [
        job.id
        for job in active
        if any(ref.kind == kind and ref.id == upload_id for ref in repository.job_upload_refs(job))
    ]


# -- datasets ---------------------------------------------------------------------------------------


@datasets.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    summary="Upload a dataset",
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_multipart_body(
        DATASET_FORMATS, True, "mnist.zip, data.npz, images.tar.gz, cifar-10-python.tar.gz"
    ),
)
async def upload_dataset(
    request: Request, session: SessionDep, owner: CurrentOwner, settings: SettingsDep, store: StoreDep
) -> DatasetOut:
    """Multipart fields `file`, `format` (mnist: zip/tar of IDX files; npz: arrays x and y; imagefolder:
    zip/tar with one directory per class; cifar10/cifar100: the python-version tar.gz) and optional
    `name`. The file is validated before it is accepted; use the returned id as `dataset.path`."""
    received = await _receive(request, session, owner, settings)
    try:
        name = upload_name(received)
        fmt = received.fields.get("format", "").strip()
        if not fmt:
            raise UploadInvalid(
                f"the form needs a 'format' field: one of {', '.join(DATASET_FORMATS)}", field="format"
            )
        accepted = await run_in_threadpool(validate_dataset, received.path, fmt, _limits(settings))

        make_row = _row_maker(Dataset, owner, received, accepted, name)
        row = await _store_upload(
            session, store, received, accepted, "datasets", make_row, settings.max_storage_bytes_per_owner
        )
    finally:
        received.path.unlink(missing_ok=True)
    return DatasetOut.of(row)


@datasets.get("", response_model=DatasetList, summary="List datasets")
def list_datasets(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many")] = 200,
) -> DatasetList:
    return DatasetList(items=[DatasetOut.of(d) for d in _list(session, Dataset, owner, limit)])


@datasets.get("/{dataset_id}", response_model=DatasetOut, summary="Get a dataset", responses=NOT_FOUND)
def get_dataset(dataset: DatasetDep) -> DatasetOut:
    return DatasetOut.of(dataset)


@datasets.delete(
    "/{dataset_id}", status_code=204, summary="Delete a dataset", responses={**NOT_FOUND, **CONFLICT}
)
def delete_dataset(dataset: DatasetDep, session: SessionDep, store: StoreDep) -> Response:
    """409 while an unfinished job uses it; finished jobs keep their spec but lose the link."""
    dataset_id = dataset.id
    users = _referencing_jobs(session, dataset.owner_id, "dataset", dataset_id)
    if users:
        raise Conflict(
            f"dataset {dataset_id} is used by {len(users)} unfinished job(s)", details={"jobs": users}
        )
    session.execute(
        update(Job)
        .where(Job.dataset_id == dataset_id)
        .values(dataset_id=None)
        .execution_options(synchronize_session=False)
    )
    _delete(session, store, dataset)
    return Response(status_code=204)


# -- checkpoints ------------------------------------------------------------------------------------


@checkpoints.post(
    "",
    status_code=201,
    response_model=CheckpointOut,
    summary="Upload a dense checkpoint",
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_multipart_body(CHECKPOINT_FORMATS, False, "dense.safetensors or model.pt"),
)
async def upload_checkpoint(
    request: Request, session: SessionDep, owner: CurrentOwner, settings: SettingsDep, store: StoreDep
) -> CheckpointOut:
    """Multipart fields `file`, optional `format` (safetensors or torch; default: from the content) and
    optional `name`. Torch files must be the zip format of `torch.save` and may hold only tensors and
    containers: the pickle is scanned, never loaded. Use the returned id as `model.checkpoint`."""
    received = await _receive(request, session, owner, settings)
    try:
        name = upload_name(received)
        fmt = received.fields.get("format", "").strip() or None
        accepted = await run_in_threadpool(validate_checkpoint, received.path, fmt, _limits(settings))

        make_row = _row_maker(Checkpoint, owner, received, accepted, name)
        row = await _store_upload(
            session, store, received, accepted, "checkpoints", make_row, settings.max_storage_bytes_per_owner
        )
    finally:
        received.path.unlink(missing_ok=True)
    return CheckpointOut.of(row)


@checkpoints.get("", response_model=CheckpointList, summary="List checkpoints")
def list_checkpoints(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many")] = 200,
) -> CheckpointList:
    return CheckpointList(items=[CheckpointOut.of(c) for c in _list(session, Checkpoint, owner, limit)])


@checkpoints.get(
    "/{checkpoint_id}", response_model=CheckpointOut, summary="Get a checkpoint", responses=NOT_FOUND
)
def get_checkpoint(checkpoint: CheckpointDep) -> CheckpointOut:
    return CheckpointOut.of(checkpoint)


@checkpoints.delete(
    "/{checkpoint_id}", status_code=204, summary="Delete a checkpoint", responses={**NOT_FOUND, **CONFLICT}
)
def delete_checkpoint(checkpoint: CheckpointDep, session: SessionDep, store: StoreDep) -> Response:
    checkpoint_id = checkpoint.id
    users = _referencing_jobs(session, checkpoint.owner_id, "checkpoint", checkpoint_id)
    if users:
        raise Conflict(
            f"checkpoint {checkpoint_id} is used by {len(users)} unfinished job(s)", details={"jobs": users}
        )
    session.execute(
        update(Job)
        .where(Job.checkpoint_id == checkpoint_id)
        .values(checkpoint_id=None)
        .execution_options(synchronize_session=False)
    )
    _delete(session, store, checkpoint)
    return Response(status_code=204)


# -- Hugging Face models ----------------------------------------------------------------------------


@hf_models.post(
    "",
    status_code=201,
    response_model=HFModelOut,
    summary="Upload a Hugging Face model directory",
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_multipart_body((), False, "my-llama.zip or my-bert.tar.gz"),
)
async def upload_hf_model(
    request: Request, session: SessionDep, owner: CurrentOwner, settings: SettingsDep, store: StoreDep
) -> HFModelOut:
    """Multipart fields `file` (a .zip or .tar(.gz) of the model directory: config.json, model.safetensors
    or shards with model.safetensors.index.json, optional tokenizer and processor files) and optional `name`.
    Nothing in it is run or unpickled: pickles, .pt2 programs and code are refused, config.json is data, and
    the weights' headers are checked. Use the returned id as `model.path` with `model.source: huggingface`."""
    received = await _receive(request, session, owner, settings)
    try:
        name = upload_name(received)
        accepted = await run_in_threadpool(
            validate_model, received.path, _limits(settings), settings.max_model_bytes
        )
        make_row = _row_maker(HFModel, owner, received, accepted, name)
        row = await _store_upload(
            session, store, received, accepted, "hf-models", make_row, settings.max_storage_bytes_per_owner
        )
    finally:
        received.path.unlink(missing_ok=True)
    return HFModelOut.of(row)


@hf_models.get("", response_model=HFModelList, summary="List uploaded models")
def list_hf_models(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many")] = 200,
) -> HFModelList:
    return HFModelList(items=[HFModelOut.of(m) for m in _list(session, HFModel, owner, limit)])


@hf_models.get("/{model_id}", response_model=HFModelOut, summary="Get an uploaded model", responses=NOT_FOUND)
def get_hf_model(model: HFModelDep) -> HFModelOut:
    return HFModelOut.of(model)


@hf_models.delete(
    "/{model_id}", status_code=204, summary="Delete an uploaded model", responses={**NOT_FOUND, **CONFLICT}
)
def delete_hf_model(model: HFModelDep, session: SessionDep, store: StoreDep) -> Response:
    """409 while an unfinished job uses it; finished jobs keep their spec."""
    model_id = model.id
    users = _referencing_jobs(session, model.owner_id, "model", model_id)
    if users:
        raise Conflict(f"model {model_id} is used by {len(users)} unfinished job(s)", details={"jobs": users})
    _delete(session, store, model)
    return Response(status_code=204)


# -- shared -----------------------------------------------------------------------------------------


def _list(session: Session, model: type[Upload], owner: Principal, limit: int) -> list[Upload]:
    query = select(model)
    if not owner.is_admin:
        query = query.where(model.owner_id == owner.id)
    return list(session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)))


def _delete(session: Session, store: ObjectStore, row: Dataset | Checkpoint | HFModel) -> None:
    key = row.storage_key
    session.delete(row)
    # The file goes only once the row is gone for good; a failed delete leaves an orphan, never a row
    # pointing at nothing.
    after_commit(session, lambda: store.delete(key))
