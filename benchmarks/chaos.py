"""Chaos run of the distributed mode: SIGKILL workers, restart Redis and the API while jobs train, then
check that every job ended exactly once and that every succeeded job's artifacts verify.

What it starts, on loopback and private to the run (everything is removed at the end):
  - a Redis server on a free port without persistence (``redis-server --save '' --appendonly no``);
  - a fresh PostgreSQL database on the --pg-admin-url server, migrated with ``lbc migrate``, dropped at
    the end (or --database-url, an existing empty database, which is left in place);
  - a local object store directory; ``lbc api``; the reaper (``lbc beat`` plus a maintenance
    ``lbc worker``); --workers job workers (``lbc worker``), each in its own process group.

It submits --jobs small training jobs through the HTTP API (half at once, the rest spread over the
run), and between random pauses (seeded by --seed) it
  - SIGKILLs the process group of a worker that is running a job (the machine is gone) and starts a
    replacement, --kills times. The first kill waits for a job that has a checkpoint, so every run
    exercises a resume;
  - SIGKILLs Redis and starts it again on the same port after a short outage (every message is lost);
  - SIGKILLs the API and starts it again on the same port (submissions retry with their Idempotency-Key);
  - stops a worker that is running a job gracefully (SIGTERM to its main process, as ``docker stop``
    does), --graceful-stops times, and starts a replacement: the job must checkpoint and go back to the
    queue without consuming an attempt.

Then it waits until every job is terminal and checks, through the API (events, artifacts):
  lost        a submitted job that is missing, or not terminal by the deadline;
  duplicated  a job that became ``succeeded`` more than once, or an attempt that wrote anything after
              a later attempt had claimed the job (two owners at once);
  resumed     attempts whose ``training`` phase event names the checkpoint they continued from; a
              resume from an older checkpoint than one an earlier attempt logged as uploaded is stale;
  stops       each graceful stop handed its job back (a state event ``interrupted``) or the job had
              ended; one that let the attempt be lost (the reaper's ``worker_lost``) consumed an attempt;
  artifacts   every artifact downloads intact (listed sha256 and size); the manifest's digests match
              the files; each sparsified layer of model.safetensors is exactly N:M and inside its mask;
              the compressed N:M form rebuilds the same weights.
A job that failed is expected only as ``worker_lost`` after max_attempts kills; any other failure counts.
Exit status 1 when a job is lost, duplicated, stale-resumed, unexpectedly failed, does not verify, or
when a graceful stop consumed an attempt.

Usage:
  python benchmarks/chaos.py                                  # 12 jobs, 3 workers, 20 kills, 3 stops
  python benchmarks/chaos.py --jobs 5 --workers 2 --kills 4 --seed 7
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from safetensors.torch import load_file
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from client import ApiError, Client, ClientError, ConnectionFailed
from client import Job as ApiJob
from client.client import sha256_file
from jobs.db import make_engine, make_session_factory, transaction
from jobs.models import Job, JobEvent
from lbc_core.export import (
    CHECKPOINT_FILE,
    COMPRESSED_FILE,
    MANIFEST_FILE,
    MASKS_FILE,
    load_masks,
    rebuild_model,
)
from lbc_core.sparsity import NMPattern, count_violations

T = TypeVar("T")

LBC = str(Path(sys.executable).with_name("lbc"))
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
WORKER_PREFIX = "chaos-w"
# Logged by a worker for each checkpoint it referenced (worker/callback.py).
CHECKPOINT_LINE = re.compile(r"checkpoint at epoch \d+ step \d+ \(global step (\d+)\) uploaded")
DUPLICATE_DELIVERY_LINE = "is not queued any more (duplicate or stale delivery)"


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 12
    workers: int = 3
    kills: int = 20
    redis_restarts: int = 1
    api_restarts: int = 1
    graceful_stops: int = 3
    stop_timeout_s: float = 60.0  # a worker still running this long after SIGTERM is killed (and counted)
    seed: int = 0
    epochs: int = 6  # one checkpoint per epoch
    pause_s: tuple[float, float] = (1.0, 3.0)  # between two chaos actions
    outage_s: tuple[float, float] = (0.5, 2.0)  # how long Redis and the API stay down
    lease_s: float = 4.0
    heartbeat_s: float = 0.5
    reaper_interval_s: float = 1.0
    queued_resend_s: float = 3.0
    max_attempts: int = 8
    deadline_s: float = 900.0  # the whole run, start to last terminal job
    pg_admin_url: str = DEFAULT_PG_ADMIN_URL
    database_url: str | None = None  # an existing empty database instead of a fresh one

    def spec(self, index: int) -> dict[str, Any]:
        """A job of a few seconds: LeNet-5 on 800 digits, 40 steps per epoch, a checkpoint per epoch."""
        return {
            "name": f"chaos-{self.seed}-{index}",
            "model": {"architecture": "lenet5"},
            "dataset": {"source": "digits", "limit": 800},
            "sparsity": {"method": "lbc", "n": 2, "m": 4},
            "train": {"epochs": self.epochs, "batch_size": 16, "lr": 0.05, "seed": index},
            "benchmark": {"enabled": False},
        }

    def settings(self) -> dict[str, str]:
        """The LBC_* settings that make recovery fast enough to watch (besides the addresses)."""
        return {
            "LBC_LEASE_SECONDS": str(self.lease_s),
            "LBC_HEARTBEAT_SECONDS": str(self.heartbeat_s),
            "LBC_REAPER_INTERVAL_SECONDS": str(self.reaper_interval_s),
            "LBC_QUEUED_RESEND_SECONDS": str(self.queued_resend_s),
            "LBC_MAX_ATTEMPTS": str(self.max_attempts),
            "LBC_PROGRESS_INTERVAL_SECONDS": "0.2",
            "LBC_MAX_CONCURRENT_JOBS_PER_OWNER": str(max(16, self.jobs)),
        }


# -- records ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kill:
    at_s: float
    worker: str
    job_id: str
    attempt: int
    where: str  # the phase of the attempt when it was killed


@dataclass(frozen=True)
class GracefulStop:
    at_s: float
    worker: str
    job_id: str
    attempt: int
    where: str
    exited_after_s: float  # SIGTERM -> the worker's main process exited
    handed_back: bool  # the job went back to the queue with the attempt not counted
    ended: bool  # the job had ended before the stop reached it (nothing to hand back)

    @property
    def consumed_an_attempt(self) -> bool:
        return not (self.handed_back or self.ended)


@dataclass(frozen=True)
class Resume:
    attempt: int
    epoch: int  # epochs completed when the checkpoint was written
    step: int
    global_step: int

    def __str__(self) -> str:
        return f"a{self.attempt}: epoch {self.epoch} step {self.step} (global {self.global_step})"


@dataclass(frozen=True)
class JobOutcome:
    id: str
    state: str  # "missing" when the API does not know the job
    attempts: int
    error_type: str | None = None
    resumes: tuple[Resume, ...] = ()
    successes: int = 0  # transitions to succeeded
    overlapping_writes: int = 0  # events of an attempt written after a later attempt claimed the job
    stale_resumes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # artifact verification

    @property
    def lost(self) -> bool:
        return self.state not in TERMINAL

    @property
    def duplicated(self) -> bool:
        return self.successes > 1 or self.overlapping_writes > 0

    @property
    def unexpected_failure(self) -> bool:
        return self.state == "failed" and self.error_type != "worker_lost"


@dataclass
class ChaosReport:
    config: ChaosConfig
    commands: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    redis_restarts: list[float] = field(default_factory=list)
    api_restarts: list[float] = field(default_factory=list)
    graceful_stops: list[GracefulStop] = field(default_factory=list)
    jobs: list[JobOutcome] = field(default_factory=list)
    duplicate_deliveries: int = 0
    elapsed_s: float = 0.0

    def count(self, predicate: Callable[[JobOutcome], bool]) -> int:
        return sum(1 for job in self.jobs if predicate(job))

    @property
    def failures(self) -> list[str]:
        """Why the run failed (empty: it passed)."""
        found = []
        for job in self.jobs:
            if job.lost:
                found.append(f"job {job.id} is lost ({job.state})")
            if job.duplicated:
                found.append(
                    f"job {job.id} completed {job.successes} times, "
                    f"{job.overlapping_writes} writes by a superseded attempt"
                )
            if job.unexpected_failure:
                found.append(f"job {job.id} failed: {job.error_type}")
            found.extend(f"job {job.id}: {problem}" for problem in (*job.stale_resumes, *job.problems))
        found.extend(
            f"graceful stop of {stop.worker} consumed attempt {stop.attempt} of job {stop.job_id}"
            for stop in self.graceful_stops
            if stop.consumed_an_attempt
        )
        if len(self.jobs) != self.config.jobs:
            found.append(f"{self.config.jobs} jobs asked for, {len(self.jobs)} submitted")
        return found


# -- processes ------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker's pool child too) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; RuntimeError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (OSError, httpx.HTTPError, redis.RedisError, ClientError) as exc:  # still starting
            last, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))


class Cluster:
    """The run's services and processes; :meth:`close` removes every one of them (and the database)."""

    def __init__(self, config: ChaosConfig, workdir: Path, say: Callable[[str], None]) -> None:
        self.config = config
        self.workdir = workdir
        self.say = say
        self.procs: list[Proc] = []
        self.commands: list[str] = []
        self.workers: dict[str, Proc] = {}  # node name prefix -> live job worker
        self.started = 0
        self.redis_port = free_port()
        self.api_port = free_port()
        self.redis: Proc | None = None
        self.api: Proc | None = None
        self._database: str | None = None
        self.database_url = config.database_url or self._create_database()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LBC_")}
        self.settings = {
            "LBC_HOME": str(workdir / "home"),
            "LBC_DATABASE_URL": self.database_url,
            "LBC_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "LBC_STORAGE_PATH": str(workdir / "objects"),
            "LBC_CONFIG": str(workdir / "client-config.json"),
            **config.settings(),
        }
        # One job per worker process: several workers sharing a few cores each with its own full-width
        # thread pool oversubscribe them (a 100x slower step was measured on 2 cores), so one thread each.
        self.env.update(self.settings, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    # -- database ---------------------------------------------------------------------------------------
    def _admin(self) -> Any:
        return create_engine(
            self.config.pg_admin_url,
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"connect_timeout": 5},
        )

    def _create_database(self) -> str:
        name = f"lbc_chaos_{uuid.uuid4().hex[:12]}"
        admin = self._admin()
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        self._database = name
        return make_url(self.config.pg_admin_url).set(database=name).render_as_string(hide_password=False)

    def _drop_database(self) -> None:
        if self._database is None:
            return
        admin = self._admin()
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._database}" WITH (FORCE)'))
        finally:
            admin.dispose()
        self._database = None

    # -- processes ----------------------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> Proc:
        log_path = self.workdir / "logs" / f"{self.started:02d}-{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started += 1
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, argv, log_path, popen)
        self.procs.append(proc)
        command = shlex.join(argv)
        if command not in self.commands:
            self.commands.append(command)
        return proc

    def run(self, *args: str) -> str:
        """A short ``lbc`` command with the run's environment; its stdout."""
        argv = [LBC, *args]
        self.commands.append(shlex.join(argv))
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; the chaos run needs its own Redis to restart")
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        argv = [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.redis = self.spawn("redis", [*argv, "no", "--dir", str(data)])
        probe = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_connect_timeout=1)
        try:
            wait_until(probe.ping, 30, "redis-server to answer PING")
        finally:
            probe.close()

    def start_api(self, wait: bool = True) -> None:
        self.api = self.spawn("api", [LBC, "api", "--port", str(self.api_port)])
        if wait:
            self.wait_api()

    def wait_api(self) -> None:
        url = f"http://127.0.0.1:{self.api_port}/healthz"
        wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, 90, "the API to answer /healthz")

    def start_worker(self) -> Proc:
        number = len([p for p in self.procs if p.name.startswith("worker-")]) + 1
        node = f"{WORKER_PREFIX}{number}"
        argv = [LBC, "worker", "--queues", "gpu,cpu", "--name", f"{node}@%h"]
        proc = self.spawn(f"worker-{number}", argv)
        self.workers[node] = proc
        return proc

    def start_reaper(self) -> None:
        self.spawn("maintenance", [LBC, "worker", "--queues", "maintenance", "--name", "chaos-reaper@%h"])
        self.spawn("beat", [LBC, "beat"])

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=30)
        self._drop_database()


