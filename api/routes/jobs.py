"""Submit, list, inspect, cancel and retry sparsification jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from celery import Celery
from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from api.deps import (
    CallerDep,
    JobDep,
    JobId,
    QueueDep,
    SessionDep,
    SettingsDep,
    after_commit,
    commit_now,
)
from api.errors import CONFLICT, ERROR_RESPONSES, NOT_FOUND, ErrorEnvelope
from api.json_body import JsonBody
from api.schemas import JobDetail, JobPage, JobSummary, job_detail_columns, job_summary_columns
from jobs import repository
from jobs.admission import job_memory, over_limit, training_advice, upload_input_shape
from jobs.auth import KeyCheck, Principal
from jobs.errors import InvalidInput
from jobs.models import Checkpoint, Dataset, HFModel, Job
from jobs.queue import route_job, send_job
from jobs.settings import Settings
from jobs.sizing import input_problems
from jobs.spec import JobSpec, Method, SpecError, dump_spec, layer_pattern_problems, parse_spec
from jobs.states import JobState
from jobs.upload_fit import upload_fit_problems
from jobs.uploads import checkpoint_fit_problem

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

SPEC_EXAMPLES: dict[str, dict[str, Any]] = {
    "digits": {
        "summary": "LeNet-5, 2:4 with LBC on the bundled digits set",
        "value": {
            "name": "lenet5 2:4 on digits",
            "model": {"architecture": "lenet5", "args": {"width": 0.5}},
            "dataset": {"source": "digits", "val_fraction": 0.2},
            "sparsity": {"method": "lbc", "n": 2, "m": 4, "schedule": {"t_i": 0, "t_f": 5, "power": 3}},
            "train": {"epochs": 10, "batch_size": 128, "lr": 0.1},
            "benchmark": {"enabled": True, "batch_sizes": [1, 64]},
            "limits": {"time_limit_s": 3600, "priority": 5},
        },
    },
    "uploaded": {
        "summary": "ResNet-20 on an uploaded CIFAR-10 archive, from an uploaded dense checkpoint",
        "value": {
            "model": {"architecture": "resnet20", "checkpoint": "0b6f4f3a8f0e4c8e9a3d2b1c0f9e8d7c"},
            "dataset": {"source": "cifar10", "path": "5d1e2c3b4a5f6e7d8c9b0a1f2e3d4c5b", "split": "train"},
            "sparsity": {"method": "srste", "n": 2, "m": 4},
            "train": {"epochs": 30, "optimizer": "sgd", "lr": 0.05, "warmup_epochs": 1},
            "limits": {"queue": "gpu"},
        },
    },
}


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def check_references(
    session: Session, owner: Principal, spec: JobSpec
) -> tuple[list[dict[str, str]], str | None]:
    """Service-mode rules: data and checkpoints are ids of this owner's uploads, of the right kind.

    Another owner's upload gets the same message as a missing one, so ids cannot be probed.
    """
    problems: list[dict[str, str]] = []
    dataset_id: str | None = None
    source = spec.dataset.source
    summaries: dict[str, dict[str, Any]] = {}
    for ref in spec.upload_refs():
        row = repository.owned_upload(session, ref, owner.id)
        if row is None:
            problems.append(_problem(ref.field, f"{ref.kind} {ref.id} does not exist"))
            continue
        summaries[ref.field] = row.summary
        if isinstance(row, Checkpoint):
            if spec.model.architecture is not None:
                unfit = checkpoint_fit_problem(row.summary, spec.model.architecture, spec.model.args)
                if unfit:
                    problems.append(_problem(ref.field, f"checkpoint {ref.id} {unfit}"))
            continue
        if isinstance(row, HFModel):
            problems.extend(_model_problems(row, spec, ref.field))
            continue
        if not isinstance(row, Dataset):
            continue
        expected = ref.format or source
        if row.format != expected:
            problems.append(_problem(ref.field, f"dataset {ref.id} is a {row.format} upload, not {expected}"))
            continue
        if ref.format is not None:  # a tokenizer: no samples, splits or shapes to check
            continue
        problems.extend(_split_problems(row, spec))
        if ref.field == "dataset.path":
            dataset_id = row.id
            known = row.summary.get("num_classes")
            wanted = spec.model.args.get("num_classes")
            if isinstance(known, int) and isinstance(wanted, int) and wanted < known:
                problems.append(
                    _problem("model.args.num_classes", f"dataset {ref.id} has {known} classes, got {wanted}")
                )
            problems.extend(_shape_problems(spec, row))
    if not problems:  # the summaries are of the kinds the fields need
        problems += [_problem(field, message) for field, message in upload_fit_problems(spec, summaries)]
    return problems, dataset_id


def _model_problems(model: HFModel, spec: JobSpec, field: str) -> list[dict[str, str]]:
    """An uploaded Hugging Face model must be able to do the job's task (its family's class for it)."""
    model_type = model.summary.get("model_type")
    task = spec.task
    tasks = model.summary.get("tasks") or []
    if task in tasks:
        return []
    return [
        _problem(
            field,
            f"model {model.id} is a {model_type} model, which cannot do task {task!r}; it supports: "
            f"{', '.join(tasks) or 'nothing'}",
        )
    ]


def _shape_problems(spec: JobSpec, dataset: Dataset) -> list[dict[str, str]]:
    """Architecture arguments that contradict the sample shape the upload's validation recorded."""
    shape = upload_input_shape(dataset.summary)
    if spec.model.architecture is None:  # a Hugging Face model: the engine fits it to the data
        return []
    if shape is None or spec.known_input_shape() is not None:  # the spec checked a fixed shape itself
        return []
    return [
        _problem("model.architecture" if key == "architecture" else f"model.args.{key}", message)
        for key, message in input_problems(
            spec.model.catalog_architecture, spec.model.args, shape, f"dataset {dataset.id}"
        )
    ]


