"""The service commands of ``lbc``: migrate, keys create, the help of every process command, the
local key of ``lbc serve``, and ``lbc api --workers``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from api.app import create_app
from cli.service import (
    SERVE_LOCK_FILE,
    ServeConflict,
    celery_worker_argv,
    check_port_free,
    ensure_local_key,
    lock_home,
    make_home,
    parse_queues,
)
from jobs import auth
from jobs.db import make_engine, make_session_factory, transaction
from jobs.migrate import current_revision, head_revision, upgrade
from jobs.settings import Settings

LBC = str(Path(sys.executable).with_name("lbc"))


def lbc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LBC_")}
    return subprocess.run(
        [LBC, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    ["api", "worker", "beat", "migrate", "serve", "keys", "keys create", "keys list", "keys revoke"],
)
def test_every_service_command_has_help(command: str) -> None:
    result = lbc(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: lbc {command}")


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    env = {"LBC_HOME": str(tmp_path / "home")}
    first, second = lbc("migrate", env=env), lbc("migrate", env=env)

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert current_revision(f"sqlite:///{tmp_path / 'home' / 'lbc.db'}") == head_revision()
    assert "up to date" in first.stdout


def test_migrate_on_postgresql(empty_postgres_url: str) -> None:
    result = lbc("migrate", env={"LBC_DATABASE_URL": empty_postgres_url})

    assert result.returncode == 0, result.stderr
    assert current_revision(empty_postgres_url) == head_revision()
    assert "password" not in result.stdout.lower() or "***" in result.stdout


def test_keys_create_prints_a_key_that_authenticates(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'lbc.db'}"
    upgrade(database_url)
    env = {"LBC_DATABASE_URL": database_url, "LBC_HOME": str(tmp_path)}

    admin = lbc("keys", "create", "--name", "ops", "--admin", env=env)
    user = lbc("keys", "create", "--name", "ci", "--owner", "team-a", env=env)

    assert admin.returncode == 0 and user.returncode == 0, admin.stderr + user.stderr
    admin_key, user_key = admin.stdout.strip(), user.stdout.strip()
    assert admin_key.startswith("lbc_") and "\n" not in admin_key and admin_key != user_key
    assert "not shown again" in admin.stderr
    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            ops, team = auth.authenticate(session, admin_key), auth.authenticate(session, user_key)
            assert (ops.name, ops.is_admin) == ("ops", True)
            assert (team.name, team.is_admin) == ("team-a", False)
    finally:
        engine.dispose()
    app = create_app(Settings(home=tmp_path, database_url=database_url))

    async def status(key: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lbc.test") as client:
            return (await client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})).status_code

    try:
        assert anyio.run(status, user_key) == 200
        assert anyio.run(status, "lbc_nope") == 401
    finally:
        app.state.engine.dispose()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        # An empty --owner used to fall back to the key's name without a word.
        (["--name", "ci", "--owner", ""], "owner name: must not be empty"),
        (["--name", " ", "--owner", "team-a"], "key name: must not be empty"),
        # A long --name was reported as a problem of the owner name (the owner defaults to it).
        (["--name", "n" * 201], "key name: must be at most 200 characters, got 201"),
    ],
)
def test_keys_create_refuses_bad_names_naming_the_right_one_and_exits_2(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'lbc.db'}"
    upgrade(database_url)
    env = {"LBC_DATABASE_URL": database_url, "LBC_HOME": str(tmp_path)}
    result = lbc("keys", "create", *arguments, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"lbc keys create: error: {message}\n" and result.stdout == ""
    listed = lbc("keys", "list", env=env)
    assert listed.returncode == 0 and listed.stderr == "no API keys\n"  # nothing was stored


@pytest.mark.parametrize("action", ["create --name x", "list", "revoke lbc_abc"])
def test_keys_commands_say_in_one_line_that_there_is_no_database(tmp_path: Path, action: str) -> None:
    missing = lbc("keys", *action.split(), "--home", str(tmp_path / "nowhere"))
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr == (
        f"lbc keys {action.split()[0]}: error: no service home at {tmp_path / 'nowhere'}: pass --home DIR "
        "(or set LBC_HOME) to the directory `lbc serve` uses\n"
    )
    assert not (tmp_path / "nowhere").exists()

    empty = lbc("keys", *action.split(), env={"LBC_HOME": str(tmp_path)})  # LBC_HOME works as --home
    assert empty.returncode == 2, empty.stderr
    assert empty.stderr.count("\n") == 1 and "no service database in" in empty.stderr, empty.stderr
    assert "`lbc migrate`" in empty.stderr and empty.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_keys_list_shows_keys_without_secrets_and_revoke_makes_a_key_401(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home)
    upgrade(settings.database_url)
    ops = lbc("keys", "create", "--name", "ops", "--admin", "--home", str(home)).stdout.strip()
    ci = lbc("keys", "create", "--name", "ci", "--owner", "team-a", "--home", str(home)).stdout.strip()
    assert ops.startswith("lbc_") and ci.startswith("lbc_")

    table = lbc("keys", "list", "--home", str(home))
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "PREFIX", "NAME", "OWNER", "ADMIN", "CREATED", "LAST", "USED", "REVOKED"]
    assert [row.split()[2:5] for row in rows] == [["ops", "ops", "yes"], ["ci", "team-a", "no"]]
    listed = json.loads(lbc("keys", "list", "--json", "--home", str(home)).stdout)
    assert [(k["name"], k["owner"], k["admin"], k["revoked_at"]) for k in listed] == [
        ("ops", "ops", True, None),
        ("ci", "team-a", False, None),
    ]
    assert ci.startswith(listed[1]["prefix"])
    for secret in (ops, ci, auth.digest(ops), auth.digest(ci)):  # neither a key nor its digest is shown
        assert secret not in table.stdout + json.dumps(listed)

    revoked = lbc("keys", "revoke", listed[1]["id"], "--home", str(home))
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == f"key {listed[1]['id']} ({listed[1]['prefix']}..., 'ci' of 'team-a') revoked\n"
    again = lbc("keys", "revoke", listed[1]["prefix"], "--home", str(home))  # by prefix, a second time
    assert again.returncode == 0 and "was already revoked" in again.stdout
    unknown = lbc("keys", "revoke", "lbc_nope", "--home", str(home))
    assert unknown.returncode == 4 and unknown.stderr.count("\n") == 1 and "lbc_nope" in unknown.stderr
    after = json.loads(lbc("keys", "list", "--json", "--home", str(home)).stdout)
    assert after[0]["revoked_at"] is None and after[1]["revoked_at"] is not None

    app = create_app(settings)

    async def answer(key: str) -> tuple[int, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lbc.test") as client:
            response = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
            return response.status_code, response.text

    try:
        assert anyio.run(answer, ops)[0] == 200
        status, body = anyio.run(answer, ci)
        assert status == 401 and "invalid or revoked API key" in body
    finally:
        app.state.engine.dispose()


def test_serve_keeps_one_local_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    upgrade(settings.database_url)

    token, created = ensure_local_key(settings)
    again, created_again = ensure_local_key(settings)

    assert created and not created_again and again == token
    key_file = tmp_path / "local-key"
    assert key_file.read_text().strip() == token
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # A database reset makes the stored key useless: a new one replaces it.
    (tmp_path / "lbc.db").unlink()
    upgrade(settings.database_url)
    replaced, created_new = ensure_local_key(settings)
    assert created_new and replaced != token


def test_serve_creates_its_home_readable_by_its_owner_only(tmp_path: Path) -> None:
    # The home holds the database, every upload and every artifact: created 0755 (the umask's default),
    # it let any local user read them around the API's keys.
    home = tmp_path / "a" / "home"
    make_home(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o750)
    make_home(mine)  # a directory the user made is left as they made it
    assert stat.S_IMODE(mine.stat().st_mode) == 0o750


def test_worker_runs_one_job_per_fresh_process_without_prefetch() -> None:
    argv = celery_worker_argv(["gpu", "cpu"], "w@%h", "INFO")
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "worker"
    assert options["--concurrency"] == "1" and options["--prefetch-multiplier"] == "1"
    assert options["--max-tasks-per-child"] == "1" and options["--pool"] == "prefork"
    assert options["--queues"] == "gpu,cpu" and options["--hostname"] == "w@%h"
    assert parse_queues(" gpu, cpu ,") == ["gpu", "cpu"]
    with pytest.raises(SystemExit):
        parse_queues(" , ")


def test_a_maintenance_only_worker_runs_the_reaper_in_its_main_process() -> None:
    argv = celery_worker_argv(["maintenance"], "m@%h", "INFO")
    assert argv[argv.index("--pool") + 1] == "solo" and "--max-tasks-per-child" not in argv
    mixed = celery_worker_argv(["gpu", "maintenance"], "w@%h", "INFO")
    assert mixed[mixed.index("--pool") + 1] == "prefork"


def _spawned_workers(pid: int) -> list[int]:
    """The uvicorn worker processes of ``lbc api`` (multiprocessing spawn children of its process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()  # not the resource tracker
    ]