# -- the run ----------------------------------------------------------------------------------------------
def describe_phase(phase: str | None, progress: dict[str, Any] | None) -> str:
    """Where an attempt is; the progress is shown only while training (a new attempt starts with the
    progress its predecessor left behind)."""
    if phase == "training" and progress:
        return f"training epoch {progress.get('epoch')} step {progress.get('step')}"
    return phase or "-"


def retrying(call: Callable[[], T], deadline: float, what: str) -> T:
    """``call()``, repeated while the API is unreachable or answers 5xx (it may be restarting)."""
    while True:
        try:
            return call()
        except (ConnectionFailed, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status < 500:
                raise
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{what}: the API stayed unavailable ({exc})") from exc
            time.sleep(0.5)


class ChaosRun:
    def __init__(self, config: ChaosConfig, cluster: Cluster, say: Callable[[str], None]) -> None:
        self.config = config
        self.cluster = cluster
        self.say = say
        self.rng = random.Random(config.seed)
        self.started = time.monotonic()
        self.deadline = self.started + config.deadline_s
        self.report = ChaosReport(config)
        self.submitted: list[str] = []
        self.client: Client | None = None
        self.engine = make_engine(cluster.database_url)
        self.sessions = make_session_factory(self.engine)

    def now(self) -> float:
        return time.monotonic() - self.started

    def log(self, message: str) -> None:
        self.say(f"[{self.now():7.1f}s] {message}")

    # -- set-up ---------------------------------------------------------------------------------------
    def start(self) -> Client:
        cluster = self.cluster
        cluster.start_redis()
        cluster.run("migrate")
        token = cluster.run("keys", "create", "--name", "chaos").strip().splitlines()[-1]
        cluster.start_api(wait=False)  # every process imports its modules at once
        for _ in range(self.config.workers):
            cluster.start_worker()
        cluster.start_reaper()
        cluster.wait_api()
        self.client = Client(f"http://127.0.0.1:{cluster.api_port}", token, retries=3)
        self.report.commands = cluster.commands
        self.report.environment = dict(cluster.settings)
        self.log(f"started redis, api, reaper and {self.config.workers} workers")
        return self.client

    def submit(self) -> None:
        assert self.client is not None
        index = len(self.submitted)
        key = f"chaos-{self.config.seed}-{index}-{uuid.uuid4().hex}"
        client, spec = self.client, self.config.spec(index)
        # The same key on every retry: a submit whose answer was lost in an API crash is not repeated.
        job = retrying(lambda: client.submit(spec, idempotency_key=key), self.deadline, "submit")
        self.submitted.append(job.id)
        self.log(f"submitted job {job.id}")

    # -- chaos actions ------------------------------------------------------------------------------------
    def plan(self) -> list[str]:
        actions = ["kill"] * self.config.kills
        for kind, count in (
            ("redis", self.config.redis_restarts),
            ("api", self.config.api_restarts),
            ("stop", self.config.graceful_stops),
        ):
            for _ in range(count):  # never first: the first action is the kill that guarantees a resume
                actions.insert(self.rng.randint(min(1, len(actions)), len(actions)), kind)
        return actions

    def running(self) -> list[tuple[str, str, int, str | None, str]]:
        with transaction(self.sessions) as session:
            rows = session.execute(
                select(Job.id, Job.worker_id, Job.attempt, Job.checkpoint_key, Job.phase, Job.progress).where(
                    Job.state == "running", Job.id.in_(self.submitted)
                )
            ).all()
        return [(r[0], r[1], r[2], r[3], describe_phase(r[4], r[5])) for r in rows if r[1]]

    def submitted_ended(self) -> bool:
        with transaction(self.sessions) as session:
            states = session.scalars(select(Job.state).where(Job.id.in_(self.submitted))).all()
        return len(states) == len(self.submitted) and set(states) <= TERMINAL

    def all_terminal(self) -> bool:
        return len(self.submitted) == self.config.jobs and self.submitted_ended()

    def busy_worker(self, need_checkpoint: bool) -> tuple[str, str, int, str | None, str] | None:
        """A job running on one of our workers (waiting for one); None when every job has already ended."""
        while time.monotonic() < self.deadline:
            targets = [
                row
                for row in self.running()
                if row[1].split("@")[0] in self.cluster.workers and (row[3] or not need_checkpoint)
            ]
            if targets:
                return self.rng.choice(sorted(targets))
            if self.submitted_ended():
                if len(self.submitted) == self.config.jobs:
                    return None
                self.submit()  # the submissions spread over the run are behind the workers: send one now
            time.sleep(0.1)
        raise RuntimeError("deadline reached while waiting for a running job")

    def kill(self, need_checkpoint: bool) -> bool:
        """SIGKILL a worker that runs a job (waiting for one); False when every job has already ended."""
        target = self.busy_worker(need_checkpoint)
        if target is None:
            return False
        job_id, worker_id, attempt, _, where = target
        node = worker_id.split("@")[0]
        proc = self.cluster.workers.pop(node)
        proc.kill()
        self.report.kills.append(Kill(self.now(), node, job_id, attempt, where))
        replacement = self.cluster.start_worker()
        self.log(
            f"kill -9 {node} (running job {job_id} attempt {attempt}, {where}); started {replacement.name}"
        )
        return True

    def graceful_stop(self) -> bool:
        """SIGTERM the main process of a worker that runs a job, as ``docker stop`` does, and wait for it
        to exit; then check that its job was handed back without consuming the attempt."""
        target = self.busy_worker(need_checkpoint=False)
        if target is None:
            return False
        job_id, worker_id, attempt, _, where = target
        node = worker_id.split("@")[0]
        proc = self.cluster.workers.pop(node)
        with transaction(self.sessions) as session:
            marker = session.scalar(select(func.max(JobEvent.id)).where(JobEvent.job_id == job_id)) or 0
        sent = time.monotonic()
        os.kill(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=self.config.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.log(f"{node} did not exit {self.config.stop_timeout_s:.0f}s after SIGTERM; killing it")
            proc.kill()
        exited = time.monotonic() - sent
        with transaction(self.sessions) as session:
            later = session.scalars(
                select(JobEvent.data).where(
                    JobEvent.job_id == job_id, JobEvent.kind == "state", JobEvent.id > marker
                )
            ).all()
        handed_back = any(data.get("interrupted") for data in later)
        ended = any(data.get("state") in TERMINAL for data in later)
        stop = GracefulStop(self.now(), node, job_id, attempt, where, exited, handed_back, ended)
        self.report.graceful_stops.append(stop)
        replacement = self.cluster.start_worker()
        outcome = "handed back" if handed_back else "had ended" if ended else "LOST THE ATTEMPT"
        self.log(
            f"SIGTERM {node} (running job {job_id} attempt {attempt}, {where}); exited after {exited:.1f}s, "
            f"job {outcome}; started {replacement.name}"
        )
        return True

    def restart_redis(self) -> None:
        assert self.cluster.redis is not None
        self.cluster.redis.kill()
        outage = self.rng.uniform(*self.config.outage_s)
        self.log(f"kill -9 redis-server; every queued message is gone; down for {outage:.1f}s")
        time.sleep(outage)
        self.cluster.start_redis()
        self.report.redis_restarts.append(self.now())
        self.log("redis-server is back (empty) on the same port")

    def restart_api(self) -> None:
        assert self.cluster.api is not None
        self.cluster.api.kill()
        outage = self.rng.uniform(*self.config.outage_s)
        self.log(f"kill -9 the API; down for {outage:.1f}s")
        time.sleep(outage)
        self.cluster.start_api()
        self.report.api_restarts.append(self.now())
        self.log("the API is back on the same port")

    # -- the whole run ------------------------------------------------------------------------------------
    def execute(self) -> ChaosReport:
        self.start()
        initial = max(1, (self.config.jobs + 1) // 2)
        for _ in range(initial):
            self.submit()
        actions = self.plan()
        later = self.config.jobs - initial
        kills_done = 0
        for number, action in enumerate(actions):
            time.sleep(self.rng.uniform(*self.config.pause_s))
            if action == "kill":
                if not self.kill(need_checkpoint=kills_done == 0):
                    self.log(f"every job has ended; {self.config.kills - kills_done} kills not done")
                    break
                kills_done += 1
            elif action == "stop":
                if not self.graceful_stop():
                    self.log("every job has ended; a graceful stop not done")
            elif action == "redis":
                self.restart_redis()
            else:
                self.restart_api()
            # The remaining submissions are spread over the actions, so restarts meet submissions.
            due = (number + 1) * later // len(actions) - number * later // len(actions)
            for _ in range(min(due, self.config.jobs - len(self.submitted))):
                self.submit()
        while len(self.submitted) < self.config.jobs:
            self.submit()
        self.log("chaos over; waiting for every job to end")
        with contextlib.suppress(RuntimeError):  # a job still running at the deadline is reported as lost
            wait_until(self.all_terminal, max(1.0, self.deadline - time.monotonic()), "every job", 0.5)
        self.report.jobs = [self.outcome(job_id) for job_id in self.submitted]
        self.report.duplicate_deliveries = sum(
            proc.log().count(DUPLICATE_DELIVERY_LINE) for proc in self.cluster.procs
        )
        self.report.elapsed_s = self.now()
        return self.report

    # -- checks -------------------------------------------------------------------------------------------
    def outcome(self, job_id: str) -> JobOutcome:
        assert self.client is not None
        client = self.client
        try:
            job: ApiJob = retrying(lambda: client.get_job(job_id), self.deadline + 60, "get job")
        except ApiError:
            return JobOutcome(job_id, "missing", 0)
        events = retrying(lambda: list(client.events(job_id, follow=False)), self.deadline + 60, "events")
        claims = {e.attempt: e.id for e in events if e.kind == "state" and e.data.get("state") == "running"}
        overlapping = sum(
            1 for e in events if any(b > e.attempt and claim < e.id for b, claim in claims.items())
        )
        successes = sum(1 for e in events if e.kind == "state" and e.data.get("state") == "succeeded")
        resumes, stale = [], []
        logged = 0  # the newest checkpoint an earlier attempt logged as referenced
        for e in events:
            if e.kind == "phase" and isinstance(e.data.get("resumed_from"), dict):
                r = e.data["resumed_from"]
                resume = Resume(e.attempt, int(r["epoch"]), int(r["step"]), int(r["global_step"]))
                resumes.append(resume)
                if resume.global_step < logged:
                    stale.append(f"attempt {e.attempt} resumed at step {resume.global_step} < {logged}")
            elif e.kind == "log":
                for line in e.data.get("lines", []):
                    match = CHECKPOINT_LINE.search(line)
                    if match:
                        logged = max(logged, int(match.group(1)))
        problems: tuple[str, ...] = ()
        if job.state == "succeeded":
            problems = tuple(self.verify(job_id))
        return JobOutcome(
            job_id,
            job.state,
            job.attempt,
            job.error_type,
            tuple(resumes),
            successes,
            overlapping,
            tuple(stale),
            problems,
        )

    def verify(self, job_id: str) -> list[str]:
        assert self.client is not None
        client = self.client
        directory = self.cluster.workdir / "downloads" / job_id
        directory.mkdir(parents=True, exist_ok=True)
        try:
            artifacts = retrying(lambda: client.artifacts(job_id), self.deadline + 60, "artifacts")
            listed = {a.name: a for a in artifacts}
            for artifact in artifacts:  # checked against the listed sha256 and size by the client
                client.download_artifact(job_id, artifact.name, directory, artifact=artifact)
        except ClientError as exc:
            return [f"download: {exc}"]
        return verify_export(directory, {name: a.sha256 for name, a in listed.items()})


def verify_export(directory: Path, listed: dict[str, str]) -> list[str]:
    """What is wrong with the exported model in ``directory`` (empty: it verifies)."""
    missing = [n for n in (MANIFEST_FILE, CHECKPOINT_FILE, MASKS_FILE, COMPRESSED_FILE) if n not in listed]
    if missing:
        return [f"missing artifacts: {', '.join(missing)}"]
    problems = []
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    for entry in manifest["files"]:
        path = directory / entry["name"]
        if sha256_file(path) != entry["sha256"] or path.stat().st_size != entry["size"]:
            problems.append(f"{entry['name']} does not match the manifest's digest")
        if listed.get(entry["name"]) != entry["sha256"]:
            problems.append(f"{entry['name']}: the API lists another digest than the manifest")
    pattern = NMPattern(int(manifest["pattern"]["n"]), int(manifest["pattern"]["m"]))
    weights = load_file(directory / CHECKPOINT_FILE)
    masks = load_masks(directory / MASKS_FILE)
    layers = manifest["layers"]
    if not layers or not manifest["verified"]:
        problems.append("the manifest verifies no sparsified layer")
    for layer in layers:
        weight = weights[f"{layer['name']}.weight"]
        if not layer["verified_nm"] or count_violations(weight, pattern) != 0:
            problems.append(f"{layer['name']} is not {pattern}")
        mask = masks.get(layer["name"])
        if mask is None or bool((weight[~mask.bool().reshape(weight.shape)] != 0).any()):
            problems.append(f"{layer['name']} has weights outside its mask")
    rebuilt = rebuild_model(directory / MANIFEST_FILE, directory / COMPRESSED_FILE).state_dict()
    for name, tensor in weights.items():
        if name in rebuilt and not bool((rebuilt[name].cpu() == tensor).all()):
            problems.append(f"{name}: the compressed form rebuilds other weights")
    return problems


# -- reporting ------------------------------------------------------------------------------------------
def render(report: ChaosReport) -> str:
    config, jobs = report.config, report.jobs
    resumed = [job for job in jobs if job.resumes]
    lines = [
        "",
        f"{'job':<34} {'state':<10} {'attempts':>8}  {'done':>4}  resumed from (attempt: checkpoint)",
    ]
    for job in jobs:
        where = "; ".join(str(r) for r in job.resumes) or "-"
        state = job.state + ("*" if job.problems else "")
        lines.append(f"{job.id:<34} {state:<10} {job.attempts:>8}  {job.successes:>4}  {where}")
    rows = [
        ("jobs submitted", len(jobs)),
        ("worker kills (SIGKILL, job running)", len(report.kills)),
        ("redis restarts", len(report.redis_restarts)),
        ("api restarts", len(report.api_restarts)),
        ("graceful stops (SIGTERM, job running)", len(report.graceful_stops)),
        ("  jobs handed back by them", sum(1 for stop in report.graceful_stops if stop.handed_back)),
        (
            "  attempts they consumed",
            sum(1 for stop in report.graceful_stops if stop.consumed_an_attempt),
        ),
        (
            "  slowest stop, SIGTERM -> exited (s)",
            f"{max((stop.exited_after_s for stop in report.graceful_stops), default=0.0):.1f}",
        ),
        ("jobs resumed from a checkpoint", len(resumed)),
        ("resumes (attempts continuing a checkpoint)", sum(len(job.resumes) for job in jobs)),
        ("resumes from a checkpoint past step 0", sum(1 for j in jobs for r in j.resumes if r.global_step)),
        ("stale resumes (older than a logged checkpoint)", sum(len(job.stale_resumes) for job in jobs)),
        ("duplicates (completed twice / two owners)", report.count(lambda j: j.duplicated)),
        ("lost (missing or not terminal)", report.count(lambda j: j.lost)),
        ("succeeded", report.count(lambda j: j.state == "succeeded")),
        (
            "failed: worker_lost after max attempts",
            report.count(lambda j: j.state == "failed") - report.count(lambda j: j.unexpected_failure),
        ),
        ("failed: any other reason", report.count(lambda j: j.unexpected_failure)),
        (
            "artifacts verified (succeeded jobs)",
            report.count(lambda j: j.state == "succeeded" and not j.problems),
        ),
        ("artifact verification failures", report.count(lambda j: bool(j.problems))),
        ("duplicate deliveries absorbed by the claim", report.duplicate_deliveries),
        ("total attempts", sum(job.attempts for job in jobs)),
        ("wall time (s)", f"{report.elapsed_s:.1f}"),
    ]
    lines.append("")
    lines.extend(f"{name:<48} {value:>8}" for name, value in rows)
    lines.append("")
    lines.append(f"seed {config.seed}; " + ("PASS" if not report.failures else "FAIL"))
    lines.extend(f"  {failure}" for failure in report.failures)
    return "\n".join(lines)


def describe(report: ChaosReport) -> str:
    lines = ["commands:"]
    lines.extend(f"  {command}" for command in report.commands)
    lines.append("settings:")
    lines.extend(f"  {k}={v}" for k, v in sorted(report.environment.items()) if k != "LBC_DATABASE_URL")
    lines.append(f"  LBC_DATABASE_URL={make_url(report.environment['LBC_DATABASE_URL'])!s}")
    lines.append(f"job spec: {json.dumps(report.config.spec(0))}")
    return "\n".join(lines)


@contextlib.contextmanager
def cluster(config: ChaosConfig, workdir: Path, say: Callable[[str], None]) -> Iterator[Cluster]:
    running = Cluster(config, workdir, say)
    try:
        yield running
    finally:
        running.close()


def run_chaos(config: ChaosConfig, workdir: Path, say: Callable[[str], None] = print) -> ChaosReport:
    """Start everything under ``workdir``, run the chaos, check every job; stops every process it started."""
    with cluster(config, workdir, say) as running:
        chaos = ChaosRun(config, running, say)
        try:
            return chaos.execute()
        finally:
            if chaos.client is not None:
                chaos.client.close()
            chaos.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = ChaosConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--redis-restarts", type=int, default=defaults.redis_restarts)
    parser.add_argument("--api-restarts", type=int, default=defaults.api_restarts)
    parser.add_argument("--graceful-stops", type=int, default=defaults.graceful_stops)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts)
    parser.add_argument("--lease", type=float, default=defaults.lease_s, help="LBC_LEASE_SECONDS")
    parser.add_argument("--deadline", type=float, default=defaults.deadline_s, help="seconds for the run")
    parser.add_argument("--pg-admin-url", default=defaults.pg_admin_url)
    parser.add_argument("--keep", action="store_true", help="keep the logs and downloads directory")
    args = parser.parse_args(argv)
    if (
        min(args.jobs, args.workers) < 1
        or min(args.kills, args.redis_restarts, args.api_restarts, args.graceful_stops) < 0
    ):
        parser.error("--jobs and --workers must be >= 1; --kills, restarts and stops >= 0")
    config = replace(
        defaults,
        jobs=args.jobs,
        workers=args.workers,
        kills=args.kills,
        redis_restarts=args.redis_restarts,
        api_restarts=args.api_restarts,
        graceful_stops=args.graceful_stops,
        seed=args.seed,
        epochs=args.epochs,
        max_attempts=args.max_attempts,
        lease_s=args.lease,
        deadline_s=args.deadline,
        pg_admin_url=args.pg_admin_url,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lbc-chaos-"))
    report: ChaosReport | None = None
    try:
        report = run_chaos(config, workdir, lambda line: print(line, flush=True))
    finally:
        if report is not None:
            print(describe(report))
            print(render(report))
        if args.keep or report is None or report.failures:
            print(f"logs: {workdir / 'logs'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
