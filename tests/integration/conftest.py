"""Real service processes for the integration tests: ``lbc api``, ``lbc worker``, ``lbc beat``, ``lbc serve``.

Every process runs in its own process group with its output in a log file; teardown kills every group
that is still alive, and a failed test prints the logs of every process it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Processes, clean_environment


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Processes]:
    directory = tmp_path / "logs"
    directory.mkdir()
    procs = Processes(directory, clean_environment())
    try:
        yield procs
    finally:
        procs.stop_all()
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed:
            print(procs.dump_logs())
