"""The distributed mode for real: PostgreSQL, Redis as the broker, ``lbc api``, ``lbc worker`` and
``lbc beat`` as separate processes, a local-directory object store shared by them.

Short leases make the failure cases fast: a worker that stops heartbeating is noticed within ~5 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import torch
from safetensors.torch import load_file
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from jobs import auth, repository
from jobs.db import make_engine, make_session_factory, transaction
from jobs.migrate import upgrade
from jobs.models import Job, JobEvent
from jobs.spec import dump_spec, parse_spec
from lbc_core.sparsity import NMPattern, count_violations
from tests.integration.support import Process, Processes, free_port, spawned_children, wait_for

pytestmark = pytest.mark.timeout(240)

FAST: dict[str, Any] = {  # about a second of training
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 800},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.05},
}
MEDIUM: dict[str, Any] = {  # 180 steps per epoch (~0.5 s each on an idle 2-core machine), 2 checkpoints
    "model": {"architecture": "lenet5"},
    "dataset": {"source": "digits"},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 8, "lr": 0.05},
}
LONG: dict[str, Any] = {**MEDIUM, "train": {**MEDIUM["train"], "epochs": 50}}  # minutes, unless cancelled
LEASE_SECONDS = 4


@dataclass
class Stack:
    processes: Processes
    env: dict[str, str]
    sessions: sessionmaker[Session]
    token: str
    clients: list[httpx.Client] = field(default_factory=list)

    # -- processes ----------------------------------------------------------------------------------------
    def start(
        self, *, api: bool = False, workers: tuple[str, ...] = (), reaper: bool = False
    ) -> httpx.Client:
        """Start processes side by side, then wait until each is ready (the API answers, workers log 'ready')."""
        client = httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        self.clients.append(client)
        if api:
            port = free_port()
            self.processes.start("api", "api", "--port", str(port))
            client.base_url = httpx.URL(f"http://127.0.0.1:{port}")
        started = [self.start_worker(name, wait=False) for name in workers]
        if reaper:  # the maintenance worker that runs the reap task, and beat that sends it every second
            started.append(self.start_worker("maintenance", "maintenance", wait=False))
            self.processes.start("beat", "beat")
        if api:
            wait_for(lambda: client.get("/healthz").status_code == 200, 60, "the API to answer /healthz")
        for process in started:
            self.wait_ready(process)
        return client

    def start_worker(self, name: str, queues: str = "gpu,cpu", *, wait: bool = True) -> Process:
        process = self.processes.start(f"worker-{name}", "worker", "--queues", queues, "--name", f"{name}@%h")
        if wait:
            self.wait_ready(process)
        return process

    @staticmethod
    def wait_ready(process: Process) -> None:
        wait_for(lambda: " ready." in process.log(), 60, f"{process.name} to be ready", interval=0.1)

    # -- database -----------------------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        with transaction(self.sessions) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def events(self, job_id: str, kind: str) -> list[JobEvent]:
        with transaction(self.sessions) as session:
            return repository.list_events(session, job_id, kinds=[kind], limit=100_000)

    def wait_state(self, job_id: str, states: set[str], timeout: float) -> Job:
        def reached() -> Job | None:
            job = self.job(job_id)
            return job if job.state in states else None

        job: Job = wait_for(reached, timeout, f"job {job_id} to reach {states}")
        return job

    def insert_job(self, spec: dict[str, Any], *, max_attempts: int = 3) -> str:
        """A queued job row that no message announces (the broker lost it, or the API died after commit)."""
        parsed = parse_spec(spec)
        with transaction(self.sessions) as session:
            owner = auth.get_or_create_owner(session, "integration")
            job, _ = repository.create_job(
                session,
                owner=owner,
                spec=dump_spec(parsed),
                summary={
                    "method": "lbc",
                    "pattern": "2:4",
                    "architecture": parsed.model.architecture,
                    "queue": "gpu",
                },
                idempotency_key=None,
                max_attempts=max_attempts,
                max_active_jobs=100,
            )
            return job.id


@pytest.fixture
def stack(processes: Processes, empty_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()  # messages of an earlier test's jobs, whose database is gone
    env = {
        "LBC_HOME": str(tmp_path / "home"),
        "LBC_DATABASE_URL": empty_postgres_url,
        "LBC_BROKER_URL": redis_url,
        "LBC_STORAGE_PATH": str(tmp_path / "objects"),
        "LBC_LEASE_SECONDS": str(LEASE_SECONDS),
        "LBC_HEARTBEAT_SECONDS": "0.5",
        "LBC_REAPER_INTERVAL_SECONDS": "1",
        "LBC_QUEUED_RESEND_SECONDS": "3",
        "LBC_PROGRESS_INTERVAL_SECONDS": "0.2",
    }
    processes.env.update(env)
    upgrade(empty_postgres_url)  # `lbc migrate` itself is tested in tests/cli
    engine: Engine = make_engine(empty_postgres_url)
    with transaction(make_session_factory(engine)) as session:
        owner = auth.get_or_create_owner(session, "integration")
        _, token = auth.create_api_key(session, owner, "integration test")
    stack = Stack(processes, env, make_session_factory(engine), token)
    try:
        yield stack
    finally:
        for client in stack.clients:
            client.close()
        processes.stop_all()  # before the database is dropped under them
        engine.dispose()


def submit(client: httpx.Client, spec: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_submitted_job_runs_and_its_artifacts_download_intact(stack: Stack, tmp_path: Path) -> None:
    client = stack.start(api=True, workers=("w1",))

    job_id = submit(client, FAST)
    stack.wait_state(job_id, {"running", "succeeded"}, 30)
    job = stack.wait_state(job_id, {"succeeded", "failed"}, 60)

    assert job.state == "succeeded", job.error_message
    assert job.started_at and job.queued_at
    print(f"queued -> running: {(job.started_at - job.queued_at).total_seconds():.3f}s (Redis broker)")
    detail = client.get(f"/v1/jobs/{job_id}").json()
    assert detail["state"] == "succeeded" and detail["result"]["verified_nm"] is True
    listing = client.get(f"/v1/jobs/{job_id}/artifacts").json()
    items = listing["items"] if isinstance(listing, dict) else listing
    names = {item["name"]: item for item in items}
    assert {"model.safetensors", "masks.safetensors", "model.nm.safetensors", "manifest.json"} <= set(names)
    assert {"metrics.json", "job.log"} <= set(names)
    files: dict[str, Path] = {}
    for name, item in names.items():
        response = client.get(f"/v1/jobs/{job_id}/artifacts/{name}")
        assert response.status_code == 200, response.text
        assert hashlib.sha256(response.content).hexdigest() == item["sha256"], name
        assert len(response.content) == item["size"], name
        files[name] = tmp_path / name
        files[name].write_bytes(response.content)

    manifest = json.loads(files["manifest.json"].read_text())
    weights = load_file(files["model.safetensors"])
    sparse = [layer for layer in manifest["layers"] if layer["verified_nm"]]
    assert sparse
    for layer in sparse:
        weight = weights[f"{layer['name']}.weight"]
        assert count_violations(weight, NMPattern(2, 4)) == 0
        if weight.dim() == 2 and weight.shape[1] % 4 == 0:  # independently: groups of 4 along the input
            groups = weight.reshape(weight.shape[0], -1, 4)
            assert int((groups != 0).sum(dim=-1).max()) <= 2
    assert "job.log" in names and b"phase: uploading" in files["job.log"].read_bytes()
    # The speedup report (benchmark.enabled defaults to true), measured by the worker and served by the API.
    assert {"speedup_report.json", "speedup_report.html", "speedup_chart.svg"} <= set(names)
    report = client.get(f"/v1/jobs/{job_id}/report")
    assert report.status_code == 200, report.text
    assert report.content == files["speedup_report.json"].read_bytes()
    assert detail["result"]["speedup"]["verdict"] == report.json()["summary"]["verdict"]


def test_cancel_stops_a_running_job_within_seconds(stack: Stack) -> None:
    client = stack.start(api=True, workers=("w1",))
    job_id = submit(client, LONG)
    wait_for(lambda: stack.job(job_id).progress.get("global_step", 0) >= 5, 60, "training to start")

    asked = time.monotonic()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code in (200, 202), response.text
    job = stack.wait_state(job_id, {"cancelled", "succeeded", "failed"}, 30)

    took = time.monotonic() - asked
    print(f"cancel -> cancelled: {took:.2f}s")
    assert job.state == "cancelled" and took < 10
    assert job.checkpoint_key is not None  # the stop wrote and uploaded a checkpoint


def test_a_killed_worker_is_replaced_and_the_job_resumes_from_its_checkpoint(stack: Stack) -> None:
    client = stack.start(api=True, reaper=True)
    first = stack.start_worker("w1")
    job_id = submit(client, MEDIUM)
    checkpoint = wait_for(lambda: stack.job(job_id).checkpoint_key, 90, "the first checkpoint upload")

    first.kill()
    killed = time.monotonic()
    stack.start_worker("w2")
    wait_for(lambda: stack.job(job_id).attempt >= 2, 60, "the reaper to re-queue and another worker to claim")
    resumed_after = time.monotonic() - killed
    job = stack.wait_state(job_id, {"succeeded", "failed"}, 120)

    assert job.state == "succeeded", job.error_message
    assert job.attempt == 2
    print(f"kill -9 -> claimed by the second worker: {resumed_after:.2f}s (lease {LEASE_SECONDS}s)")
    requeued = [e.data for e in stack.events(job_id, "state") if e.data.get("state") == "queued"]
    assert any("stopped heartbeating" in data.get("reason", "") for data in requeued), requeued
    resumed = [e.data["resumed_from"] for e in stack.events(job_id, "phase") if "resumed_from" in e.data]
    assert len(resumed) == 1 and resumed[0]["global_step"] >= int(Path(checkpoint).stem) > 0
    assert job.result is not None and job.result["resumed_from"]["global_step"] == resumed[0]["global_step"]


def test_a_worker_stopped_with_sigterm_hands_its_job_back_without_costing_an_attempt(stack: Stack) -> None:
    """What `docker stop` or systemd does: SIGTERM to the worker's main process only. Celery's warm
    shutdown would wait for the job; the worker forwards the stop to the job's process, which writes a
    checkpoint and hands the job back, and the whole worker exits."""
    client = stack.start(api=True)
    first = stack.start_worker("w1")
    spec = {
        **FAST,
        "train": {**FAST["train"], "epochs": 8, "batch_size": 16},
        "benchmark": {"enabled": False},
    }
    job_id = submit(client, spec)
    checkpoint = wait_for(lambda: stack.job(job_id).checkpoint_key, 90, "the first checkpoint upload")
    job_process = int((stack.job(job_id).worker_id or "").rsplit("/", 1)[1])

    os.kill(first.pid, signal.SIGTERM)
    assert first.popen.wait(timeout=40) == 0, first.log()[-3000:]

    wait_for(lambda: not Path(f"/proc/{job_process}").exists(), 10, "the job's process to exit")
    job = stack.job(job_id)
    assert (job.state, job.attempt, job.worker_id) == ("queued", 0, None), job.error_message
    assert int(Path(job.checkpoint_key or "0.pt").stem) >= int(Path(checkpoint).stem)
    stack.start_worker("w2")  # the re-sent message: claimed at once, no reaper needed
    job = stack.wait_state(job_id, {"succeeded", "failed"}, 120)
    assert job.state == "succeeded" and job.attempt == 1, job.error_message
    assert job.result is not None and job.result["resumed_from"]["global_step"] > 0


def test_a_job_that_kills_its_worker_every_time_ends_failed(stack: Stack) -> None:
    """The poison pill: each attempt's process is SIGKILLed as soon as it claims the job (the pool child
    only, like the kernel's OOM killer would); after max_attempts the reaper fails it as worker_lost."""
    stack.start(workers=("w1",), reaper=True)
    job_id = stack.insert_job(MEDIUM, max_attempts=2)
    killed: set[int] = set()

    def kill_each_attempt() -> Job | None:
        job = stack.job(job_id)
        if job.state in ("running", "cancelling") and job.attempt not in killed and job.worker_id:
            pid = int(job.worker_id.rsplit("/", 1)[1])
            os.kill(pid, signal.SIGKILL)
            killed.add(job.attempt)
        return job if job.state in ("failed", "succeeded", "cancelled") else None

    job: Job = wait_for(kill_each_attempt, 90, "the job to give up")

    assert (job.state, job.error_type, job.attempt) == ("failed", "worker_lost", 2)
    assert killed == {1, 2}
    assert "gave up after 2 attempts" in (job.error_message or "")


