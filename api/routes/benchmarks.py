"""Speedup reports: submit a benchmark job, and read any job's report.

``POST /v1/benchmarks`` queues a job of kind ``benchmark`` that measures an already sparse model (a succeeded
job's export, or an uploaded N:M checkpoint) without training; it is listed, followed, cancelled and retried
like every job under ``/v1/jobs``. ``GET /v1/jobs/{job_id}/report`` returns the ``speedup_report.json``
artifact of a sparsification or benchmark job (schema ``lbc.speedup-report/3``, docs/speedup-report.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentOwner, JobDep, QueueDep, SessionDep, SettingsDep, StoreDep
from api.errors import ERROR_RESPONSES, NOT_FOUND
from api.json_body import JsonBody
from api.routes.jobs import SUBMIT_RESPONSES, IdempotencyKey, queued_response
from api.schemas import JobDetail
from jobs import repository
from jobs.admission import BENCHMARK_ADVICE, benchmark_memory, over_limit, trained_model_memory
from jobs.auth import Principal
from jobs.benchmarks import (
    BENCHMARK_ERROR,
    BENCHMARK_KIND,
    BENCHMARK_METHOD,
    MANIFEST_ARTIFACT,
    MODEL_ARTIFACTS,
    REPORT_JSON,
    REPORT_SCHEMA_VERSION,
    SPARSIFY_KIND,
    BenchmarkJobSpec,
    dump_benchmark_spec,
    report_schema,
    requested_device,
)
from jobs.errors import InvalidInput, NotFound
from jobs.models import Artifact, Checkpoint, Job
from jobs.queue import route_job
from jobs.settings import Settings
from jobs.states import JobState
from jobs.storage import ObjectNotFound

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)

BENCHMARK_EXAMPLES: dict[str, dict[str, Any]] = {
    "job": {
        "summary": "The exported model of a succeeded job, on a GPU worker",
        "value": {
            "source": {"job_id": "3f2b9c1d0e8a4f6b9c2d1e0f8a7b6c5d"},
            "benchmark": {"device": "cuda", "batch_sizes": [1, 64, 256], "dtypes": ["float16", "bfloat16"]},
        },
    },
    "checkpoint": {
        "summary": "An uploaded 2:4 checkpoint of LeNet-5, on a CPU worker (size and FLOP savings only)",
        "value": {
            "name": "lenet5 2:4 upload",
            "source": {
                "checkpoint_id": "0b6f4f3a8f0e4c8e9a3d2b1c0f9e8d7c",
                "architecture": "lenet5",
                "args": {"num_classes": 10},
                "pattern": {"n": 2, "m": 4},
                "input_shape": [1, 28, 28],
            },
            "benchmark": {"device": "cpu", "batch_sizes": [1, 64]},
            "limits": {"time_limit_s": 1800},
        },
    },
}


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def check_source(
    session: Session, owner: Principal, spec: BenchmarkJobSpec
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``(pattern/architecture/checkpoint_id of the job row, problems)``.

    Another owner's job or checkpoint gets the same message as a missing one, so ids cannot be probed.
    """
    source = spec.source
    if source.job_id is not None:
        field, ref = "source.job_id", source.job_id
        job = session.get(Job, ref)
        if job is None or job.owner_id != owner.id:
            return {}, [_problem(field, f"job {ref} does not exist")]
        if job.kind != SPARSIFY_KIND:
            return {}, [_problem(field, f"job {ref} is a {job.kind} job; benchmark the job it measured")]
        if job.state != JobState.SUCCEEDED.value:
            message = f"job {ref} is {job.state}; only a succeeded job's exported model can be benchmarked"
            return {}, [_problem(field, message)]
        if job.method == "dense":
            message = f"job {ref} trained a dense baseline (method dense): it has no N:M layers to benchmark"
            return {}, [_problem(field, message)]
        names = set(session.scalars(select(Artifact.name).where(Artifact.job_id == ref)))
        if MANIFEST_ARTIFACT not in names or not names & set(MODEL_ARTIFACTS):
            return {}, [_problem(field, f"job {ref} has no exported model")]
        return {"pattern": job.pattern, "architecture": job.architecture, "checkpoint_id": None}, []
    problems = [
        _problem(ref.field, f"{ref.kind} {ref.id} does not exist")
        for ref in spec.upload_refs()
        if repository.owned_upload(session, ref, owner.id) is None
    ]
    if problems:
        return {}, problems
    summary = {
        "pattern": source.pattern_text,
        "architecture": source.architecture,
        "checkpoint_id": source.checkpoint_id,
    }
    return summary, []


def memory_problems(session: Session, spec: BenchmarkJobSpec, settings: Settings) -> list[dict[str, str]]:
    """The benchmark's memory estimate at its largest batch size against ``LBC_MAX_JOB_MEMORY_BYTES``."""
    source = spec.source
    if source.job_id is not None:
        estimate = trained_model_memory(session, session.get(Job, source.job_id), spec.benchmark.batch_sizes)
    else:
        assert source.architecture is not None  # the spec requires it with checkpoint_id
        checkpoint = session.get(Checkpoint, source.checkpoint_id)
        estimate = benchmark_memory(
            source.architecture,
            source.args or {},
            source.input_shape,
            spec.benchmark.batch_sizes,
            checkpoint.summary if checkpoint else None,
        )
    if estimate is None:
        return []
    problem = over_limit(estimate, settings.max_job_memory_bytes, "benchmark.batch_sizes", BENCHMARK_ADVICE)
    return [] if problem is None else [_problem(problem.path, problem.message)]