@contextlib.contextmanager
def running_api(
    tmp_path: Path, env: dict[str, str], *args: str
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """``lbc api ARGS`` on a free port with only ``env``'s LBC_ variables, in its own process group:
    yields its URL once /healthz answers, the process and its log; stops the whole group afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("LBC_")}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [LBC, "api", *args, "--port", str(port)],
            env={**base, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the workers are stopped with it
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        ready = False
        while not ready and time.monotonic() < deadline and api.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            time.sleep(0.2)
        assert ready, log.read_text()
        yield url, api, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(api.pid, signal.SIGKILL)


def test_api_with_two_workers_runs_two_processes_that_answer_on_postgresql(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    env = {"LBC_DATABASE_URL": empty_postgres_url, "LBC_HOME": str(tmp_path)}
    assert lbc("migrate", env=env).returncode == 0
    key = lbc("keys", "create", "--name", "ci", env=env).stdout.strip()
    with running_api(tmp_path, env, "--workers", "2") as (url, api, log):
        # Every worker builds its app from the environment: each one reads the migrated database.
        deadline = time.monotonic() + 90
        while len(_spawned_workers(api.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_spawned_workers(api.pid)) == 2, log.read_text()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            answers = [client.get("/v1/jobs", headers={"Connection": "close"}) for _ in range(20)]
        assert {r.status_code for r in answers} == {200}, answers[0].text
        assert all(r.json()["items"] == [] for r in answers)
        assert httpx.get(f"{url}/v1/jobs", timeout=30).status_code == 401
    assert log.read_text().count("Application startup complete") == 2


def test_api_access_log_never_shows_a_key(tmp_path: Path) -> None:
    """A key sent in a query string (an old sign-in link, a careless script) is blanked out of the log."""
    home = tmp_path / "home"
    upgrade(Settings(home=home).database_url)
    secret = "lbc_" + "S3cr3t-value_" * 3
    with running_api(tmp_path, {"LBC_HOME": str(home)}) as (url, _, log):
        httpx.get(f"{url}/?key={secret}", timeout=10)
        httpx.get(f"{url}/v1/jobs?limit=1&api_key={secret}", timeout=10)
        httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        deadline = time.monotonic() + 60
        while log.read_text().count("HTTP/1.1") < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    text = log.read_text()
    assert (
        '"GET /?key=*** HTTP/1.1" 200' in text and '"GET /v1/jobs?limit=1&api_key=*** HTTP/1.1" 401' in text
    )
    assert "S3cr3t" not in text


def test_the_served_app_freezes_its_start_up_heap_and_a_test_app_does_not(tmp_path: Path) -> None:
    """``lbc api`` serves create_served_app, whose start-up objects the cyclic collector no longer walks
    on every full collection; create_app (what tests build, many per process) leaves the collector alone."""
    code = (
        "import gc, sys\n"
        "from api.app import create_app, create_served_app\n"
        "from jobs.settings import Settings\n"
        "settings = Settings(home=sys.argv[1])\n"
        "create_app(settings)\n"
        "plain = gc.get_freeze_count()\n"
        "create_served_app(settings)\n"
        "print(plain, gc.get_freeze_count())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBC_")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    plain, served = map(int, done.stdout.split())
    assert plain == 0 and served > 10_000  # the modules, the app and its routes: far more than a few


def test_api_refuses_fewer_than_one_worker() -> None:
    result = lbc("api", "--workers", "0")
    assert result.returncode != 0
    assert "--workers must be at least 1" in result.stderr


def _hold_lock(home: Path, pid: int) -> int:
    fd = os.open(home / SERVE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid} http://127.0.0.1:8123\n".encode())
    return fd


def test_a_home_held_by_a_live_serve_is_a_conflict_and_leftover_children_are_waited_for(
    tmp_path: Path,
) -> None:
    held = _hold_lock(tmp_path, os.getpid())  # a live lbc serve
    try:
        with pytest.raises(
            ServeConflict, match=rf"another lbc serve \(pid {os.getpid()}, http://127.0.0.1:8123\)"
        ):
            lock_home(tmp_path, "http://127.0.0.1:9000", wait_s=30)
    finally:
        os.close(held)

    dead_pid = subprocess.Popen(["true"])  # a pid that has exited: the serve was SIGKILLed
    dead_pid.wait()
    held = _hold_lock(tmp_path, dead_pid.pid)  # ... and its children still hold the inherited lock
    threading.Timer(0.5, os.close, (held,)).start()  # until they exit
    started = time.monotonic()
    fd = lock_home(tmp_path, "http://127.0.0.1:9000", wait_s=30)
    try:
        assert 0.4 < time.monotonic() - started < 10
        assert (tmp_path / SERVE_LOCK_FILE).read_text() == f"{os.getpid()} http://127.0.0.1:9000\n"
    finally:
        os.close(fd)


def test_a_port_in_use_is_refused_before_anything_starts() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ServeConflict, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again
