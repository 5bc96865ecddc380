"""Load test of the HTTP API with real processes: submit, status, list, live event streams (SSE) and
artifact downloads under N concurrent clients, and the queued -> running latency of a job with a worker
(prints tables, asserts nothing).

Modes (every state lives in a temporary directory, database or Redis DB that is removed at the end):

  --mode embedded      SQLite database and SQLite broker under a temporary LBC_HOME (what `lbc serve`
                       uses); starts `lbc api` and, with --with-worker, `lbc worker`.
  --mode distributed   PostgreSQL (a fresh database created from --pg-admin-url, dropped at the end)
                       and Redis (--redis-url, a DB number that must be empty; flushed at the end).

Both run `lbc migrate` and `lbc keys create` with the same environment, then start `lbc api` on a
free port (`--workers N` with --api-workers N; each process in its own process group, logs under the
temporary home).

Preparation: when the mix downloads artifacts, a worker runs --prepare-jobs tiny jobs to success
before the load starts (and is stopped again unless --with-worker), so downloads read finished jobs'
artifacts (--artifacts names) whose size and sha256 the API listed.

Load phase (default): --clients virtual users, each with its own httpx.AsyncClient connection, loop
for --duration seconds (after --warmup seconds that are not counted). Each step is drawn with the
--mix weights (submit,status,list,sse,download): the sse weight is the share of clients that are
subscribers, the others weigh the steps of the remaining clients:
  submit    POST /v1/jobs, a tiny digits + mlp + 1 epoch spec (a client's first step is a submit)
  status    GET /v1/jobs/{id} of a job this client submitted
  list      GET /v1/jobs?limit=20
  sse       a subscriber submits a job, then opens GET /v1/jobs/{id}/events, holds it --sse-hold s
            (at most until the end of the run, at least until its first event), closes it and opens it
            again (without Last-Event-ID: a page load);
            the latency is the time to the response headers, and the events received are counted
            (a stream without any event, or one that ends before its job finished, is an error)
  download  GET /v1/jobs/{id}/artifacts/{name} of a prepared artifact, read whole; the latency is the
            time to the last byte, and a size or sha256 that differs from the listing is an error
Open loop (--rate R): instead of clients that each wait for an answer before the next step, requests
(submit, status, list and download by the mix) arrive at a mean rate of R per second (a Poisson
process) whatever the server does, over the keep-alive connections of the non-subscriber clients; a
request's latency counts from its arrival, so waiting for a free connection is part of it. Subscribers
still hold streams as in the closed loop.
--think adds a random pause (exponential, mean --think seconds) between a client's steps; 0 (default)
is a closed loop that saturates the server. Without a worker every submitted job stays queued, so the
owner quota is lifted (LBC_MAX_CONCURRENT_JOBS_PER_OWNER). Timeouts (--timeout) count as errors.

Latency probe (--latency-probe N, implies --with-worker, skips the load phase): submits N tiny jobs
one at a time, waits for each to finish (bounded), and reports started_at - queued_at of each job as
recorded by the API and the worker.

Client-side latencies include the load generator's own scheduling delay: on a small machine it shares
the cores with the server, so the table also prints the server-side histogram (the API's own
lbc_http_request_duration_seconds, time to response headers) and the CPU each side used. With
--api-workers above 1 each API process keeps its own histogram, so that table is left out.

Usage:
  python benchmarks/load.py --mode distributed --clients 50 --duration 20
  python benchmarks/load.py --mode embedded --clients 200 --duration 20
  python benchmarks/load.py --mode distributed --clients 200 --api-workers 2
  python benchmarks/load.py --mode distributed --clients 50 --mix 1,3,1,0,0   # the older mix
  python benchmarks/load.py --mode distributed --latency-probe 10
  python benchmarks/load.py --mode distributed --rate 200 --clients 50    # open loop, 200 req/s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
OPS = ("submit", "status", "list", "sse", "download")
EXPECTED_STATUS = {"submit": 201, "status": 200, "list": 200, "sse": 200, "download": 200}
ROUTES = {  # the API's route templates, as its latency histogram labels them
    "submit": ("POST", "/v1/jobs"),
    "status": ("GET", "/v1/jobs/{job_id}"),
    "list": ("GET", "/v1/jobs"),
    "sse": ("GET", "/v1/jobs/{job_id}/events"),
    "download": ("GET", "/v1/jobs/{job_id}/artifacts/{name:path}"),
}
TINY_SPEC: dict[str, Any] = {  # about a second of training on 2 cores once a worker picks it up
    "name": "load-benchmark",
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits"},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 1},
}
TERMINAL = {"succeeded", "failed", "cancelled"}
SERVER_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000)


# -- processes ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


@dataclass
class Stack:
    """The environment of one run: a temporary home, maybe a database and a Redis DB, and the children."""

    mode: str
    pg_admin_url: str
    redis_url: str
    max_jobs: int
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lbc-load-")))
    env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    database: str | None = None
    redis_claimed: bool = False
    base_url: str = ""

    # -- setup ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LBC_")}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "LBC_HOME": str(self.home / "home"),
                "LBC_STORAGE_PATH": str(self.home / "objects"),
                "LBC_MAX_CONCURRENT_JOBS_PER_OWNER": str(self.max_jobs),
            }
        )
        if self.mode == "distributed":
            self._claim_redis()
            self.database = f"lbc_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            self._admin_sql(f'CREATE DATABASE "{self.database}"')
            env["LBC_DATABASE_URL"] = self._database_url(self.database)
            env["LBC_BROKER_URL"] = self.redis_url
        self.env = env
        self.run_lbc("migrate")

    def _claim_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
        try:
            size = client.dbsize()
        finally:
            client.close()
        if size:
            raise SystemExit(
                f"load.py: Redis {self.redis_url} holds {size} keys; pick an empty DB number "
                "(--redis-url redis://host:port/N): it is flushed at the end"
            )
        self.redis_claimed = True

    def _database_url(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.pg_admin_url).set(database=name).render_as_string(hide_password=False)

    def _admin_sql(self, statement: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.pg_admin_url)
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
            connect_timeout=5,
        ) as connection:
            connection.execute(statement.encode())

    def run_lbc(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"load.py: lbc {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self, name: str, *args: str) -> Child:
        log_path = self.home / f"{len(self.children):02d}-{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: Ctrl-C reaches only us, we stop the group
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def start_api(self, workers: int = 1) -> Child:
        port = free_port()
        api = self.start("api", "api", "--port", str(port), "--workers", str(workers))
        self.base_url = f"http://127.0.0.1:{port}"
        self._wait(lambda: httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200, api, 60)
        return api

    def start_worker(self) -> Child:
        worker = self.start("worker", "worker", "--queues", "gpu,cpu,maintenance", "--name", "load@%h")
        self._wait(lambda: " ready." in worker.log(), worker, 120)
        return worker

    def stop(self, child: Child) -> None:
        """SIGTERM the child's process group, SIGKILL it after 30 s; keeps its log."""
        child.signal_group(signal.SIGTERM)
        try:
            child.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.signal_group(signal.SIGKILL)
            child.popen.wait(timeout=10)
        child.signal_group(signal.SIGKILL)  # a pool child that outlived its parent

    @staticmethod
    def _wait(condition: Any, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise SystemExit(f"load.py: {child.name} exited early:\n{child.log()[-5000:]}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if condition():
                    return
            time.sleep(0.1)
        raise SystemExit(f"load.py: {child.name} not ready after {timeout:.0f}s:\n{child.log()[-5000:]}")

    # -- teardown ---------------------------------------------------------------------------------------
    def close(self, keep_logs: Path | None = None) -> None:
        """Stop every process group (SIGTERM, then SIGKILL), then remove the home, database, Redis keys."""
        for child in self.children:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(c.alive() for c in self.children):
            time.sleep(0.1)
        for child in self.children:
            child.signal_group(signal.SIGKILL)  # the group: a worker's pool children too
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=10)
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self.home.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)
        if self.database is not None:
            try:
                self._admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except Exception as exc:
                print(f"load.py: could not drop database {self.database}: {exc}", file=sys.stderr)
        if self.redis_claimed:
            import redis

            try:
                client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
                client.flushdb()
                client.close()
            except Exception as exc:
                print(f"load.py: could not flush {self.redis_url}: {exc}", file=sys.stderr)
        shutil.rmtree(self.home, ignore_errors=True)


