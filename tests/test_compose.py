"""docker-compose.yml is checked without Docker: each of our services runs a real ``lbc`` sub-command,
every ``LBC_*`` variable it sets is a real setting, health checks and dependencies are in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if "build" in service}
LONG_RUNNING = {name for name, service in SERVICES.items() if service.get("restart") != "no"}
LBC = str(Path(sys.executable).with_name("lbc"))


def test_the_deployment_has_every_part() -> None:
    assert {
        "postgres",
        "redis",
        "minio",
        "migrate",
        "api",
        "worker-gpu",
        "worker-maintenance",
        "beat",
    } <= set(SERVICES)
    assert OURS.keys() == {"migrate", "api", "worker-gpu", "worker-maintenance", "beat"}


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_service_runs_a_real_lbc_command(name: str) -> None:
    command = OURS[name]["command"]
    assert isinstance(command, list) and command[0] == "lbc", command
    result = subprocess.run([LBC, command[1], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in (arg.split("=")[0] for arg in command[2:] if arg.startswith("--")):
        assert flag in result.stdout, f"{name}: {flag} is not an option of `lbc {command[1]}`"


def test_worker_queues_cover_the_job_queues_and_the_reaper() -> None:
    consumed: set[str] = set()
    for service in OURS.values():
        command = service["command"]
        if command[1] == "worker":
            consumed |= set(command[command.index("--queues") + 1].split(","))
    assert {"gpu", "cpu", "maintenance"} <= consumed


def test_every_lbc_variable_is_a_setting() -> None:
    known = {f"LBC_{name.upper()}" for name in Settings.model_fields}
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}) or {}:
            if variable.startswith("LBC_"):
                assert variable in known, f"{name}: {variable} is not a Settings field"
    # And they parse: the values are what Settings accepts.
    environment = OURS["api"]["environment"]
    settings = Settings(**{k[4:].lower(): v for k, v in environment.items() if k.startswith("LBC_")})
    assert settings.storage_backend == "s3" and not settings.embedded
    assert settings.broker_url.startswith("redis://") and settings.database_url.startswith(
        "postgresql+psycopg://"
    )


def test_long_running_services_have_health_checks() -> None:
    for name in LONG_RUNNING - {"beat"}:  # beat has no probe; a restart policy covers it
        assert SERVICES[name].get("healthcheck", {}).get("test"), name


def test_dependencies_exist_and_wait_for_the_right_condition() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            wanted = (
                "service_completed_successfully"
                if SERVICES[dependency].get("restart") == "no"
                else "service_healthy"
            )
            assert condition["condition"] == wanted, (name, dependency)
            if wanted == "service_healthy":
                assert SERVICES[dependency].get("healthcheck"), dependency
    assert OURS["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_gpu_worker_reserves_one_gpu() -> None:
    devices = OURS["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_the_worker_health_check_finds_the_celery_app() -> None:
    # `celery -A worker.celery_app` looks up the module's `app`; it is built on first access.
    code = (
        "import worker.celery_app as m, jobs.queue as q; "
        "app = m.app; assert {q.RUN_JOB_TASK, q.REAP_TASK} <= set(app.tasks), sorted(app.tasks)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
