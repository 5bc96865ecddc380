"""A CI-sized chaos run (benchmarks/chaos.py): jobs train on real ``lbc`` processes while workers are
SIGKILLed or stopped gracefully, Redis is killed and restarted empty, and the API is killed and restarted.

The run's own checks are the specification: every job ends exactly once, nothing is lost, a killed
attempt's successor continues from the checkpoint, and every exported model verifies.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(420)


def _chaos_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_chaos", REPO / "benchmarks" / "chaos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_jobs_survive_worker_kills_and_redis_and_api_restarts(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    chaos = _chaos_module()
    config = chaos.ChaosConfig(
        jobs=4,
        workers=2,
        kills=4,
        redis_restarts=1,
        api_restarts=1,
        graceful_stops=3,
        seed=3,
        epochs=4,
        pause_s=(0.5, 1.5),
        outage_s=(0.5, 1.0),
        deadline_s=300.0,
        database_url=empty_postgres_url,
    )
    lines: list[str] = []

    report = chaos.run_chaos(config, tmp_path, lines.append)

    print("\n".join(lines))
    print(chaos.render(report))
    assert len(report.kills) == 4, "every kill found a worker running a job"
    assert len(report.redis_restarts) == 1 and len(report.api_restarts) == 1
    assert len(report.graceful_stops) == 3, "every graceful stop found a worker running a job"
    assert not any(stop.consumed_an_attempt for stop in report.graceful_stops)  # also in report.failures
    assert any(stop.handed_back for stop in report.graceful_stops)
    assert [job.state for job in report.jobs] == ["succeeded"] * 4, "attempts were not exhausted"
    assert report.failures == []  # none lost or duplicated, no stale resume, every artifact verifies
    assert all(job.successes == 1 and job.overlapping_writes == 0 for job in report.jobs)
    assert all(not job.problems for job in report.jobs)
    assert any(r.global_step > 0 for job in report.jobs for r in job.resumes), "no resume from a checkpoint"
    # Each killed attempt was followed by another one (lost leases of a starved worker may add more).
    assert sum(job.attempts for job in report.jobs) >= len(report.jobs) + len(report.kills)
