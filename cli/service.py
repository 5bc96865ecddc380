"""The service's processes: ``lbc api``, ``lbc worker``, ``lbc beat``, ``lbc migrate`` and ``lbc serve``.

Each reads its configuration from ``LBC_*`` environment variables (``jobs.settings.Settings``); flags
only override a few of them. ``lbc serve`` is the embedded default: one command, all state under one
home directory, the API, a worker and the reaper's scheduler as child processes.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [%(context)s] %(message)s"
LOCAL_KEY_FILE = "local-key"
LOCAL_OWNER = "local"
SERVE_LOCK_FILE = "serve.lock"
EXIT_CONFLICT = 1


def register(commands: Any) -> None:
    api = commands.add_parser("api", help="run the HTTP API (uvicorn)", description=_doc(run_api))
    api.add_argument("--host", help="bind address (default: LBC_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default: LBC_API_PORT, 8000)")
    api.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes, each with its own database pool (default 1); "
        "/metrics then answers for one process per scrape",
    )
    api.set_defaults(handler=run_api)

    worker = commands.add_parser(
        "worker", help="run a Celery worker that executes jobs", description=_doc(run_worker)
    )
    worker.add_argument(
        "--queues",
        help="comma-separated queues to consume (default: every job queue, LBC_GPU_QUEUES and LBC_CPU_QUEUES, "
        "and maintenance, which runs the reaper's task)",
    )
    worker.add_argument("--name", help="Celery node name (default lbc-<pid>@<host>); %%h is the host name")
    worker.add_argument("--loglevel", default="INFO", help="log level (default INFO)")
    worker.set_defaults(handler=run_worker)

    beat = commands.add_parser(
        "beat", help="run the scheduler that triggers the reaper", description=_doc(run_beat)
    )
    beat.add_argument("--loglevel", default="INFO", help="log level (default INFO)")
    beat.set_defaults(handler=run_beat)

    migrate = commands.add_parser(
        "migrate", help="create or upgrade the database schema", description=_doc(run_migrate)
    )
    migrate.set_defaults(handler=run_migrate)

    serve = commands.add_parser(
        "serve",
        help="embedded mode: API + worker + scheduler on this machine",
        description=_doc(run_serve),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--home", help="directory for all state (default: LBC_HOME, ./.lbc)")
    serve.add_argument("--port", type=int, help="API port (default: LBC_API_PORT, 8000)")
    serve.add_argument("--host", help="API bind address (default: LBC_API_HOST, 127.0.0.1)")
    serve.add_argument(
        "--keep-client-config",
        action="store_true",
        help="do not write this server's URL and key into the client config (LBC_CONFIG, the file "
        "`lbc login` writes); by default every start does, so that `lbc submit` etc. talk to it",
    )
    serve.set_defaults(handler=run_serve)


def _doc(fn: Any) -> str:
    return (fn.__doc__ or "").strip()


def _settings(**overrides: Any) -> Settings:
    from jobs.settings import Settings, get_settings

    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given) if given else get_settings()


def configure_logging(level: str | int = "INFO") -> None:
    """One stderr handler on the root logger; ``%(context)s`` names the task and job of a line.
    No API key reaches it (``jobs.redaction``)."""
    from jobs.redaction import SecretsFilter
    from worker.tasks import LogContextFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(SecretsFilter())
    handler.addFilter(LogContextFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())


# -- lbc api --------------------------------------------------------------------------------------------
def run_api(args: argparse.Namespace) -> int:
    """Serve the REST API with uvicorn on LBC_API_HOST:LBC_API_PORT.

    With --workers N, uvicorn runs N processes that share the listening socket; each builds its own app
    from the LBC_* environment (its own database pool and queue connection). Starting the app has no
    side effects beyond creating the local storage directories (idempotent), so the processes can start
    together; the schema is `lbc migrate`'s business and keys are `lbc keys create`'s.
    """
    import uvicorn

    if args.workers < 1:
        raise SystemExit("lbc api: --workers must be at least 1")
    settings = _settings(api_host=args.host, api_port=args.port)
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": "info",
        "log_config": uvicorn_log_config(),
        # Live event streams stay open until their job ends; do not let them hold up a shutdown.
        "timeout_graceful_shutdown": 5,
    }
    if args.workers == 1:
        from api.app import create_served_app

        uvicorn.run(create_served_app(settings), **options)
    else:
        # Worker processes import the app by name and build it from the environment, so the flags that
        # override settings must reach them through it.
        os.environ["LBC_API_HOST"], os.environ["LBC_API_PORT"] = settings.api_host, str(settings.api_port)
        uvicorn.run("api.app:create_served_app", factory=True, workers=args.workers, **options)
    return 0


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging with ``jobs.redaction.SecretsFilter`` on each handler: the access log
    prints every request's path and query string, where an old sign-in link (``/?key=...``) puts a key."""
    from uvicorn.config import LOGGING_CONFIG

    return {
        **LOGGING_CONFIG,
        "filters": {"secrets": {"()": "jobs.redaction.SecretsFilter"}},
        "handlers": {
            name: {**handler, "filters": ["secrets"]} for name, handler in LOGGING_CONFIG["handlers"].items()
        },
    }


