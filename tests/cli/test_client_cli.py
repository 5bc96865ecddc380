"""The client commands of ``lbc`` run as a user runs them, against a real embedded service (``lbc serve``):
every command, what it prints, and the exit code of each failure."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from cli.main import main
from tests.client.server import FAILING_SPEC, LONG_SPEC, QUICK_SPEC, Server, running_server
from tests.client.test_spec_text import BILLION_LAUGHS
from tests.integration.support import LBC, clean_environment, free_port, wait_for

pytestmark = pytest.mark.timeout(180)

CLIENT_COMMANDS = [
    "login", "submit", "jobs", "status", "logs", "cancel", "retry", "download", "upload",
    "upload dataset", "upload checkpoint",
]  # fmt: skip
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def lbc(
    server: Server, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LBC, *args],
        env={**server.env(), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass(frozen=True)
class Specs:
    quick: Path
    long: Path
    failing: Path
    invalid: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("cli-server"), request) as running:
        yield running


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Specs:
    directory = tmp_path_factory.mktemp("specs")
    invalid = {**QUICK_SPEC, "model": {"architecture": "nope"}, "sparsity": {"method": "lbc", "n": 4, "m": 4}}
    paths = {}
    for name, spec in (
        ("quick", QUICK_SPEC),
        ("long", LONG_SPEC),
        ("failing", FAILING_SPEC),
        ("invalid", invalid),
    ):
        paths[name] = directory / f"{name}.json"
        paths[name].write_text(json.dumps(spec))
    return Specs(**paths)


@pytest.fixture(scope="module")
def waited(server: Server, specs: Specs) -> subprocess.CompletedProcess[str]:
    """``lbc submit quick.json --wait``: a job that succeeded, and what the command printed."""
    return lbc(server, "submit", str(specs.quick), "--wait", "--idempotency-key", "cli-quick")


@pytest.fixture(scope="module")
def job_id(waited: subprocess.CompletedProcess[str]) -> str:
    assert waited.returncode == 0, waited.stderr
    return waited.stdout.strip()


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key}"})


def test_version_comes_from_the_package_metadata() -> None:
    result = subprocess.run([LBC, "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"lbc {importlib.metadata.version('lbc-sparsity')}\n")


# -- help -----------------------------------------------------------------------------------------------
def test_lbc_help_documents_the_exit_codes() -> None:
    result = subprocess.run([LBC, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for line in ("0    ok", "1    the job failed", "2    usage or validation error", "3    the job was cancelled",
                 "4    not found (404)", "5    authentication failed", "6    cannot connect", "130  interrupted"):  # fmt: skip
        assert line in result.stdout, line
    assert "LBC_URL/LBC_API_KEY" in result.stdout


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_client_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command.split(), "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: lbc {command}") and "exit codes:" in shown
    assert ("--url URL" in shown) == (command != "upload")  # `upload` only picks the kind


def test_client_commands_never_import_torch(server: Server, job_id: str) -> None:
    code = (
        "import sys\nfrom cli.main import main\n"
        f"assert main(['status', {job_id!r}, '--url', {server.url!r}, '--key', {server.key!r}]) == 0\n"
        "assert 'torch' not in sys.modules and 'lbc_core' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- submit ---------------------------------------------------------------------------------------------
def test_submit_wait_prints_the_id_follows_progress_and_exits_0(
    waited: subprocess.CompletedProcess[str], job_id: str
) -> None:
    assert JOB_ID.match(job_id) and waited.stdout == f"{job_id}\n"
    err = waited.stderr
    for text in ("state: running", "phase: training", "epoch 1/2", "epoch 2/2", "val_acc", "alive/group 1"):
        assert text in err, text
    assert f"job {job_id} succeeded" in err and "val accuracy" in err


def test_submit_with_the_same_idempotency_key_prints_the_same_job(
    server: Server, specs: Specs, job_id: str
) -> None:
    again = lbc(server, "submit", str(specs.quick), "--idempotency-key", "cli-quick")
    assert (again.returncode, again.stdout) == (0, f"{job_id}\n")


def test_an_invalid_spec_exits_2_naming_every_field(server: Server, specs: Specs, tmp_path: Path) -> None:
    result = lbc(server, "submit", str(specs.invalid))
    assert result.returncode == 2 and result.stdout == ""
    assert "invalid job spec" in result.stderr
    assert "  model.architecture: unknown architecture 'nope'" in result.stderr
    assert "  sparsity.n: must be smaller than m (4)" in result.stderr

    from_stdin = lbc(server, "submit", "-", stdin=specs.invalid.read_text())
    assert from_stdin.returncode == 2 and "sparsity.n" in from_stdin.stderr

    missing = lbc(server, "submit", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    bad = lbc(server, "submit", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "invalid YAML" in bad.stderr


def test_a_local_file_where_the_service_wants_an_upload_id_gets_the_upload_command(
    server: Server, tmp_path: Path
) -> None:
    # A spec written for `lbc train` names local files; the service said only "dataset ./d.npz does not
    # exist", about a file the user can see.
    (tmp_path / "d.npz").write_bytes(b"x")
    (tmp_path / "dense.safetensors").write_bytes(b"x")
    spec = tmp_path / "local.yaml"
    spec.write_text(
        "model: {architecture: lenet5, checkpoint: dense.safetensors}\n"
        "dataset: {source: npz, path: d.npz}\n"
        "train: {device: cpu}\n"
    )
    result = subprocess.run(
        [LBC, "submit", str(spec)],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "  dataset.path: dataset d.npz does not exist" in result.stderr
    assert (
        "  hint: d.npz exists here, but the service reads uploads: `lbc upload dataset d.npz --format npz` "
        "prints the id for dataset.path"
    ) in result.stderr
    assert (
        "  hint: dense.safetensors exists here, but the service reads uploads: "
        "`lbc upload checkpoint dense.safetensors` prints the id for model.checkpoint"
    ) in result.stderr


def test_a_failing_job_exits_1_when_watched(server: Server, specs: Specs, job_id: str) -> None:
    submitted = lbc(server, "submit", str(specs.failing))
    assert submitted.returncode == 0 and JOB_ID.match(submitted.stdout.strip())
    failed_id = submitted.stdout.strip()

    watched = lbc(server, "status", failed_id, "--watch", "--json")

    assert watched.returncode == 1, watched.stderr
    assert f"job {failed_id} failed" in watched.stderr and "time_limit" in watched.stderr
    assert json.loads(watched.stdout)["state"] == "failed"


# -- jobs and status ------------------------------------------------------------------------------------
def test_jobs_prints_a_table_json_and_filters(server: Server, job_id: str) -> None:
    table = lbc(server, "jobs")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:7] == ["ID", "STATE", "PHASE", "METHOD", "PATTERN", "MODEL", "PROGRESS"]
    row = next(r for r in rows if r.startswith(job_id))
    assert row.split()[1:6] == ["succeeded", "done", "lbc", "2:4", "mlp"] and "quick mlp" in row

    listed = json.loads(lbc(server, "jobs", "--json", "--all").stdout)
    assert job_id in [job["id"] for job in listed] and listed[0]["created_at"].endswith("Z")
    succeeded = json.loads(lbc(server, "jobs", "--json", "--state", "succeeded", "--pattern", "2:4").stdout)
    assert [job["id"] for job in succeeded] == [job_id]
    assert json.loads(lbc(server, "jobs", "--json", "--method", "asp").stdout) == []
    assert json.loads(lbc(server, "jobs", "--json", "--limit", "500").stdout) == listed  # over one page

    if len(listed) > 1:
        one = lbc(server, "jobs", "--limit", "1")
        assert len(one.stdout.splitlines()) == 2 and "--all" in one.stderr

    assert lbc(server, "jobs", "--state", "bogus").returncode == 2  # argparse
    bad_pattern = lbc(server, "jobs", "--pattern", "2-4")
    assert bad_pattern.returncode == 2 and "  pattern:" in bad_pattern.stderr


def test_status_shows_the_job_and_its_outcome(server: Server, job_id: str) -> None:
    result = lbc(server, "status", job_id)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^state\s+succeeded \(phase done\)$", result.stdout, re.M)
    assert "lbc 2:4 on mlp" in result.stdout and "val accuracy" in result.stdout

    as_json = json.loads(lbc(server, "status", job_id, "--json").stdout)
    assert as_json["id"] == job_id and as_json["spec"]["train"]["epochs"] == 2

    watched = lbc(server, "status", job_id, "--watch")  # a finished job: its history, then exit 0
    assert watched.returncode == 0 and f"job {job_id} succeeded" in watched.stderr


def test_logs_whole_tail_and_follow(server: Server, job_id: str) -> None:
    whole = lbc(server, "logs", job_id)
    assert whole.returncode == 0 and "phase: training" in whole.stdout
    lines = whole.stdout.splitlines()
    tail = lbc(server, "logs", job_id, "--tail", "2")
    assert tail.stdout.splitlines() == lines[-2:]
    followed = lbc(server, "logs", job_id, "--follow")  # the job is finished: prints all and ends
    assert (followed.returncode, followed.stdout) == (0, whole.stdout)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("command", ["logs", "logs --tail 2", "logs --follow", "status", "jobs"])
def test_an_output_pipe_closed_early_exits_141_quietly(
    server: Server, job_id: str, command: str, buffered: bool
) -> None:
    """`lbc logs ID | head -1`: the reader is gone before the output is; no "Broken pipe", exit 141."""
    env = server.env()
    if buffered:  # as in a user's shell: stdout is block-buffered into a pipe, written at the end
        env.pop("PYTHONUNBUFFERED", None)
    args = command.split()
    if command != "jobs":
        args.insert(1, job_id)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [LBC, *args], env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


# -- cancel, retry, watch -------------------------------------------------------------------------------
def test_cancelling_a_finished_job_exits_1_with_the_conflict(server: Server, job_id: str) -> None:
    result = lbc(server, "cancel", job_id)
    assert result.returncode == 1
    assert f"job {job_id} is succeeded; cannot move to cancelled" in result.stderr and "409" in result.stderr


def test_watch_ctrl_c_exits_130_then_cancel_watch_exits_3_and_retry_requeues(
    server: Server, specs: Specs, tmp_path: Path
) -> None:
    long_id = lbc(server, "submit", str(specs.long)).stdout.strip()
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        watch = subprocess.Popen(
            [LBC, "status", long_id, "--watch"],
            env=server.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_for(lambda: "phase: training" in log.read_text(), 60, "the job to train")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=20) == 130
    finally:
        if watch.poll() is None:
            watch.kill()
    assert f"job {long_id} keeps running" in log.read_text()

    cancel = lbc(server, "cancel", long_id)
    assert cancel.returncode == 0 and cancel.stdout.split()[0] == long_id
    assert cancel.stdout.split()[1] in ("cancelling", "cancelled")
    watched = lbc(server, "status", long_id, "--watch")
    assert watched.returncode == 3, watched.stderr
    assert f"job {long_id} cancelled" in watched.stderr

    retried = lbc(server, "retry", long_id)
    assert (retried.returncode, retried.stdout) == (0, f"{long_id} queued\n")
    again = lbc(server, "cancel", long_id)
    assert again.returncode == 0 and again.stdout.split()[1] in ("cancelling", "cancelled")


# -- download and upload --------------------------------------------------------------------------------
def test_download_verifies_and_prints_every_file(server: Server, job_id: str, tmp_path: Path) -> None:
    with api(server) as http:
        listing = {a["name"]: a for a in http.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}

    result = lbc(server, "download", job_id, "--to", str(tmp_path / "out"))

    assert result.returncode == 0, result.stderr
    printed = [line.split()[0] for line in result.stdout.splitlines()]
    assert sorted(printed) == sorted(str(tmp_path / "out" / name) for name in listing)
    for name, artifact in listing.items():
        assert hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest() == artifact["sha256"]
        assert f"sha256 {artifact['sha256']} ok" in result.stdout

    one = lbc(server, "download", job_id, "--to", str(tmp_path / "one"), "--name", "metrics.json")
    assert one.returncode == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["metrics.json"]
    unknown = lbc(server, "download", job_id, "--to", str(tmp_path / "x"), "--name", "nope.bin")
    assert unknown.returncode == 4 and "no artifact 'nope.bin'" in unknown.stderr


def test_download_defaults_to_a_directory_named_after_the_job(
    server: Server, job_id: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [LBC, "download", job_id, "--name", "manifest.json"],
        env=server.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / job_id / "manifest.json").is_file()


def test_upload_dataset_and_checkpoint_print_their_ids(server: Server, tmp_path: Path) -> None:
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=np.zeros((20, 8, 8), dtype=np.float32), y=np.arange(20) % 2)
    dataset = lbc(server, "upload", "dataset", str(npz), "--format", "npz", "--name", "tiny")
    assert dataset.returncode == 0, dataset.stderr
    dataset_id = dataset.stdout.strip()
    assert JOB_ID.match(dataset_id) and "uploaded dataset 'tiny' (npz" in dataset.stderr

    weights = tmp_path / "dense.safetensors"
    save_file({"w": np.ones((2, 4), dtype=np.float32)}, str(weights))
    checkpoint = lbc(server, "upload", "checkpoint", str(weights))
    assert checkpoint.returncode == 0, checkpoint.stderr
    checkpoint_id = checkpoint.stdout.strip()

    with api(server) as http:
        assert http.get(f"/v1/datasets/{dataset_id}").json()["name"] == "tiny"
        assert http.get(f"/v1/checkpoints/{checkpoint_id}").json()["format"] == "safetensors"


def test_upload_failures_exit_2(server: Server, tmp_path: Path) -> None:
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"not a zip")
    invalid = lbc(server, "upload", "dataset", str(fake), "--format", "npz")
    assert invalid.returncode == 2 and "npz" in invalid.stderr
    missing = lbc(server, "upload", "dataset", str(tmp_path / "none.npz"), "--format", "npz")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    images = tmp_path / "images"
    images.mkdir()
    directory = lbc(server, "upload", "dataset", str(images), "--format", "imagefolder")
    assert directory.returncode == 2, directory.stderr
    assert f"error: {images} is a directory; a dataset is uploaded as one file" in directory.stderr
    assert "no such file" not in directory.stderr and "tar -cf data.tar" in directory.stderr
    weights = lbc(server, "upload", "checkpoint", str(images))
    assert weights.returncode == 2 and "is a directory; upload the weights file itself" in weights.stderr
    assert lbc(server, "upload", "dataset", str(fake)).returncode == 2  # --format is required


def test_submit_refuses_a_billion_laughs_spec_at_once_before_contacting_the_server(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(BILLION_LAUGHS)
    down = f"http://127.0.0.1:{free_port()}"  # exit 6 would mean it tried to connect first
    started = time.monotonic()
    result = subprocess.run(
        [LBC, "submit", str(spec), "--url", down, "--key", "lbc_unused"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"lbc submit: error: {spec}: the document expands to more than")
    checked = subprocess.run(
        [LBC, "spec", "check", str(spec)], env=clean_environment(), capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 2 and "expands to more than" in checked.stderr  # the same reader


@pytest.mark.parametrize(
    ("command", "argument"),
    [("status", ""), ("status", "."), ("cancel", ".."), ("logs", " "), ("download", "")],
)
def test_an_id_that_is_no_id_exits_2_before_contacting_the_server(command: str, argument: str) -> None:
    # "." and ".." used to be resolved away by the URL ("lbc status ." got the job list and crashed with
    # a KeyError traceback), and an empty id (an unset shell variable) reached other routes ("no route for
    # POST /v1/jobs//cancel", or "unexpected response ...: not JSON" and exit 1).
    down = f"http://127.0.0.1:{free_port()}"  # exit 6 would mean it tried to connect first
    result = subprocess.run(
        [LBC, command, argument, "--url", down, "--key", "lbc_unused"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"lbc {command}: error: {argument!r} is not a job id"), result.stderr
    assert "Traceback" not in result.stderr


def test_download_to_a_file_exits_2_before_contacting_the_server(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    down = f"http://127.0.0.1:{free_port()}"  # exit 6 would mean it tried to connect first
    result = subprocess.run(
        [LBC, "download", "0123abcd", "--to", str(target), "--url", down, "--key", "lbc_unused"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # It used to download first, then fail with exit 1 and "[Errno 17] File exists".
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"lbc download: error: --to {target} is a file; give the directory the artifacts go to\n"
    )
    assert target.read_text() == "mine"


# -- server, key and connection failures ----------------------------------------------------------------
def test_a_rejected_or_missing_key_exits_5(server: Server, tmp_path: Path) -> None:
    wrong = lbc(server, "jobs", "--key", "lbc_wrong")
    assert wrong.returncode == 5 and "the API key from --key was rejected" in wrong.stderr
    env_key = lbc(server, "jobs", env={"LBC_API_KEY": "lbc_wrong"})  # the environment beats the file
    assert env_key.returncode == 5 and "LBC_API_KEY" in env_key.stderr
    no_key = lbc(server, "jobs", "--url", server.url, env={"LBC_CONFIG": str(tmp_path / "none.json")})
    assert no_key.returncode == 5 and "no API key" in no_key.stderr


@pytest.mark.parametrize("command", ["status", "logs", "cancel", "retry", "download"])
def test_an_unknown_job_exits_4(server: Server, command: str, tmp_path: Path) -> None:
    result = lbc(server, command, "0" * 32, *(["--to", str(tmp_path)] if command == "download" else []))
    assert result.returncode == 4, result.stderr
    assert f"job {'0' * 32} not found" in result.stderr


def test_a_server_that_is_down_exits_6(server: Server, specs: Specs) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for args in (["jobs"], ["submit", str(specs.quick)], ["status", "x", "--watch"]):
        result = lbc(server, *args, "--url", down)
        assert result.returncode == 6, (args, result.stderr)
        assert f"cannot connect to {down}" in result.stderr


def test_login_checks_the_key_and_saves_the_config(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "lbc" / "config.json"
    env = {"LBC_CONFIG": str(config)}

    bad = lbc(server, "login", "--url", server.url, "--key", "lbc_wrong", env=env)
    assert bad.returncode == 5 and not config.exists()
    down = lbc(server, "login", "--url", f"http://127.0.0.1:{free_port()}", "--key", server.key, env=env)
    assert down.returncode == 6 and not config.exists()
    assert lbc(server, "login", "--url", server.url, env=env).returncode == 2  # no key at all

    good = lbc(server, "login", "--url", server.url, "--key", "-", env=env, stdin=server.key + "\n")
    assert good.returncode == 0, good.stderr
    assert f"logged in to {server.url}" in good.stdout
    assert json.loads(config.read_text()) == {"url": server.url, "api_key": server.key}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert lbc(server, "jobs", env=env).returncode == 0  # the other commands use it


def test_download_exits_1_when_a_partial_file_is_corrupt(server: Server, job_id: str, tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.part").write_bytes(b"\0" * 1000)  # a bogus earlier attempt

    result = lbc(server, "download", job_id, "--to", str(tmp_path), "--name", "model.safetensors")

    assert result.returncode == 1 and "sha256 mismatch" in result.stderr
    assert (
        not (tmp_path / "model.safetensors").exists() and not (tmp_path / "model.safetensors.part").exists()
    )
    again = lbc(server, "download", job_id, "--to", str(tmp_path), "--name", "model.safetensors")
    assert again.returncode == 0 and (tmp_path / "model.safetensors").is_file()


# -- the live view --------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_watch_bar_shows_epoch_loss_accuracy_and_alive_combinations() -> None:
    from datetime import UTC, datetime

    from cli.client_watch import JobWatcher
    from client import Event

    def event(kind: str, **data: object) -> Event:
        return Event(id=1, kind=kind, attempt=1, created_at=datetime.now(UTC), data=data)

    screen = Terminal()
    watcher = JobWatcher("j1", stream=screen)
    watcher.on_event(event("phase", phase="training", epochs=2, device="cpu"))
    watcher.on_event(event("progress", epoch=1, epochs=2, global_step=4, total_steps=16, loss=2.3))
    watcher.on_event(event("metrics", epoch=1, train_loss=2.1, val_accuracy=0.66, alive_per_group=6.0))
    watcher.on_event(event("progress", epoch=2, epochs=2, global_step=12, total_steps=16, loss=1.25))
    watcher.on_event(event("state", state="succeeded"))
    watcher.close()

    shown = screen.getvalue()
    assert "phase: training (epochs 2, device cpu)" in shown
    assert "epoch 1/2  loss 2.1000  val_acc 0.6600  alive/group 6" in shown
    assert "epoch 2/2" in shown and "12/16" in shown and "loss=1.2500" in shown
    assert "val_acc=0.6600" in shown and "alive/group=6" in shown
    assert "state: succeeded (attempt 1)" in shown


# -- a job whose model did not learn --------------------------------------------------------------------
def test_a_job_that_did_not_learn_is_flagged_by_submit_wait_status_and_jobs(
    server: Server, tmp_path: Path
) -> None:
    # Dense at a tiny lr: nothing moves. Pattern 1:4, so the other tests' filters never see this job.
    spec = {
        **QUICK_SPEC,
        "name": "stuck mlp",
        "sparsity": {"method": "dense", "n": 1, "m": 4},
        "train": {"epochs": 2, "batch_size": 64, "lr": 1e-6},
    }
    path = tmp_path / "stuck.json"
    path.write_text(json.dumps(spec))

    waited = lbc(server, "submit", str(path), "--wait")
    assert waited.returncode == 0, waited.stderr  # the job succeeded: it ran
    stuck_id = waited.stdout.strip()
    assert f"job {stuck_id} succeeded" in waited.stderr
    assert "WARNING (did_not_learn): the model did not learn" in waited.stderr
    assert "try a higher train.lr" in waited.stderr

    status = lbc(server, "status", stuck_id)
    assert re.search(r"^warning\s+\(did_not_learn\): the model did not learn", status.stdout, re.M)
    assert (
        json.loads(lbc(server, "status", stuck_id, "--json").stdout)["warnings"][0]["code"] == "did_not_learn"
    )

    table = lbc(server, "jobs").stdout.splitlines()
    row = next(r for r in table if r.startswith(stuck_id))
    assert "succeeded (did_not_learn)" in row


def test_upload_model_streams_the_checked_files_of_a_directory(server: Server, tmp_path: Path) -> None:
    from tests.hf_models import save_tiny_model

    directory = save_tiny_model(tmp_path / "tiny-llama")
    (directory / "README.md").write_text("# not sent: the engine never reads it")
    result = lbc(server, "upload", "model", str(directory), "--name", "tiny llama")
    assert result.returncode == 0, result.stderr
    model_id = result.stdout.strip()
    assert JOB_ID.match(model_id)
    assert "sending 4 files" in result.stderr and "README.md" not in result.stderr
    assert "uploaded model 'tiny llama' (llama, " in result.stderr and "tasks: causal-lm" in result.stderr
    with api(server) as http:
        summary = http.get(f"/v1/hf-models/{model_id}").json()["summary"]
    assert summary["root"] == "tiny-llama" and summary["ignored"] == []


def test_upload_model_refuses_a_pickle_before_sending_anything(server: Server, tmp_path: Path) -> None:
    from tests.hf_models import hand_made_model, write_files

    directory = write_files(tmp_path / "m", hand_made_model(**{"pytorch_model.bin": b"\x80\x02}q\x00."}))
    with api(server) as http:
        before = http.get("/v1/hf-models").json()["items"]
    result = lbc(server, "upload", "model", str(directory))
    assert result.returncode == 2, result.stderr
    assert "pytorch_model.bin is refused: PyTorch .bin weights: a .bin is a pickle" in result.stderr
    with api(server) as http:
        assert http.get("/v1/hf-models").json()["items"] == before
