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
from pathlib import Path

import httpx
import pytest

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
