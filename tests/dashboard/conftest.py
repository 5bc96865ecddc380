"""The dashboard under test: a real ``lbc serve`` (API, worker, scheduler) and Debian's Chromium,
driven by Playwright with ``executable_path`` (never a browser that Playwright downloads).

Without Chromium or Playwright the browser tests are skipped on a laptop but fail when ``CI`` is set.
Screenshots go to ``$LBC_TEST_ARTIFACTS/dashboard`` (default ``test-artifacts/dashboard``, git-ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The API tests' app fixtures, for the endpoint tests of this folder (imported, not copied).
from tests.api.conftest import app_factory, migrated_sqlite_template, service
from tests.integration.support import Process, Processes, clean_environment, free_port, wait_for

__all__ = ["app_factory", "migrated_sqlite_template", "service"]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is an error, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    base = os.environ.get("LBC_TEST_ARTIFACTS")
    directory = (Path(base) if base else ROOT / "test-artifacts") / "dashboard"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class Server:
    base_url: str
    link: str  # the sign-in link `lbc serve` printed
    key: str
    home: Path
    env: dict[str, str]
    process: Process
    processes: Processes
    notes: dict[str, Any] = field(default_factory=dict)  # what one test leaves for the next


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lbc serve --home TMP --port FREE``, started once for the module, as a user starts it."""
    root = tmp_path_factory.mktemp("dashboard")
    logs = root / "logs"
    logs.mkdir()
    home, port = root / "home", free_port()
    # LBC_CONFIG: the client config `lbc serve` writes stays in the test's directory.
    env = {**clean_environment(), "LBC_CONFIG": str(root / "client-config.json")}
    processes = Processes(logs, env)
    failed_before = request.session.testsfailed
    try:
        process = processes.start("serve", "serve", "--home", str(home), "--port", str(port))
        found = wait_for(
            lambda: re.search(rf"open (http://127\.0\.0\.1:{port}/#key=(lbc_[A-Za-z0-9_-]+))", process.log()),
            60,
            "the sign-in link to be printed",
            interval=0.1,
        )
        wait_for(lambda: "lbc serve: ready" in process.log(), 120, "the server to be ready", interval=0.1)
        yield Server(
            base_url=f"http://127.0.0.1:{port}",
            link=found.group(1),
            key=found.group(2),
            home=home,
            env={**env, "LBC_HOME": str(home)},
            process=process,
            processes=processes,
        )
    finally:
        processes.stop_all()
        if request.session.testsfailed > failed_before:
            print(processes.dump_logs())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; never `playwright install`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageProblems:
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any, artifacts_dir: Path) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage) at a laptop's size; uncaught page errors fail the test,
    and a failed test leaves a screenshot."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems = PageProblems()
    tab.on("pageerror", lambda exc: problems.errors.append(f"uncaught: {exc}"))
    tab.on(
        "console",
        lambda message: (
            problems.errors.append(f"console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    failed_before = request.session.testsfailed
    try:
        yield tab
        assert not problems.errors, problems.errors
    finally:
        if request.session.testsfailed > failed_before:
            tab.screenshot(path=str(artifacts_dir / f"FAILED-{request.node.name}.png"), full_page=True)
        context.close()