# -- lbc worker -----------------------------------------------------------------------------------------
def parse_queues(text: str) -> list[str]:
    queues = [q.strip() for q in text.split(",") if q.strip()]
    if not queues:
        raise SystemExit("lbc worker: --queues needs at least one queue name")
    return queues


def celery_worker_argv(queues: list[str], name: str, loglevel: str) -> list[str]:
    """Job workers: one job at a time, no prefetch, a fresh forked process per job (no CUDA state or
    leaked memory carries over; the parent never opens a database connection or CUDA).

    A worker of the maintenance queue alone runs only the reaper's short database task: it runs tasks
    in its main process (solo pool), without forking a process per task.
    """
    from jobs.queue import MAINTENANCE_QUEUE

    if set(queues) <= {MAINTENANCE_QUEUE}:
        pool = ["--pool", "solo"]
    else:
        pool = [
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--prefetch-multiplier",
            "1",
            "--max-tasks-per-child",
            "1",
        ]
    return [
        "worker",
        "--queues",
        ",".join(queues),
        *pool,
        "--hostname",
        name,
        "--loglevel",
        loglevel,
        # No cluster chatter: the database coordinates workers, not Celery's gossip.
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ]


def make_home(home: Path) -> None:
    """Create the embedded home readable by its owner only: it holds the database, every upload and every
    artifact, which the API shows only to their owners. A directory that exists already is left alone."""
    home.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o700)


def run_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker that executes jobs from the given queues (one job at a time, one fresh
    process per job). Start one per GPU."""
    from celery import signals

    from jobs.queue import MAINTENANCE_QUEUE, consumed_queues

    settings = _settings()
    queues = parse_queues(args.queues) if args.queues is not None else list(consumed_queues(settings))
    settings.home.mkdir(parents=True, exist_ok=True)
    if set(queues) - {MAINTENANCE_QUEUE}:
        # Import torch and the engine once in the parent: every job's forked child starts with them loaded.
        # Importing torch does not initialise CUDA, so the fork stays safe.
        import worker.execution  # noqa: F401

    from worker.celery_app import create_worker_app

    app = create_worker_app(settings)
    signals.setup_logging.connect(lambda **_: configure_logging(args.loglevel), weak=False)
    name = args.name or f"lbc-{os.getpid()}@%h"
    result = app.worker_main(celery_worker_argv(queues, name, args.loglevel))
    return int(result or 0)


# -- lbc beat -------------------------------------------------------------------------------------------
def run_beat(args: argparse.Namespace) -> int:
    """Run the Celery beat scheduler that sends the reaper's task every LBC_REAPER_INTERVAL_SECONDS
    (run exactly one per deployment; its schedule file lives under LBC_HOME)."""
    from celery import signals

    from jobs.queue import make_celery

    settings = _settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    app = make_celery(settings, name="lbc-beat")
    signals.setup_logging.connect(lambda **_: configure_logging(args.loglevel), weak=False)
    argv = ["beat", "--schedule", str(settings.home / "celerybeat-schedule"), "--loglevel", args.loglevel]
    result = app.start(argv)
    return int(result or 0)


# -- lbc migrate ----------------------------------------------------------------------------------------
def run_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the database schema to the latest migration (safe to run again)."""
    from jobs.migrate import upgrade

    settings = _settings()
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print(f"database schema is up to date ({_redacted(settings.database_url)})")
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- lbc serve ------------------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def ensure_local_key(settings: Settings) -> tuple[str, bool]:
    """The local admin key, created on first start and kept in ``home/local-key`` (mode 0600).

    Returns ``(token, created)``. A stored key that no longer authenticates (the database was reset)
    is replaced.
    """
    from jobs import auth
    from jobs.db import make_engine, make_session_factory, transaction
    from jobs.errors import Unauthorized

    path = settings.home / LOCAL_KEY_FILE
    engine = make_engine(settings.database_url)
    try:
        sessions = make_session_factory(engine)
        if path.exists():
            token = path.read_text().strip()
            try:
                with transaction(sessions) as session:
                    auth.authenticate(session, token)
                return token, False
            except Unauthorized:
                pass
        with transaction(sessions) as session:
            owner = auth.get_or_create_owner(session, LOCAL_OWNER, is_admin=True)
            _, token = auth.create_api_key(session, owner, "lbc serve local key")
    finally:
        engine.dispose()
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token, True


