"""The FastAPI application factory: ``uvicorn --factory api.app:create_served_app`` (what ``lbc api``
runs), or :func:`create_app` for an app without process-wide tuning (tests)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from api.deps import database_slots, database_threads, refuse_nul_in_url
from api.errors import register_error_handlers
from api.observability import LatencyMiddleware, RequestIdMiddleware, ServiceMetrics
from api.routes import artifacts, benchmarks, dashboard, docs, health, jobs, masks, models, streams, uploads
from jobs.benchmarks import BenchmarkJobSpec
from jobs.db import make_engine, make_session_factory
from jobs.queue import make_celery
from jobs.settings import Settings, get_settings
from jobs.spec import JobSpec
from jobs.storage import make_store

DESCRIPTION = """
Submit N:M sparsification jobs (LBC, SR-STE, ASP or a dense baseline), follow them live, and download
the sparse checkpoint, its masks, the compressed form and the speedup report.

Every request under `/v1` needs `Authorization: Bearer <api key>`. Every error has one shape:
`{"error": {"code", "message", "details", "request_id"}}`; a 422 lists each problem as `{field, message}`.
"""

TAGS = [
    {"name": "jobs", "description": "Submit, list, inspect, cancel and retry jobs."},
    {"name": "job progress", "description": "Live events (SSE), logs and metrics of a job."},
    {"name": "artifacts", "description": "Checkpoints, masks and reports a job produced."},
    {"name": "datasets", "description": "Uploaded training data, referenced by id from a job spec."},
    {"name": "checkpoints", "description": "Uploaded dense starting weights, referenced by id."},
    {
        "name": "hf-models",
        "description": "Uploaded Hugging Face model directories (config.json + safetensors), referenced by id "
        "as model.path with model.source huggingface.",
    },
    {"name": "models", "description": "Built-in architectures and their sparsifiable layers."},
    {"name": "operations", "description": "Health, readiness and Prometheus metrics (no auth)."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, connect_timeout_s=settings.database_connect_timeout_seconds)
    session_factory = make_session_factory(engine)
    db_threads = database_threads(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        db_threads.close()
        engine.dispose()

    app = FastAPI(
        title="LBC sparsification service",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_in_url)],
        docs_url=None,  # api.routes.docs serves both pages without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.database_slots = database_slots(engine)
    app.state.db_threads = db_threads
    app.state.celery = make_celery(settings)
    app.state.store = make_store(settings)
    app.state.metrics = ServiceMetrics(session_factory)
    app.state.sse_poll_seconds = 0.5
    app.state.sse_heartbeat_seconds = 15.0

    register_error_handlers(app)
    app.add_middleware(LatencyMiddleware, histogram=app.state.metrics.request_latency)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so every response carries the id

    for router in (
        jobs.router,
        streams.router,
        artifacts.router,
        benchmarks.router,
        masks.router,
        uploads.datasets,
        uploads.checkpoints,
        uploads.hf_models,
        models.router,
        health.router,
    ):
        app.include_router(router)
    dashboard.register(app)
    docs.register(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


def create_served_app(settings: Settings | None = None) -> FastAPI:
    """The app as ``lbc api`` serves it (each uvicorn worker process builds its own): :func:`create_app`,
    then the heap it built moved out of the garbage collector's reach (:func:`freeze_startup_heap`)."""
    app = create_app(settings)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Move every object alive now (the imported modules, the app, its routes, schemas and compiled
    statements) into the collector's permanent generation.

    Each request allocates enough container objects to trigger the cyclic collector often, and its
    oldest generation walked this whole start-up heap every time (a tenth of a listing's CPU under
    load, and pauses in the latency's tail). Those objects live as long as the process, so the
    collector has nothing to find among them; freed by reference counting they still are. Not in
    :func:`create_app`: a test process that builds many apps must not keep their cycles forever.
    """
    gc.collect()
    gc.freeze()


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus the JobSpec and BenchmarkJobSpec schemas, which the submit routes validate
    themselves (after authentication, from a size-capped body) and reference by ``$ref``."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in (("JobSpec", JobSpec), ("BenchmarkJobSpec", BenchmarkJobSpec)):
            spec_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(spec_schema.pop("$defs", {}))
            components[name] = spec_schema
        app.openapi_schema = schema
        return schema

    return build
