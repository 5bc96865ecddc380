"""The embedded default, started the way a user starts it: ``lbc serve --home DIR --port PORT``.

One command: SQLite, a local object store and the SQLite broker under DIR, the API, a worker and the
reaper's scheduler as child processes; Ctrl-C stops all of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jobs import repository
from jobs.db import make_engine, make_session_factory, transaction
from jobs.models import Job, JobEvent
from tests.integration.support import Process, Processes, free_port, wait_for

pytestmark = pytest.mark.timeout(240)

SPEC = {
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 600},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 64},
}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(server: Process, sig: int) -> None:
    children = children_of(server.pid)
    assert len(children) == 3, children  # api, worker, beat
    grandchildren = [g for c in children for g in children_of(c)]
    os.kill(server.pid, sig)  # what Ctrl-C in the terminal does: serve alone, it stops the others
    assert server.popen.wait(timeout=60) == 0, server.log()
    assert "lbc serve: stopped" in server.log()
    wait_for(lambda: not any(alive(pid) for pid in children + grandchildren), 10, "the children to exit")


def test_serve_runs_a_job_end_to_end_and_stops_cleanly_on_ctrl_c(
    processes: Processes, tmp_path: Path
) -> None:
    home, port = tmp_path / "home", free_port()
    server = processes.start("serve", "serve", "--home", str(home), "--port", str(port))

    found = wait_for(
        lambda: re.search(rf"open http://127\.0\.0\.1:{port}/#key=(lbc_[A-Za-z0-9_-]+)", server.log()),
        60,
        "the key and URL to be printed",
    )
    key = found.group(1)
    wait_for(lambda: "lbc serve: ready" in server.log(), 120, "the server to be ready")
    key_file = home / "local-key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in server.log()

    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        assert client.get("/v1/jobs").status_code == 200
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        response = client.post("/v1/jobs", json=SPEC)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]

        job = wait_for(
            lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("succeeded", "failed") and j,
            120,
            "the job to finish",
        )
        assert job["state"] == "succeeded", job
        listing = client.get(f"/v1/jobs/{job_id}/artifacts").json()
        items = {item["name"]: item for item in (listing["items"] if isinstance(listing, dict) else listing)}
        download = client.get(f"/v1/jobs/{job_id}/artifacts/model.safetensors")
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == items["model.safetensors"]["sha256"]

    stop(server, signal.SIGINT)
    assert (home / "lbc.db").exists() and (home / "objects").is_dir() and (home / "broker.db").exists()

    # A restart keeps the key: nothing new is printed, the old key still works, SIGTERM stops it too.
    again = processes.start("serve-again", "serve", "--home", str(home), "--port", str(port))
    wait_for(lambda: "lbc serve: ready" in again.log(), 120, "the restarted server to be ready")
    assert key not in again.log() and "using the local admin API key saved in" in again.log()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
    stop(again, signal.SIGTERM)


def test_children_do_not_outlive_a_killed_serve(processes: Processes, tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    server = processes.start("serve", "serve", "--home", str(home), "--port", str(port))
    wait_for(lambda: "lbc serve: ready" in server.log(), 120, "the server to be ready")
    children = children_of(server.pid)
    assert len(children) == 3, children
    os.kill(server.pid, signal.SIGKILL)  # no chance to clean up: the kernel must stop the children
    server.popen.wait(timeout=10)
    wait_for(lambda: not any(alive(pid) for pid in children), 30, "the orphaned children to exit")


# -- clean stops, SIGKILL, a second serve -----------------------------------------------------------------
# Long enough that a stop sent after the first checkpoint always lands mid-training, even on a quiet machine
# where an epoch (40 steps) takes a fraction of a second; short enough to finish quickly after the restart.
TRAINING = {
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 800},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 30, "batch_size": 16, "lr": 0.05},
    "benchmark": {"enabled": False},
}
FAST_STOP = {  # the default lease (60 s) stays: a job handed back must not wait for it
    "LBC_HEARTBEAT_SECONDS": "0.5",
    "LBC_PROGRESS_INTERVAL_SECONDS": "0.2",
    "LBC_SHUTDOWN_GRACE_SECONDS": "20",
}


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Home:
    """The embedded database of one serve home, read directly (the API may be stopped)."""

    path: Path

    def __post_init__(self) -> None:
        self.engine = make_engine(f"sqlite:///{self.path / 'lbc.db'}")
        self.sessions = make_session_factory(self.engine)

    def job(self, job_id: str) -> Job:
        with transaction(self.sessions) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def events(self, job_id: str, kind: str) -> list[JobEvent]:
        with transaction(self.sessions) as session:
            return repository.list_events(session, job_id, kinds=[kind], limit=100_000)


def start_serve(processes: Processes, name: str, home: Path, port: int, *extra: str) -> Process:
    server = processes.start(name, "serve", "--home", str(home), "--port", str(port), *extra, env=FAST_STOP)
    wait_for(lambda: "lbc serve: ready" in server.log(), 120, f"{name} to be ready")
    return server


def submit_training(home: Path, port: int) -> str:
    key = (home / "local-key").read_text().strip()
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/jobs",
        json=TRAINING,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_clean_stop_hands_the_running_job_back_without_costing_an_attempt(
    processes: Processes, tmp_path: Path, sig: int
) -> None:
    home, port = tmp_path / "home", free_port()
    server = start_serve(processes, "serve", home, port)
    db = Home(home)
    job_id = submit_training(home, port)
    wait_for(lambda: db.job(job_id).checkpoint_key, 120, "the first checkpoint")

    stop(server, sig)  # every process of the tree gone, exit 0

    job = db.job(job_id)
    assert (job.state, job.attempt, job.worker_id) == ("queued", 0, None), job.error_message
    assert job.checkpoint_key is not None and job.error_type is None
    requeued = [e.data for e in db.events(job_id, "state") if e.data.get("state") == "queued"]
    assert requeued[-1].get("interrupted") is True, requeued
    assert "interrupted by a worker shutdown" in requeued[-1]["reason"]
    lines = [line for e in db.events(job_id, "log") for line in e.data["lines"]]
    assert any("interrupted" in line and "not counted" in line for line in lines), lines[-5:]
    stopped_at = int(Path(job.checkpoint_key).stem)

    config = Path(processes.env["LBC_CONFIG"])
    written = config.read_bytes()
    config.write_text("{}")  # the user's own config: --keep-client-config must leave it alone
    again = start_serve(processes, "serve-again", home, port, "--keep-client-config")
    restarted = time.monotonic()
    job = wait_for(lambda: (j := db.job(job_id)).state != "queued" and j, 30, "the job to be claimed again")
    claimed_after = time.monotonic() - restarted
    job = wait_for(lambda: (j := db.job(job_id)).state in ("succeeded", "failed") and j, 180, "the job")

    assert job.state == "succeeded", job.error_message
    assert job.attempt == 1 and claimed_after < 20  # resumed at once, not after the 60 s lease
    resumed = [e.data["resumed_from"] for e in db.events(job_id, "phase") if "resumed_from" in e.data]
    assert len(resumed) == 1 and resumed[0]["global_step"] >= stopped_at > 0
    assert config.read_text() == "{}" and "client config left as it is" in again.log()
    assert written != b"{}"
    stop(again, signal.SIGTERM)
    db.engine.dispose()


def test_a_killed_serve_takes_the_process_running_the_job_with_it(
    processes: Processes, tmp_path: Path
) -> None:
    home, port = tmp_path / "home", free_port()
    server = start_serve(processes, "serve", home, port)
    db = Home(home)
    job_id = submit_training(home, port)
    wait_for(lambda: db.job(job_id).progress.get("global_step", 0) >= 3, 120, "training to start")
    job_process = int((db.job(job_id).worker_id or "").rsplit("/", 1)[1])
    tree = descendants(server.pid)
    assert job_process in tree and len(tree) >= 4, tree  # api, worker, its job process, beat

    os.kill(server.pid, signal.SIGKILL)  # no handler runs: the kernel must stop every process below it
    server.popen.wait(timeout=10)

    wait_for(lambda: not any(alive(pid) for pid in tree), 40, "every process of the killed serve to exit")
    job = db.job(job_id)  # the job process got SIGTERM from the kernel: the same clean hand-back
    assert (job.state, job.attempt) == ("queued", 0), (job.state, job.attempt, job.error_message)
    db.engine.dispose()


def test_a_second_serve_on_the_same_home_or_port_says_so_and_exits(
    processes: Processes, tmp_path: Path
) -> None:
    home, port = tmp_path / "home", free_port()
    first = start_serve(processes, "serve", home, port)

    same_home = processes.start("same-home", "serve", "--home", str(home), "--port", str(free_port()))
    same_port = processes.start("same-port", "serve", "--home", str(tmp_path / "other"), "--port", str(port))

    assert same_home.popen.wait(timeout=60) == 1
    assert f"another lbc serve (pid {first.pid}, http://127.0.0.1:{port}) is already running" in (
        same_home.log()
    )
    assert "lbc serve: ready" not in same_home.log()
    assert same_port.popen.wait(timeout=60) == 1
    assert (
        f"cannot listen on 127.0.0.1:{port}" in same_port.log() and "lbc serve: ready" not in same_port.log()
    )
    assert first.alive()
    stop(first, signal.SIGTERM)