def _die_with_parent() -> None:
    """Runs in each child before exec: if ``lbc serve`` itself is killed (even with SIGKILL), the
    kernel sends its children SIGTERM instead of leaving them orphaned (Linux; a no-op elsewhere).
    SIGTERM, not SIGKILL: the worker then hands its running job back to the queue like on a clean stop
    (see ``worker.lifecycle`` for the whole design)."""
    from worker.lifecycle import set_parent_death_signal

    set_parent_death_signal(signal.SIGTERM)


class ServeConflict(Exception):
    """Another ``lbc serve`` owns the home directory, or something else listens on the port."""


def lock_home(home: Path, url: str, wait_s: float) -> int:
    """An exclusive ``flock`` on ``home/serve.lock``, held for as long as this serve's processes live.

    The descriptor is inherited by the children (``pass_fds``), so the lock stays held until the last
    of them has exited: after a SIGKILL of ``lbc serve`` its worker may still be handing its job back.
    A lock held by a live ``lbc serve`` is a conflict; one held only by the leftover children of a dead
    one is waited for, ``wait_s`` at most. Returns the descriptor.
    """
    path = home / SERVE_LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise
        owner_pid, owner_url = _lock_owner(path)
        if (owner_pid is not None and _pid_alive(owner_pid)) or time.monotonic() >= deadline:
            os.close(fd)
            who = f"lbc serve (pid {owner_pid}, {owner_url})" if owner_pid else "lbc serve"
            raise ServeConflict(
                f"another {who} is already running with the home {home}; stop it first, "
                "or start this one with another --home"
            )
        if not told:
            told = True
            print(
                f"lbc serve: waiting for the processes of the stopped lbc serve (pid {owner_pid}) to exit",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {url}\n".encode(), 0)
    return fd


def _lock_owner(path: Path) -> tuple[int | None, str]:
    try:
        pid, _, url = path.read_text().strip().partition(" ")
        return int(pid), url
    except (OSError, ValueError):
        return None, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    return True


def check_port_free(host: str, port: int) -> None:
    """Bind the API's address once, as uvicorn will: a port in use is a clear error now, rather than an
    API child that dies later (or a health check answered by whoever holds the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeConflict(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another lbc serve or another "
                "program uses it); choose another port with --port"
            ) from exc


def _wait_healthy(url: str, children: list[Child], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.process is not None and c.process.poll() is not None for c in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def _signal_group(child: Child, sig: int) -> None:
    if child.process is None or child.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, sig)


def _stop_children(children: list[Child], grace: float) -> None:
    """SIGTERM everyone: the API and beat stop at once; the worker's job process checkpoints and hands
    its job back to the queue, then the worker ends its warm shutdown. After ``grace`` seconds a cold
    shutdown of a worker still busy, then SIGKILL of whatever is left (a job killed that way resumes
    from its last checkpoint as a new attempt once its lease expires)."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    for sig, wait in ((signal.SIGQUIT, grace), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(c.process and c.process.poll() is None for c in children):
            time.sleep(0.1)
        for child in children:
            if child.process is not None and child.process.poll() is None:
                print(
                    f"lbc serve: {child.name} still running; sending {signal.Signals(sig).name}",
                    file=sys.stderr,
                )
                _signal_group(child, sig)
    for child in children:
        if child.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)