# -- CPU accounting (Linux /proc) ------------------------------------------------------------------------
def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (an API with --workers: the supervisor and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit (children inherit it): 200
    clients need 200 sockets here and 200 more in the API, and some systems start at 256 or 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


# -- server-side histogram -------------------------------------------------------------------------------
def scrape_histogram(base_url: str) -> dict[tuple[str, str], dict[float, float]]:
    """Cumulative bucket counts of lbc_http_request_duration_seconds per (method, route), all statuses."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{base_url}/metrics", timeout=30).text
    except httpx.HTTPError as exc:  # a stalled API: report what the clients saw, without this table
        print(f"load.py: could not read {base_url}/metrics ({type(exc).__name__})", file=sys.stderr)
        return {}
    out: dict[tuple[str, str], dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "lbc_http_request_duration_seconds":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            key = (sample.labels["method"], sample.labels["route"])
            bound = float(sample.labels["le"])
            buckets = out.setdefault(key, {})
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return out


def histogram_delta(
    before: dict[tuple[str, str], dict[float, float]], after: dict[tuple[str, str], dict[float, float]]
) -> dict[tuple[str, str], dict[float, float]]:
    return {
        key: {b: n - before.get(key, {}).get(b, 0.0) for b, n in buckets.items()}
        for key, buckets in after.items()
    }


# -- load phase -----------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """The API's latency histogram and CPU time, the load generator's and the machine's CPU time."""

    at: float
    histogram: dict[tuple[str, str], dict[float, float]]
    api_cpu: float
    client_cpu: float
    machine: tuple[float, float]

    @classmethod
    def take(cls, base_url: str, api_pids: list[int]) -> Snapshot:
        return cls(
            at=time.monotonic(),
            histogram=scrape_histogram(base_url),
            api_cpu=sum(process_cpu_seconds(pid) for pid in api_pids),
            client_cpu=time.process_time(),
            machine=machine_busy_seconds(),
        )


@dataclass
class OpStats:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: dict[str, int] = field(default_factory=dict)  # "HTTP 500" / exception name -> count
    events: list[int] = field(default_factory=list)  # sse: events received per successful stream
    bytes: int = 0  # download: bytes received and verified

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


@dataclass(frozen=True)
class Artifact:
    """A finished job's artifact as the API listed it: what a download must deliver."""

    job_id: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LoadPlan:
    """What every virtual user does: the mix, pauses, timeouts and the artifacts to download."""

    weights: list[float]
    think: float
    timeout: float
    sse_hold: float
    artifacts: list[Artifact]
    # One context for every client: httpx builds one per client otherwise (loading the CA bundle, about
    # 0.1 s of CPU each), which kept 200 clients from sending their first request for 20-30 s.
    tls: ssl.SSLContext = field(default_factory=ssl.create_default_context)


def split_clients(clients: int, weights: list[float]) -> tuple[int, int]:
    """(subscribers, other clients): the sse weight is the share of clients that hold event streams
    (a stream is held for minutes, not a step among requests); the other weights are the steps of
    the rest. A positive weight gets at least one client."""
    sse = weights[OPS.index("sse")]
    others = sum(weights) - sse
    if sse <= 0:
        return 0, clients
    if others <= 0:
        return clients, 0
    subscribers = min(clients - 1, max(1, round(clients * sse / (sse + others))))
    return subscribers, clients - subscribers


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


class StepError(Exception):
    """A response that arrived but is wrong (the label is what the error table shows)."""


async def subscribe(client: httpx.AsyncClient, job_id: str, hold_until: float) -> tuple[float, int]:
    """Holds the job's event stream open until ``hold_until`` (time.monotonic), and at least until its
    first event. Returns (seconds to the response headers, events received). A stream must deliver at
    least the job's 'queued' event, and may end early only after its job's terminal state event."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    events, finished = 0, False
    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        connect = time.monotonic() - started
        if response.status_code != 200:
            raise StepError(f"HTTP {response.status_code}")
        try:
            # No deadline until the first event (the client's read timeout still applies), then the hold.
            async with asyncio.timeout(None) as hold:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    events += 1
                    data = json.loads(line[5:])
                    if data.get("kind") == "state":
                        finished = data.get("data", {}).get("state") in TERMINAL
                    if events == 1:
                        hold.reschedule(loop.time() + max(0.0, hold_until - time.monotonic()))
                if not finished:
                    raise StepError("stream ended early")
        except TimeoutError:
            pass  # held for the whole time: the normal end
    if events == 0:
        raise StepError("no events")
    return connect, events


async def download(client: httpx.AsyncClient, artifact: Artifact) -> int:
    """Reads the artifact whole and checks its size and sha256 against the listing."""
    digest, size = hashlib.sha256(), 0
    async with client.stream("GET", f"/v1/jobs/{artifact.job_id}/artifacts/{artifact.name}") as response:
        if response.status_code != 200:
            raise StepError(f"HTTP {response.status_code}")
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
            size += len(chunk)
    if size != artifact.size:
        raise StepError("wrong size")
    if digest.hexdigest() != artifact.sha256:
        raise StepError("wrong sha256")
    return size


async def step(
    client: httpx.AsyncClient,
    op: str,
    rng: random.Random,
    submitted: list[str],
    plan: LoadPlan,
    hold_until: float,
) -> tuple[float | None, int, int]:
    """One request of kind ``op``; returns (its latency if the step measures it itself, sse events
    received, download bytes). A stream's latency is the time to its response headers, not the hold.
    A submit appends its job's id to ``submitted`` (status and sse read one of those); a wrong answer
    raises StepError."""
    if op == "sse":
        connect, events = await subscribe(client, rng.choice(submitted), hold_until)
        return connect, events, 0
    if op == "download":
        return None, 0, await download(client, rng.choice(plan.artifacts))
    if op == "submit":
        response = await client.post("/v1/jobs", json=TINY_SPEC)
    elif op == "status":
        response = await client.get(f"/v1/jobs/{rng.choice(submitted)}")
    else:
        response = await client.get("/v1/jobs", params={"limit": 20})
    if response.status_code != EXPECTED_STATUS[op]:
        raise StepError(f"HTTP {response.status_code}")
    if op == "submit":
        submitted.append(response.json()["id"])
    return None, 0, 0


def record(
    stats: dict[str, OpStats], op: str, elapsed: float, events: int, size: int, error: str | None
) -> None:
    bucket = stats[op]
    if error is None:
        bucket.latencies.append(elapsed)
        if op == "sse":
            bucket.events.append(events)
        bucket.bytes += size
    else:
        bucket.error(error)


def make_client(base_url: str, token: str, plan: LoadPlan, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(plan.timeout),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        verify=plan.tls,
    )


async def checked_step(
    client: httpx.AsyncClient,
    op: str,
    rng: random.Random,
    submitted: list[str],
    plan: LoadPlan,
    hold_until: float,
) -> tuple[float | None, int, int, str | None]:
    """``step`` with its failure as a value: ``(latency, events, bytes, error)``."""
    try:
        latency, events, size = await step(client, op, rng, submitted, plan, hold_until)
    except StepError as exc:
        return None, 0, 0, str(exc)
    except httpx.HTTPError as exc:
        return None, 0, 0, type(exc).__name__
    return latency, events, size, None


async def virtual_user(
    base_url: str,
    token: str,
    plan: LoadPlan,
    counting_from: float,
    deadline: float,
    stats: dict[str, OpStats],
    warmup_stats: dict[str, OpStats],
    seed: int,
) -> None:
    """One client. A subscriber (``plan.weights`` all 0 but sse) submits a job, then holds its event
    stream open again and again; any other client draws each step from the weights."""
    rng = random.Random(seed)
    submitted: list[str] = []
    subscriber = not any(w for op, w in zip(OPS, plan.weights, strict=True) if op != "sse")
    async with make_client(base_url, token, plan, 1) as client:
        while time.monotonic() < deadline:
            op = rng.choices(OPS, plan.weights)[0] if submitted and not subscriber else "submit"
            op = "sse" if submitted and subscriber else op
            started = time.monotonic()
            hold_until = min(started + plan.sse_hold, deadline)
            latency, events, size, error = await checked_step(client, op, rng, submitted, plan, hold_until)
            elapsed = latency if latency is not None else time.monotonic() - started
            record(stats if started >= counting_from else warmup_stats, op, elapsed, events, size, error)
            if plan.think > 0:  # never past the deadline: the run ends on time
                pause = min(rng.expovariate(1.0 / plan.think), 10 * plan.think, deadline - time.monotonic())
                await asyncio.sleep(max(0.0, pause))


async def open_loop(
    base_url: str,
    token: str,
    plan: LoadPlan,
    rate: float,
    connections: int,
    counting_from: float,
    deadline: float,
    stats: dict[str, OpStats],
    warmup_stats: dict[str, OpStats],
    seed: int,
) -> None:
    """Requests arrive at ``rate`` per second (a Poisson process), whether or not earlier ones were
    answered, into one queue that ``connections`` keep-alive connections take them from. A request's
    latency counts from its scheduled arrival, so time spent waiting for a free connection, or behind a
    late load generator, is in it (no coordinated omission).

    One client per connection, not one client with a pool: httpx's pool hands a freed connection to a
    waiting request at a cost that grows with the number waiting, which made the load generator the
    bottleneck (30 s queues at the client while the API answered in milliseconds)."""
    rng = random.Random(seed)
    submitted: list[str] = []
    arrivals: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
    first_submit = asyncio.Event()

    async def connection() -> None:
        async with make_client(base_url, token, plan, 1) as client:
            while (item := await arrivals.get()) is not None:
                op, arrival = item
                _, events, size, error = await checked_step(client, op, rng, submitted, plan, deadline)
                if submitted:
                    first_submit.set()
                bucket = stats if arrival >= counting_from else warmup_stats
                record(bucket, op, time.monotonic() - arrival, events, size, error)

    async def arrive() -> None:
        arrival = time.monotonic()
        while arrival < deadline:
            delay = arrival - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # Status reads one of the submitted jobs: until a submit was answered, arrivals are submits.
            op = rng.choices(OPS, plan.weights)[0] if first_submit.is_set() else "submit"
            arrivals.put_nowait((op, arrival))
            arrival += rng.expovariate(rate)
        for _ in range(connections):
            arrivals.put_nowait(None)

    await asyncio.gather(arrive(), *(connection() for _ in range(connections)))


async def run_load(
    base_url: str, token: str, args: argparse.Namespace, plan: LoadPlan, api_pids: list[int]
) -> tuple[dict[str, OpStats], float, Snapshot, Snapshot]:
    """Runs the clients; returns their stats, the measured seconds, and snapshots taken when the
    warmup ends and when the last client is done (so server-side numbers cover the same window)."""
    now = time.monotonic()
    counting_from = now + args.warmup
    deadline = counting_from + args.duration
    stats = {op: OpStats() for op in OPS}
    warmup_stats = {op: OpStats() for op in OPS}

    async def snapshot_after_warmup() -> Snapshot:
        await asyncio.sleep(max(0.0, counting_from - time.monotonic()))
        return await asyncio.to_thread(Snapshot.take, base_url, api_pids)

    subscribers, steps = split_clients(args.clients, plan.weights)
    sse = OPS.index("sse")
    plans = [replace(plan, weights=[float(i == sse) for i in range(len(OPS))])] * subscribers
    requests = replace(plan, weights=[0.0 if i == sse else w for i, w in enumerate(plan.weights)])
    first = asyncio.ensure_future(snapshot_after_warmup())
    users = [
        virtual_user(base_url, token, p, counting_from, deadline, stats, warmup_stats, args.seed + i)
        for i, p in enumerate(plans + ([] if args.rate else [requests] * steps))
    ]
    if args.rate:  # open loop: the other clients' connections carry requests arriving at --rate
        arrivals = open_loop(
            base_url,
            token,
            requests,
            args.rate,
            steps,
            counting_from,
            deadline,
            stats,
            warmup_stats,
            args.seed,
        )
        users.append(arrivals)
    await asyncio.gather(*users)
    last = await asyncio.to_thread(Snapshot.take, base_url, api_pids)
    # Not deadline - counting_from: a request still open at the deadline is waited for (--timeout at most).
    measured = time.monotonic() - counting_from
    warm = [x for op in OPS for x in warmup_stats[op].latencies if op != "sse"]
    warm_ok = sum(len(warmup_stats[op].latencies) for op in OPS)
    warm_errors: dict[str, int] = {}
    for op in OPS:
        for what, count in warmup_stats[op].errors.items():
            warm_errors[f"{op} {what}"] = warm_errors.get(f"{op} {what}", 0) + count
    print(
        f"warmup (not in the tables): {warm_ok} ok"
        + (f", slowest {max(warm) * 1000:.0f} ms" if warm else "")
        + (", errors: " + ", ".join(f"{k} x{v}" for k, v in warm_errors.items()) if warm_errors else "")
    )
    if measured > args.duration + 1:
        print(f"the last requests ended {measured - args.duration:.1f} s after the measured window")
    return stats, measured, await first, last


def print_load_table(stats: dict[str, OpStats], measured: float, sse_hold: float) -> None:
    print(
        f"\n{'operation':<9} {'ok':>7} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8}"
    )
    total_ok = total_err = 0
    for op in OPS:
        s = stats[op]
        n, e = len(s.latencies), sum(s.errors.values())
        total_ok, total_err = total_ok + n, total_err + e
        if not n and not e:
            continue
        if n:
            ms = [x * 1000 for x in s.latencies]
            cells = [percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), max(ms)]
            row = " ".join(f"{c:8.1f}" for c in cells)
        else:
            row = " ".join(f"{'-':>8}" for _ in range(4))
        print(f"{op:<9} {n:>7} {e:>6} {n / measured:>8.1f} {row}")
    # "all" leaves the streams out: their latency is a connect time, and their count is per hold.
    all_ms = [x * 1000 for op in OPS if op != "sse" for x in stats[op].latencies]
    if all_ms:
        print(
            f"{'all but sse':<11} {len(all_ms):>5} {total_err:>6} {len(all_ms) / measured:>8.1f} "
            f"{percentile(all_ms, 50):8.1f} {percentile(all_ms, 95):8.1f} {percentile(all_ms, 99):8.1f} "
            f"{max(all_ms):8.1f}"
        )
    sse = stats["sse"]
    if sse.events:
        print(
            f"  sse: latency = time to the response headers; {len(sse.events)} streams held {sse_hold:g} s, "
            f"{sum(sse.events)} events received ({min(sse.events)}-{max(sse.events)} per stream)"
        )
    if stats["download"].latencies:
        print(
            f"  download: latency = time to the last byte; {stats['download'].bytes / 1e6:.1f} MB "
            "received, size and sha256 verified"
        )
    for op in OPS:
        if stats[op].errors:
            print(f"  {op} errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(stats[op].errors.items())))
    print(f"errors in total: {total_err}")


def print_server_table(delta: dict[tuple[str, str], dict[float, float]]) -> None:
    print(
        "\nserver side (the API's lbc_http_request_duration_seconds: time to response headers, "
        "all statuses, after the warmup):"
    )
    header = " ".join(f"{'<=' + str(b):>7}" for b in SERVER_BUCKETS_MS)
    print(f"{'operation':<9} {'count':>7} {header}   p99 within")
    for op in OPS:
        buckets = delta.get(ROUTES[op], {})
        count = buckets.get(float("inf"), 0.0)
        if not count:
            continue
        shares = " ".join(f"{100 * buckets.get(b / 1000, 0.0) / count:6.1f}%" for b in SERVER_BUCKETS_MS)
        bound = next((f"<= {b * 1000:g} ms" for b in sorted(buckets) if buckets[b] >= 0.99 * count), "?")
        bound = "> 10000 ms" if bound == "<= inf ms" else bound
        print(f"{op:<9} {int(count):>7} {shares}   {bound}")


# -- preparation ----------------------------------------------------------------------------------------
def prepare_artifacts(
    base_url: str, token: str, jobs: int, names: list[str], timeout: float
) -> list[Artifact]:
    """Runs ``jobs`` tiny jobs to success (a worker must be running) and returns their artifacts named
    in ``names``, as the API lists them."""
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        ids = []
        for _ in range(jobs):
            response = client.post("/v1/jobs", json=TINY_SPEC)
            response.raise_for_status()
            ids.append(response.json()["id"])
        artifacts: list[Artifact] = []
        deadline = time.monotonic() + timeout
        for job_id in ids:
            state = ""
            while state not in TERMINAL and time.monotonic() < deadline:
                state = client.get(f"/v1/jobs/{job_id}").json()["state"]
                if state not in TERMINAL:
                    time.sleep(0.5)
            if state != "succeeded":
                raise SystemExit(
                    f"load.py: preparation job {job_id} ended {state or 'nowhere'} (not succeeded)"
                )
            listed = client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
            artifacts += [
                Artifact(job_id, a["name"], int(a["size"]), a["sha256"]) for a in listed if a["name"] in names
            ]
    finally:
        client.close()
    if not artifacts:
        raise SystemExit(f"load.py: the prepared jobs have none of the artifacts {', '.join(names)}")
    return artifacts


# -- latency probe --------------------------------------------------------------------------------------
def run_probe(base_url: str, token: str, jobs: int, timeout: float, gap: float) -> None:
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    rows: list[tuple[str, float, float, str]] = []
    try:
        print(f"\n{'job':<34} {'queued->running ms':>18} {'queued->finished s':>18} state")
        for _ in range(jobs):
            response = client.post("/v1/jobs", json=TINY_SPEC)
            response.raise_for_status()
            job_id = response.json()["id"]
            deadline = time.monotonic() + timeout
            detail: dict[str, Any] = response.json()
            while detail["state"] not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.1)
                detail = client.get(f"/v1/jobs/{job_id}").json()
            if detail["started_at"] is None:
                print(f"{job_id:<34} {'never started':>18} {'':>18} {detail['state']} (after {timeout:.0f}s)")
                continue
            queued = datetime.fromisoformat(detail["queued_at"])
            started = datetime.fromisoformat(detail["started_at"])
            to_run = (started - queued).total_seconds()
            finished = (
                (datetime.fromisoformat(detail["finished_at"]) - queued).total_seconds()
                if detail["finished_at"]
                else float("nan")
            )
            rows.append((job_id, to_run, finished, detail["state"]))
            print(f"{job_id:<34} {to_run * 1000:>18.1f} {finished:>18.2f} {detail['state']}")
            if gap > 0:
                time.sleep(gap)
    finally:
        client.close()
    if rows:
        lat = [r[1] * 1000 for r in rows]
        print(
            f"\nqueued -> running over {len(lat)} jobs: p50 {statistics.median(lat):.1f} ms, "
            f"max {max(lat):.1f} ms, mean {statistics.fmean(lat):.1f} ms"
        )


# -- main -----------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("embedded", "distributed"), default="distributed")
    parser.add_argument("--with-worker", action="store_true", help="also start `lbc worker`")
    parser.add_argument("--clients", type=int, default=50, help="concurrent virtual users (default 50)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds run first, not counted (default 2)"
    )
    parser.add_argument(
        "--mix",
        default="1,3,1,1,1",
        help="weights of submit,status,list,sse,download (default 1,3,1,1,1); sse: the share of clients "
        "that hold event streams, the others: the steps of the other clients (three weights: "
        "submit,status,list only)",
    )
    parser.add_argument(
        "--sse-hold", type=float, default=4.0, help="s a subscriber holds a stream open (default 4)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="client timeout in s; a timeout is an error (default 30)"
    )
    parser.add_argument(
        "--api-workers", type=int, default=1, help="uvicorn processes of the API (lbc api --workers)"
    )
    parser.add_argument(
        "--prepare-jobs", type=int, default=1, help="jobs run to success before the load, to download from"
    )
    parser.add_argument(
        "--artifacts",
        default="manifest.json,model.safetensors",
        help="names of the prepared jobs' artifacts to download (default manifest.json,model.safetensors)",
    )
    parser.add_argument(
        "--think", type=float, default=0.0, help="mean pause in s between a client's requests (default 0)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="REQ_PER_S",
        help="open loop: requests (submit, status, list, download by the mix) arrive at this mean rate, a "
        "Poisson process, whether or not earlier ones were answered, over the non-subscriber clients' "
        "connections; latency counts from the arrival. 0 (default): closed loop",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latency-probe",
        type=int,
        metavar="N",
        default=0,
        help="submit N tiny jobs one at a time with a worker running and report queued->running (no load)",
    )
    parser.add_argument("--probe-timeout", type=float, default=120.0, help="max s to wait for one probe job")
    parser.add_argument("--probe-gap", type=float, default=0.5, help="s to wait between probe jobs")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the temporary database on (distributed mode)",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/14", help="an empty Redis DB; flushed at the end"
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="record the API process with py-spy (on PATH) during the load phase into PATH (speedscope)",
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (where the API's CPU goes, without the "
        "threads that wait for the database or for work)",
    )
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the processes' logs to DIR")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows in a log file
    try:
        weights = [float(w) for w in args.mix.split(",")]
    except ValueError:
        weights = []
    weights += [0.0] * (len(OPS) - len(weights)) if len(weights) == 3 else []
    if len(weights) != len(OPS) or min(weights) < 0 or sum(weights) <= 0:
        parser.error(
            "--mix needs 5 (or 3) non-negative weights of submit,status,list,sse,download, e.g. 1,3,1,1,1"
        )
    if args.rate < 0 or (args.rate and args.think):
        parser.error(
            "--rate must be positive and cannot be combined with --think (an open loop has no pauses)"
        )
    if args.rate and split_clients(args.clients, weights)[1] < 1:
        parser.error("--rate needs at least one client that is not a subscriber (its connection)")
    if args.api_workers < 1:
        parser.error("--api-workers must be at least 1")
    with_worker = args.with_worker or args.latency_probe > 0
    downloads = weights[OPS.index("download")] > 0 and args.latency_probe == 0

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    stack = Stack(args.mode, args.pg_admin_url, args.redis_url, max_jobs=10_000_000)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        stack.prepare()
        open_files = raise_open_files_limit()
        token = stack.run_lbc("keys", "create", "--name", "load-benchmark").strip()
        api = stack.start_api(args.api_workers)
        artifacts: list[Artifact] = []
        if with_worker or downloads:
            worker = stack.start_worker()
            if downloads:
                started = time.monotonic()
                names = [n.strip() for n in args.artifacts.split(",") if n.strip()]
                try:
                    artifacts = prepare_artifacts(stack.base_url, token, args.prepare_jobs, names, 240)
                except SystemExit as exc:
                    raise SystemExit(f"{exc}\nworker log:\n{worker.log()[-5000:]}") from None
                print(
                    f"prepared {len(artifacts)} artifacts of {args.prepare_jobs} finished jobs in "
                    f"{time.monotonic() - started:.0f} s: "
                    + ", ".join(f"{a.name} ({a.size} B)" for a in artifacts[: len(names)])
                )
            if not with_worker:
                stack.stop(worker)
        api_pids = group_pids(api.popen.pid)
        cpus = os.cpu_count()
        broker = "Redis" if args.mode == "distributed" else "SQLite broker"
        database = "PostgreSQL" if args.mode == "distributed" else "SQLite"
        print(
            f"mode {args.mode} ({database}, {broker}), worker {'yes' if with_worker else 'no'}, "
            f"{cpus} CPUs, Python {platform.python_version()}, API {stack.base_url} "
            + ("(one uvicorn process)" if args.api_workers == 1 else f"({args.api_workers} uvicorn workers)")
            + f", open files limit {open_files}"
        )
        if args.latency_probe > 0:
            run_probe(stack.base_url, token, args.latency_probe, args.probe_timeout, args.probe_gap)
            return 0

        subscribers, others = split_clients(args.clients, weights)
        if args.rate:
            print(
                f"open loop: {args.rate:g} requests/s (Poisson arrivals) over {others} connections; "
                "latency counts from each request's arrival"
            )
        print(
            f"{args.clients} clients, {args.warmup:g} s warmup + {args.duration:g} s measured, "
            f"mix {','.join(OPS)} = {','.join(f'{w:g}' for w in weights)}, think {args.think:g} s, "
            f"{subscribers} of them subscribers holding a stream {args.sse_hold:g} s, "
            f"timeout {args.timeout:g} s"
        )
        idle0 = machine_busy_seconds()
        time.sleep(1.0)
        idle1 = machine_busy_seconds()
        if idle1[1] > idle0[1]:
            background = 100 * (idle1[0] - idle0[0]) / (idle1[1] - idle0[1])
            note = "  (other work on the machine: these numbers are noisy)" if background > 10 else ""
            print(f"machine busy before the load: {background:.0f}% of {cpus} cores{note}")
        if args.py_spy:
            exe = shutil.which("py-spy")
            if exe is None:
                raise SystemExit("load.py: --py-spy needs py-spy on PATH (pip install py-spy)")
            profiler = subprocess.Popen(
                [
                    *(exe, "record", "--pid", str(api.popen.pid), "--rate", "200", "--format", "speedscope"),
                    *("--duration", str(int(args.warmup + args.duration)), "--output", args.py_spy),
                    "--nonblocking",
                    *(["--gil"] if args.py_spy_gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        plan = LoadPlan(weights, args.think, args.timeout, args.sse_hold, artifacts)
        stats, measured, first, last = asyncio.run(run_load(stack.base_url, token, args, plan, api_pids))
        print_load_table(stats, measured, args.sse_hold)
        delta = histogram_delta(first.histogram, last.histogram)
        if args.api_workers == 1:
            print_server_table(delta)
        else:  # each process has its own registry: /metrics answers with one of them
            print("\nserver side: left out (each of the API's processes keeps its own histogram)")
        window = last.at - first.at
        api_cpu, client_cpu = last.api_cpu - first.api_cpu, last.client_cpu - first.client_cpu
        busy, total = (last.machine[0] - first.machine[0]), (last.machine[1] - first.machine[1])
        served = int(sum(delta.get(ROUTES[op], {}).get(float("inf"), 0.0) for op in OPS))
        if args.api_workers > 1:  # the client-side count of the measured window instead
            served = sum(len(stats[op].latencies) + sum(stats[op].errors.values()) for op in OPS)
        print(f"\nCPU over the measured {window:.1f} s (after the warmup):")
        if total > 0:
            print(f"  machine         {100 * busy / total:5.0f}% busy of {cpus} cores")
        what = "API process" if len(api_pids) == 1 else f"API, {len(api_pids)} procs"
        print(f"  {what:<15} {100 * api_cpu / window:5.0f}% of one core ({api_cpu:.1f} s)")
        print(f"  load generator  {100 * client_cpu / window:5.0f}% of one core ({client_cpu:.1f} s)")
        print("  (the rest: PostgreSQL or SQLite, Redis, a worker, other processes)")
        if served:
            # Robust to other load on the machine, unlike the latencies: compare code variants with this.
            print(f"  API CPU per request: {1000 * api_cpu / served:.2f} ms ({served} requests)")
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=60)
            print(f"py-spy profile of the API: {args.py_spy}")
        return 0
    except KeyboardInterrupt:
        print("\nload.py: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if profiler is not None and profiler.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(profiler.pid, signal.SIGKILL)
            profiler.wait(timeout=10)
        stack.close(args.keep_logs)


if __name__ == "__main__":
    sys.exit(main())