def benchmark_summary(spec: BenchmarkJobSpec, queue: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": BENCHMARK_KIND,
        "method": BENCHMARK_METHOD,
        "dataset_id": None,
        "queue": queue,
        "priority": spec.limits.priority,
        "time_limit_s": spec.limits.time_limit_s,
        "name": spec.name,
        **source,
    }


@router.post(
    "/v1/benchmarks",
    status_code=201,
    response_model=JobDetail,
    summary="Submit a benchmark job",
    responses=SUBMIT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/BenchmarkJobSpec"},
                    "examples": BENCHMARK_EXAMPLES,
                }
            },
        }
    },
)
def submit_benchmark(
    body: JsonBody,
    response: Response,
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    celery: QueueDep,
    idempotency_key: IdempotencyKey = None,
) -> JobDetail:
    """Measure an already sparse model without training: a job of kind `benchmark`, method `benchmark`.

    `source` is a succeeded sparsification job of yours (`job_id`: its exported model, data shape and
    validation accuracy) or an uploaded checkpoint (`checkpoint_id` with `architecture`, `args`, `pattern`,
    `input_shape`; the worker fails the job if no layer is N:M sparse). The job goes to `limits.queue`;
    by default to the CPU queue when `benchmark.device` is `cpu`, else to the service's default (GPU)
    queue. It publishes `speedup_report.json`, `speedup_report.html` and `speedup_chart.svg`, and the
    report's summary as `result.speedup`; `GET /v1/jobs/{id}/report` returns the report.
    """
    try:
        spec = BenchmarkJobSpec.model_validate(body)
    except ValidationError as exc:  # rendered like FastAPI's own body errors: {field, message} per problem
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
    source, problems = check_source(session, owner, spec)
    queue, queue_problem = route_job(spec.limits.queue, requested_device(spec), settings)
    if queue_problem:
        problems.append(_problem("limits.queue", queue_problem))
    if not problems:
        problems = memory_problems(session, spec, settings)
    if problems or queue is None:
        raise InvalidInput("invalid benchmark spec", details=problems)
    job, created = repository.create_job(
        session,
        owner=owner,
        spec=dump_benchmark_spec(spec),
        summary=benchmark_summary(spec, queue, source),
        idempotency_key=idempotency_key,
        max_attempts=settings.max_attempts,
        max_active_jobs=settings.max_concurrent_jobs_per_owner,
    )
    return queued_response(session, celery, response, job, created)


def _openapi_report_schema() -> dict[str, Any]:
    schema = {k: v for k, v in report_schema().items() if k != "$schema"}
    schema["description"] = (
        f"Schema {REPORT_SCHEMA_VERSION}; every field is explained in docs/speedup-report.md."
    )
    return schema


def no_report_reason(job: Job) -> str:
    """Why ``job`` has no speedup report, in words."""
    state = job.state
    if state in (JobState.QUEUED.value, JobState.RUNNING.value, JobState.CANCELLING.value):
        phase = f", phase {job.phase}" if job.phase else ""
        return f"not yet: the job is {state}{phase}; the report is published when it succeeds"
    if state == JobState.FAILED.value:
        return f"the job failed ({job.error_type or 'error'})"
    if state == JobState.CANCELLED.value:
        return "the job was cancelled"
    benchmark = job.spec.get("benchmark") if isinstance(job.spec, dict) else None
    if job.kind == SPARSIFY_KIND and isinstance(benchmark, dict) and benchmark.get("enabled") is False:
        return "its spec has benchmark.enabled false"
    speedup = (job.result or {}).get("speedup")
    if isinstance(speedup, dict) and speedup.get("error_type") == BENCHMARK_ERROR:
        return f"benchmarking failed: {speedup.get('message')}"
    return "none was produced"


@router.get(
    "/v1/jobs/{job_id}/report",
    summary="Get a job's speedup report",
    tags=["artifacts"],
    responses={
        200: {
            "description": "The speedup_report.json artifact (ETag: its quoted sha256)",
            "content": {"application/json": {"schema": _openapi_report_schema()}},
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **NOT_FOUND,
    },
)
def get_report(
    job: JobDep,
    session: SessionDep,
    store: StoreDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The report of a sparsification job (built after export when `benchmark.enabled`) or of a benchmark
    job. 404 while the job runs, when it failed or was cancelled, or when it succeeded without a report
    (benchmark disabled, or benchmarking failed: see `result.speedup`); the message says which."""
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job.id, Artifact.name == REPORT_JSON))
    if artifact is None:
        reason = no_report_reason(job)
        raise NotFound(
            f"job {job.id} has no speedup report: {reason}",
            details={"job_id": job.id, "state": job.state, "reason": reason},
        )
    etag = f'"{artifact.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and etag in [
        tag.strip().removeprefix("W/") for tag in if_none_match.split(",")
    ]:
        return Response(status_code=304, headers=headers)
    try:
        content = store.read_bytes(artifact.storage_key)
    except ObjectNotFound:
        raise NotFound(f"the stored content of job {job.id}'s speedup report is missing") from None
    return Response(content=content, media_type="application/json", headers=headers)
