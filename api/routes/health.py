"""Liveness, readiness and Prometheus metrics: no authentication, for orchestrators and scrapers."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from api.schemas import ComponentStatus, Health, Readiness
from jobs.storage import ObjectStore

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    """200 whenever the process serves requests; dependencies are /readyz's business."""
    return Health(status="ok")


def _check_database(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check_broker(celery: Celery) -> None:
    with celery.connection_for_write(connect_timeout=CHECK_TIMEOUT_S) as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=CHECK_TIMEOUT_S
        )


async def _probe(check: Callable[[], None]) -> ComponentStatus:
    started = time.perf_counter()
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S + 1):
            # abandon_on_cancel: a hung driver call must not hang the probe with it.
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        return ComponentStatus(ok=False, detail="timed out")
    except Exception as exc:
        # The exception class only: messages can carry host names and credentials from URLs.
        return ComponentStatus(ok=False, detail=exc.__class__.__name__)
    return ComponentStatus(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency is unavailable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers `SELECT 1`, the broker accepts a connection and the object store
    is reachable; 503 with the failing component otherwise."""
    state = request.app.state
    store: ObjectStore = state.store
    checks = {
        "database": lambda: _check_database(state.engine),
        "broker": lambda: _check_broker(state.celery),
        "store": store.check,
    }
    results: dict[str, ComponentStatus] = {}

    async def run(name: str, check: Callable[[], None]) -> None:
        results[name] = await _probe(check)

    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    ready = all(result.ok for result in results.values())
    body = Readiness(status="ready" if ready else "unavailable", components=dict(sorted(results.items())))
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Jobs by state, queue depth, job durations, request latency (Prometheus text format)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
