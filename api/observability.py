"""Request ids, request latency, and the Prometheus metrics the service exposes.

Both middlewares are plain ASGI (no response buffering), so streamed downloads and event streams pass
through untouched. Job gauges are computed from the database at scrape time, so every API process
reports the same truth and nothing is lost on restart.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs.db import transaction
from jobs.models import Job
from jobs.states import JobState

log = logging.getLogger("api.metrics")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
JOB_DURATION_BUCKETS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 3 * 3600.0, 12 * 3600.0, 86400.0)
REQUEST_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestIdMiddleware:
    """Takes a sane incoming ``X-Request-ID`` or makes one; exposes it as ``request.state.request_id``
    and echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers.append("X-Request-ID", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


class LatencyMiddleware:
    """Observes the time to the response headers per route template, method and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                self._observe(scope, status["code"], started)
                status["observed"] = 1
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if "observed" not in status:  # failed before any response started (the 500 comes later)
                self._observe(scope, 500, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        self.histogram.labels(scope.get("method", ""), template, str(status)).observe(
            time.perf_counter() - started
        )


class JobsCollector(Collector):
    """Jobs by state, queue depth and the job duration histogram, queried at every scrape."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def describe(self) -> list[Metric]:
        return []  # computed on collect; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lbc_metrics_database_up", "Whether the last scrape could read the database")
        try:
            with transaction(self.factory) as session:
                metrics = list(self._collect(session))
        except Exception as exc:
            log.warning("metrics scrape could not read the database: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _collect(self, session: Session) -> Iterator[Metric]:
        by_state = {
            state: count
            for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state))
        }
        jobs = GaugeMetricFamily("lbc_jobs", "Jobs by state", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], by_state.get(state.value, 0))
        yield jobs

        depth = GaugeMetricFamily(
            "lbc_queue_depth", "Jobs waiting in state queued, by queue", labels=["queue"]
        )
        waiting = session.execute(
            select(Job.queue, func.count()).where(Job.state == JobState.QUEUED.value).group_by(Job.queue)
        ).all()
        for queue, count in waiting:
            depth.add_metric([queue], count)
        yield depth

        yield self._durations(session)

    def _durations(self, session: Session) -> Metric:
        """Run time (started -> finished of the last attempt) of finished jobs, aggregated in SQL."""
        bind = session.get_bind()
        if bind.dialect.name == "sqlite":
            seconds: Any = (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
        else:
            seconds = func.extract("epoch", Job.finished_at - Job.started_at)
        seconds = cast(seconds, Float)
        columns = [func.count(), func.coalesce(func.sum(seconds), 0.0)]
        columns += [func.sum(case((seconds <= bound, 1), else_=0)) for bound in JOB_DURATION_BUCKETS]
        rows = session.execute(
            select(Job.state, *columns)
            .where(Job.finished_at.is_not(None), Job.started_at.is_not(None))
            .group_by(Job.state)
        ).all()
        histogram = HistogramMetricFamily(
            "lbc_job_duration_seconds", "Run time of finished jobs (last attempt)", labels=["state"]
        )
        for row in rows:
            state, count, total, *cumulative = row
            buckets = [
                (str(bound), int(n or 0)) for bound, n in zip(JOB_DURATION_BUCKETS, cumulative, strict=True)
            ]
            buckets.append(("+Inf", int(count)))
            histogram.add_metric([state], buckets, float(total or 0.0))
        return histogram


class ServiceMetrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_latency = Histogram(
            "lbc_http_request_duration_seconds",
            "Time to response headers, by route template",
            ["method", "route", "status"],
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(JobsCollector(factory))