def memory_problems(
    session: Session, spec: JobSpec, settings: Settings, dataset_id: str | None
) -> list[dict[str, str]]:
    """The job's memory estimate against ``LBC_MAX_JOB_MEMORY_BYTES`` (uploads already checked)."""
    dataset = session.get(Dataset, dataset_id) if dataset_id else None
    checkpoint = session.get(Checkpoint, spec.model.checkpoint) if spec.model.checkpoint else None
    model = (
        session.get(HFModel, spec.model.path)
        if spec.model.source == "huggingface" and spec.model.path
        else None
    )
    estimate = job_memory(
        spec,
        dataset.summary if dataset else None,
        checkpoint.summary if checkpoint else None,
        model.summary if model else None,
    )
    problem = over_limit(estimate, settings.max_job_memory_bytes, "model", training_advice(spec))
    return [] if problem is None else [_problem(problem.path, problem.message)]


def _split_problems(dataset: Dataset, spec: JobSpec) -> list[dict[str, str]]:
    splits = dataset.summary.get("splits")
    if not isinstance(splits, dict) or not splits:
        return []
    available = ", ".join(sorted(splits))
    split = spec.dataset.split
    if split is None and dataset.format in ("cifar10", "cifar100"):
        split = "train"  # the engine's default CIFAR split
    if split is None:
        if len(splits) > 1:
            return [
                _problem(
                    "dataset.split", f"dataset {dataset.id} holds several splits ({available}); choose one"
                )
            ]
        return []
    if split not in splits:
        return [
            _problem("dataset.split", f"dataset {dataset.id} has no split {split!r} (available: {available})")
        ]
    return []


def job_summary(spec: JobSpec, queue: str, dataset_id: str | None) -> dict[str, Any]:
    return {
        "method": spec.sparsity.method,
        "pattern": spec.sparsity.pattern,
        # The listing's label; an uploaded model's family is on its upload (model_id).
        "architecture": spec.model.architecture or "huggingface",
        "dataset_id": dataset_id,
        "checkpoint_id": spec.model.checkpoint,
        "model_id": spec.model.path if spec.model.source == "huggingface" else None,
        "queue": queue,
        "priority": spec.limits.priority,
        "time_limit_s": spec.limits.time_limit_s,
        "name": spec.name,
    }


# Shared by every route that submits a job (sparsify and benchmark), so their contracts stay alike.
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobDetail, "description": "The job an earlier request with this Idempotency-Key created"},
    201: {"description": "Created and queued", "headers": {"Location": {"schema": {"type": "string"}}}},
    409: {"model": ErrorEnvelope, "description": "Idempotency-Key reused with a different spec"},
    413: {"model": ErrorEnvelope, "description": "The body exceeds LBC_MAX_JSON_BODY_BYTES"},
    429: {"model": ErrorEnvelope, "description": "Too many unfinished jobs for this owner"},
}


# One definition for both submit routes (jobs and benchmarks), so they document the header alike.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Retrying with the same key and spec returns the first job (200) instead of a new one",
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=JobDetail,
    summary="Submit a job",
    responses=SUBMIT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/JobSpec"},
                    "examples": SPEC_EXAMPLES,
                }
            },
        }
    },
)
async def submit_job(
    body: JsonBody,
    response: Response,
    caller: CallerDep,
    settings: SettingsDep,
    celery: QueueDep,
    idempotency_key: IdempotencyKey = None,
) -> JobDetail:
    """Validate the spec, check the uploads it names, queue the job and ring the workers after commit.

    Every problem is reported at once as `{field, message}` in the 422 envelope.
    """
    # The owner was authenticated before the body was read (JsonBody); the rest is one thread hop.
    return await caller.run(
        lambda session, owner: _submit(body, response, session, owner, settings, celery, idempotency_key)
    )