def test_a_lost_message_is_sent_again_by_the_reaper(stack: Stack) -> None:
    stack.start(workers=("w1",), reaper=True)
    job_id = stack.insert_job(FAST)  # committed, but no message was ever sent

    job = stack.wait_state(job_id, {"succeeded", "failed"}, 60)

    assert job.state == "succeeded", job.error_message
    assert job.started_at is not None
    waited = (job.started_at - job.created_at).total_seconds()
    print(f"queued without a message -> claimed after {waited:.2f}s (resend after 3s)")
    assert waited >= 3
    with transaction(stack.sessions) as session:
        assert session.scalar(select(Job.attempt).where(Job.id == job_id)) == 1
    assert torch.cuda.is_available() or (job.result is not None and job.result["device"] == "cpu")


@pytest.mark.timeout(600)
def test_a_two_process_job_survives_a_killed_rank_and_leaves_no_process_behind(stack: Stack) -> None:
    """A job trained by 2 ranks (gloo): one rank is SIGKILLed after the first checkpoint. The attempt fails
    as a machine fault, the launcher stops the other rank, the job goes back to the queue and the next
    attempt resumes from the checkpoint on 2 new ranks and succeeds; no rank outlives its attempt."""
    # One thread per rank: two ranks with a thread per core each would oversubscribe this 2-core machine.
    # A longer lease: this test is about a rank that dies, not about heartbeats on a machine under load.
    stack.processes.env.update({"LBC_WORKER_THREADS": "1", "LBC_LEASE_SECONDS": "30"})
    client = stack.start(api=True, workers=("w1",), reaper=True)
    spec = {  # 16 steps per epoch
        "model": {"architecture": "mlp"},
        "dataset": {"source": "digits", "limit": 600},
        "sparsity": {"method": "lbc", "n": 2, "m": 4},
        "train": {"epochs": 3, "batch_size": 30, "lr": 0.05, "device": "cpu", "processes": 2},
        "benchmark": {"enabled": False},
    }
    job_id = submit(client, spec)
    checkpoint = wait_for(lambda: stack.job(job_id).checkpoint_key, 180, "the first checkpoint upload")
    job_process = int((stack.job(job_id).worker_id or "").rsplit("/", 1)[1])
    first_ranks = wait_for(lambda: spawned_children(job_process), 10, "the ranks of attempt 1")
    assert len(first_ranks) == 2

    os.kill(first_ranks[-1], signal.SIGKILL)
    wait_for(lambda: stack.job(job_id).attempt >= 2, 60, "the next attempt")
    job = stack.wait_state(job_id, {"succeeded", "failed"}, 240)

    assert job.state == "succeeded", job.error_message
    assert job.attempt == 2 and job.result is not None and job.result["verified_nm"] is True
    failures = [e.data for e in stack.events(job_id, "state") if e.data.get("state") == "queued"]
    assert any("died with signal SIGKILL" in data.get("reason", "") for data in failures), failures
    resumed = [e.data["resumed_from"] for e in stack.events(job_id, "phase") if "resumed_from" in e.data]
    assert len(resumed) == 1 and resumed[0]["global_step"] >= int(Path(checkpoint).stem) > 0
    assert job.progress["global_step"] == job.progress["total_steps"]  # nothing lost: every step was trained
    assert not any(Path(f"/proc/{pid}").exists() for pid in first_ranks)
    assert spawned_children(job_process) == []
