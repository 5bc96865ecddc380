"""Helpers of the integration tests: real ``lbc`` processes in their own process groups, polling waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

LBC = str(Path(sys.executable).with_name("lbc"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (httpx.HTTPError, OSError) as exc:  # a server still starting
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" ({last_error})" if last_error else "")
    )


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group (a Celery worker and its pool children): the machine is gone."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Processes:
    directory: Path
    env: dict[str, str]
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        log_path = self.directory / f"{len(self.started):02d}-{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [LBC, *args],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = Process(name, [LBC, *args], log_path, popen)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """SIGKILL every process group (a worker's pool children too) and reap the processes."""
        for process in self.started:
            process.signal_group(signal.SIGKILL)
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=10)

    def dump_logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.pid}, exit {p.popen.returncode}): {' '.join(p.argv)}\n{p.log()[-20000:]}"
            for p in self.started
        )


def clean_environment() -> dict[str, str]:
    """This environment without any LBC_* setting of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBC_")}
    env["PYTHONUNBUFFERED"] = "1"
    # `lbc serve` saves the client config; keep it away from the developer's own config file.
    env["LBC_CONFIG"] = os.path.join(tempfile.mkdtemp(prefix="lbc-config-"), "config.json")
    return env


def spawned_children(pid: int) -> list[int]:
    """Live processes that ``pid`` started with multiprocessing's spawn (the ranks of a multi-process job)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited meanwhile
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z" and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)
