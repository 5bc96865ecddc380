"""A real embedded service for the client and CLI tests: ``lbc serve --home DIR --port PORT`` as a user
starts it (API, worker and scheduler processes), with the client config it writes kept under DIR."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.support import Process, Processes, clean_environment, free_port, wait_for

# A job that finishes in a few seconds on a CPU, and one that runs until it is cancelled.
QUICK_SPEC = {
    "name": "quick mlp",
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits", "limit": 600},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 2, "batch_size": 64},
}
LONG_SPEC = {
    "name": "long mlp",
    "model": {"architecture": "mlp"},
    "dataset": {"source": "digits"},
    "sparsity": {"method": "lbc", "n": 2, "m": 4},
    "train": {"epochs": 500, "batch_size": 32},
}
# Fails on the worker (not at submission): the time limit runs out during training.
FAILING_SPEC = {**LONG_SPEC, "name": "too slow", "limits": {"time_limit_s": 1}}


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    home: Path
    config_path: Path
    process: Process

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment whose client config is the one ``lbc serve`` wrote (no LBC_URL/LBC_API_KEY)."""
        return {**clean_environment(), "LBC_CONFIG": str(self.config_path), **extra}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _kill(server: Process, children: list[int]) -> None:
    """SIGKILL the API, worker and beat (each leads its own process group, which a kill of serve's group
    would miss) and then serve itself: the state is thrown away, so there is nothing to wait for.
    ``children`` were recorded at start, in case serve is gone already and they were re-parented."""
    for child in sorted(set(children) | set(_children(server.pid))):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signal.SIGKILL)
    server.kill()


@contextlib.contextmanager
def running_server(directory: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """Start ``lbc serve`` under ``directory``; print its log at the end if a test of the module failed."""
    logs = directory / "logs"
    logs.mkdir(parents=True)
    config_path = directory / "client-config.json"
    processes = Processes(logs, {**clean_environment(), "LBC_CONFIG": str(config_path)})
    home, port = directory / "home", free_port()
    failed_before = request.session.testsfailed
    process = processes.start("serve", "serve", "--home", str(home), "--port", str(port))
    children: list[int] = []
    try:
        wait_for(lambda: "lbc serve: ready" in process.log() or not process.alive(), 120, "lbc serve")
        assert process.alive(), process.log()
        children = _children(process.pid)
        yield Server(
            url=f"http://127.0.0.1:{port}",
            key=(home / "local-key").read_text().strip(),
            home=home,
            config_path=config_path,
            process=process,
        )
    finally:
        _kill(process, children)
        if request.session.testsfailed != failed_before:
            print(processes.dump_logs())