def _submit(
    body: Any,
    response: Response,
    session: Session,
    owner: Principal,
    settings: Settings,
    celery: Celery,
    idempotency_key: str | None,
) -> JobDetail:
    try:
        spec = parse_spec(body)
    except SpecError as exc:
        problems = [_problem(p.path or "body", p.message) for p in exc.problems]
        raise InvalidInput("invalid job spec", details=problems) from None
    problems, dataset_id = check_references(session, owner, spec)
    problems += [_problem(p.path, p.message) for p in layer_pattern_problems(spec)]
    queue, queue_problem = route_job(spec.limits.queue, spec.train.device, settings)
    if queue_problem:
        problems.append(_problem("limits.queue", queue_problem))
    if not problems:  # sized only once the uploads it reads are known to be this owner's
        problems += memory_problems(session, spec, settings, dataset_id)
    if problems or queue is None:
        raise InvalidInput("invalid job spec", details=problems)
    job, created = repository.create_job(
        session,
        owner=owner,
        spec=dump_spec(spec),
        summary=job_summary(spec, queue, dataset_id),
        idempotency_key=idempotency_key,
        max_attempts=settings.max_attempts,
        max_active_jobs=settings.max_concurrent_jobs_per_owner,
    )
    return queued_response(session, celery, response, job, created)


def queued_response(
    session: Session, celery: Celery, response: Response, job: Job, created: bool
) -> JobDetail:
    """Commit a submit at once (releasing the owner's quota lock), ring the workers, and answer 201 with
    ``Location`` for a new job or 200 for an idempotent repeat."""
    if created:
        job_id, queue, time_limit = job.id, job.queue, job.time_limit_s
        after_commit(session, lambda: send_job(celery, job_id, queue, time_limit_s=time_limit))
        response.headers["Location"] = f"/v1/jobs/{job.id}"
    else:
        response.status_code = 200
    commit_now(session)
    return JobDetail.of(job)


@router.get("", response_model=JobPage, summary="List jobs")
async def list_jobs(
    caller: CallerDep,
    status: Annotated[JobState | None, Query(description="Only jobs in this state")] = None,
    method: Annotated[Literal[Method, "benchmark"] | None, Query(description="Only this method")] = None,
    pattern: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{1,2}:[0-9]{1,2}$", description="Only this N:M pattern", examples=["2:4"]),
    ] = None,
    kind: Annotated[
        Literal["sparsify", "benchmark"] | None,
        Query(description="Only sparsification jobs, or only benchmark jobs (POST /v1/benchmarks)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> JobPage:
    """Newest first. Filters apply before the limit; pages are keyset-based, so no job is skipped or
    repeated while new ones arrive. Admin keys see every owner's jobs."""
    filters = repository.JobFilters(
        state=status.value if status else None, method=method, pattern=pattern, kind=kind
    )

    def page(connection: Connection, who: Principal | KeyCheck) -> tuple[Principal, JobPage]:
        try:
            principal, rows, next_cursor = repository.list_jobs(
                connection, who, filters, columns=job_summary_columns(), limit=limit, cursor=cursor
            )
        except InvalidInput as exc:  # only the cursor can be malformed here
            raise InvalidInput(exc.message, details=[_problem("cursor", exc.message)]) from None
        return principal, JobPage(items=JobSummary.page_of(rows), next_cursor=next_cursor)

    return await caller.read(page)


@router.get("/{job_id}", response_model=JobDetail, summary="Get a job", responses=NOT_FOUND)
async def get_job(job_id: JobId, caller: CallerDep) -> JobDetail:
    # The key's check and the lookup in one statement, in one thread hop on a bare connection
    # (Caller.read); the job's columns as a row, without an ORM object.
    def detail(connection: Connection, who: Principal | KeyCheck) -> tuple[Principal, JobDetail]:
        principal, row = repository.read_job(connection, job_id, who, job_detail_columns())
        return principal, JobDetail.of_row(row)

    return await caller.read(detail)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobDetail,
    summary="Cancel a job",
    responses={**NOT_FOUND, **CONFLICT},
)
def cancel_job(job: JobDep, session: SessionDep) -> JobDetail:
    """A queued job is cancelled at once; a running one is asked to stop (state `cancelling`) and
    checkpoints and stops within seconds. A finished job is a 409 naming its state."""
    repository.request_cancel(session, job)
    return JobDetail.of(job)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobDetail,
    summary="Retry a failed or cancelled job",
    responses={**NOT_FOUND, **CONFLICT},
)
def retry_job(job: JobDep, session: SessionDep, settings: SettingsDep, celery: QueueDep) -> JobDetail:
    """Back to `queued` with a fresh attempt budget, resuming from its latest checkpoint. A 409 names
    the uploads it reads that were deleted since (or the state that cannot be retried)."""
    repository.retry_job(session, job, settings.max_attempts, settings.max_concurrent_jobs_per_owner)
    job_id, queue, time_limit = job.id, job.queue, job.time_limit_s
    after_commit(session, lambda: send_job(celery, job_id, queue, time_limit_s=time_limit))
    commit_now(session)  # releases the owner's quota lock now, not several thread hops later
    return JobDetail.of(job)