def run_serve(args: argparse.Namespace) -> int:
    """Embedded mode: SQLite, a local object store and an SQLite broker, all under LBC_HOME.

    Creates the home directory, migrates the database, creates a local admin API key on first start
    (printed once, and kept in LBC_HOME/local-key with mode 0600), then runs the API, one worker
    (all queues) and the reaper's scheduler as child processes until Ctrl-C or SIGTERM.

    Stopping: a running job writes a checkpoint and goes back to the queue without counting an attempt,
    and resumes at the next start (it has LBC_SHUTDOWN_GRACE_SECONDS, default 30, to do so). Every child
    also dies with this process, even when it is SIGKILLed. One lbc serve per home: a second one on the
    same home, or on a port in use, exits with an error (code 1). --keep-client-config leaves the
    client config file alone.
    """
    from jobs.migrate import upgrade
    from jobs.queue import consumed_queues
    from worker.lifecycle import MAIN_PROCESS_EXTRA_GRACE_S

    overrides: dict[str, Any] = {"api_port": args.port, "api_host": args.host}
    if args.home:
        overrides["home"] = Path(args.home)
    settings = _settings(**overrides)
    make_home(settings.home)
    shown_host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    base_url = f"http://{shown_host}:{settings.api_port}"
    grace = settings.shutdown_grace_seconds + MAIN_PROCESS_EXTRA_GRACE_S
    try:
        lock_fd = lock_home(settings.home, base_url, wait_s=grace)
        check_port_free(settings.api_host, settings.api_port)
    except ServeConflict as exc:
        print(f"lbc serve: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFLICT

    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    try:
        upgrade(settings.database_url)
        token, created = ensure_local_key(settings)
        key_path = settings.home / LOCAL_KEY_FILE
        print(f"lbc serve: state in {settings.home}", flush=True)
        if created:
            print(
                f"lbc serve: new local admin API key (shown once, saved in {key_path}): {token}", flush=True
            )
            # The key goes in the fragment, which browsers never send: it reaches no server log.
            print(f"lbc serve: open {base_url}/#key={token}", flush=True)
        else:
            print(f"lbc serve: using the local admin API key saved in {key_path}", flush=True)
            print(f"lbc serve: open {base_url}/", flush=True)
        if args.keep_client_config:
            print("lbc serve: client config left as it is (--keep-client-config)", flush=True)
        else:
            _save_client_config(base_url, token)

        env = {
            **os.environ,
            "LBC_HOME": str(settings.home),
            "LBC_API_HOST": settings.api_host,
            "LBC_API_PORT": str(settings.api_port),
        }
        lbc = [sys.executable, "-m", "cli.main"]
        children = [
            Child("api", [*lbc, "api"]),
            Child(
                "worker",
                [*lbc, "worker", "--queues", ",".join(consumed_queues(settings)), "--name", "lbc-serve@%h"],
            ),
            Child("beat", [*lbc, "beat"]),
        ]
        for child in children:
            if stop:
                break
            # Own process group: a terminal's Ctrl-C reaches only us, and we decide how each child stops.
            # The home lock goes with them: no other serve starts on this home while any of them lives.
            child.process = subprocess.Popen(
                child.argv,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                pass_fds=(lock_fd,),
            )
        if not stop:
            if _wait_healthy(f"{base_url}/healthz", children, timeout=120):
                print(f"lbc serve: ready at {base_url} (Ctrl-C to stop)", flush=True)
            else:
                print(f"lbc serve: the API at {base_url} is not answering", file=sys.stderr, flush=True)
        while not stop:
            dead = [c for c in children if c.process is not None and c.process.poll() is not None]
            if dead:
                for child in dead:
                    assert child.process is not None
                    print(
                        f"lbc serve: {child.name} exited with code {child.process.returncode}; stopping",
                        file=sys.stderr,
                    )
                return 1
            time.sleep(0.2)
        print("lbc serve: stopping (a running job checkpoints and goes back to the queue)", flush=True)
        return 0
    finally:
        _stop_children(children, grace=grace)
        os.close(lock_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stop:
            print("lbc serve: stopped", flush=True)


def _save_client_config(base_url: str, token: str) -> None:
    """So that `lbc submit`, `lbc jobs`, ... on this machine talk to this server without flags."""
    from client.config import save_config

    try:
        config_file = save_config(base_url, token)
        print(f"lbc serve: client config saved in {config_file}", flush=True)
    except OSError as exc:
        print(f"lbc serve: could not save the client config: {exc}", file=sys.stderr, flush=True)
