"""The client commands of ``lbc``: login, submit, jobs, status, logs, cancel, retry, download, upload.

They talk to a running service over HTTP through ``client.Client`` (imported lazily; never torch) and
end with exit codes that scripts can rely on (``EXIT_CODES_HELP``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.terminal import say
from lbc_catalog.uploads import DATASET_FORMATS
from lbc_formats.errors import FormatError
from lbc_formats.hf_directory import check_model_dir

if TYPE_CHECKING:
    from client import ApiError, Client, Config, Job

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_NOT_FOUND = 4
EXIT_AUTH = 5
EXIT_CONNECT = 6
EXIT_INTERRUPTED = 130

JOB_EXIT_CODES = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}

EXIT_CODES_HELP = """\
client commands (login, submit, jobs, status, logs, cancel, retry, download, upload) talk to a running
service. Server and key: --url/--key, else LBC_URL/LBC_API_KEY, else the config file that `lbc serve` and
`lbc login` write (~/.config/lbc/config.json, or the path in LBC_CONFIG).

exit codes:
  0    ok; with --wait/--watch: the job succeeded
  1    the job failed, or the operation failed (e.g. 409: cancelling a finished job; checksum mismatch)
  2    usage or validation error (a 422 prints every field problem)
  3    the job was cancelled (--wait/--watch)
  4    not found (404)
  5    authentication failed (401/403)
  6    cannot connect to the server
  130  interrupted (Ctrl-C)
  141  the output pipe closed early (e.g. `lbc jobs | head`)"""

CHECKPOINT_FORMATS = ("safetensors", "torch")
MAX_PAGE = 200  # the API's largest page of jobs

Handler = Callable[["Client", argparse.Namespace], int]


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts (descriptions) and keeps multi-line ones (the exit-code epilog) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# -- parser ------------------------------------------------------------------------------------------------
def register(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server")
    server.add_argument(
        "--url",
        metavar="URL",
        help="server URL (default: LBC_URL, the config file, then http://127.0.0.1:8000)",
    )
    server.add_argument("--key", metavar="KEY", help="API key (default: LBC_API_KEY, then the config file)")

    def add(
        name: str,
        help: str,
        description: str,
        handler: Callable[[argparse.Namespace], int],
        parent: Any = commands,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help,
            description=description,
            parents=[common],
            epilog=EXIT_CODES_HELP,
            formatter_class=HelpFormatter,
        )
        parser.set_defaults(handler=handler)
        return parser

    add(
        "login",
        "check a server URL and key, and save them for the other commands",
        "Check that --url and --key reach the service (the key may be '-' to read it from stdin), then save "
        "them in the client config file (mode 0600) for the other client commands.",
        login_command,
    )

    submit = add(
        "submit",
        "submit a job spec to the service",
        "Submit a job spec (YAML or JSON file, or '-' "
        "for stdin) and print the new job's id. With --wait, follow its progress until it ends; the "
        "exit code says how (0 succeeded, 1 failed, 3 cancelled).",
        with_client(submit_command),
    )
    submit.add_argument("spec", metavar="SPEC", help="job spec file (.yaml, .yml, .json) or - for stdin")
    submit.add_argument("--wait", action="store_true", help="follow the job until it finishes")
    submit.add_argument(
        "--idempotency-key",
        metavar="K",
        help="repeat a submission safely: the same key returns the first job (default: a fresh key)",
    )

    jobs = add("jobs", "list jobs", "List jobs, newest first.", with_client(jobs_command))
    jobs.add_argument(
        "--state", choices=("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
    )
    # The client's list of methods (client.models) is the one the CLI offers; client.models is stdlib only.
    from client.models import METHODS

    jobs.add_argument("--method", choices=METHODS)
    jobs.add_argument("--pattern", metavar="N:M", help="only this N:M pattern, e.g. 2:4")
    jobs.add_argument("--limit", type=_positive, default=20, metavar="N", help="at most N jobs (default 20)")
    jobs.add_argument("--all", action="store_true", help="every matching job (all pages)")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")

    status = add(
        "status",
        "show a job (--watch: follow it live)",
        "Show a job's state, progress and result. "
        "With --watch, follow it live (a progress bar with epoch/step, loss, validation accuracy and "
        "alive combinations per group) until it ends; the exit code then says how (0 succeeded, "
        "1 failed, 3 cancelled).",
        with_client(status_command),
    )
    status.add_argument("job_id", metavar="ID", help="job id")
    status.add_argument("--watch", action="store_true", help="follow the job until it finishes")
    status.add_argument("--json", action="store_true", help="print the job as JSON")

    logs = add(
        "logs",
        "print a job's log",
        "Print a job's log; --follow keeps printing new lines until the job ends.",
        with_client(logs_command),
    )
    logs.add_argument("job_id", metavar="ID", help="job id")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until the job ends"
    )
    logs.add_argument("--tail", type=_positive, metavar="N", help="only the last N lines")

    cancel = add(
        "cancel",
        "cancel a job",
        "Cancel a job: a queued one at once, a running one stops within "
        "seconds (state cancelling). A finished job cannot be cancelled (exit 1).",
        with_client(cancel_command),
    )
    cancel.add_argument("job_id", metavar="ID", help="job id")

    retry = add(
        "retry",
        "retry a failed or cancelled job",
        "Queue a failed or cancelled job again; it resumes from its latest checkpoint.",
        with_client(retry_command),
    )
    retry.add_argument("job_id", metavar="ID", help="job id")

    download = add(
        "download",
        "download a job's artifacts (sha256-verified)",
        "Download a job's artifacts "
        "(sparse checkpoint, masks, compressed form, reports, log), each verified against its "
        "sha256; an interrupted download resumes where it stopped.",
        with_client(download_command),
    )
    download.add_argument("job_id", metavar="ID", help="job id")
    download.add_argument("--to", metavar="DIR", help="target directory (default: ./ID)")
    download.add_argument(
        "--name", action="append", metavar="NAME", help="only this artifact (repeatable; default: all)"
    )

    upload = commands.add_parser(
        "upload",
        help="upload a dataset, a dense checkpoint or a Hugging Face model",
        description="Upload a file (or a model directory) for jobs to use; "
        "prints its id (use it as dataset.path, model.checkpoint or model.path in a spec).",
        epilog=EXIT_CODES_HELP,
        formatter_class=HelpFormatter,
    )
    kinds = upload.add_subparsers(dest="upload_kind", metavar="KIND", required=True)
    dataset = add(
        "dataset",
        "upload a dataset",
        "Upload a dataset file (validated by the server) and print its id.",
        with_client(upload_dataset_command),
        parent=kinds,
    )
    dataset.add_argument(
        "path",
        metavar="PATH",
        help="the file: mnist zip/tar, .npz, imagefolder zip/tar, cifar tar.gz, a text corpus (.txt/.jsonl), "
        "labeled texts (.jsonl/.csv) or a tokenizer.json",
    )
    dataset.add_argument("--format", required=True, choices=DATASET_FORMATS)
    dataset.add_argument("--name", metavar="NAME", help="a label (default: the file name)")
    checkpoint = add(
        "checkpoint",
        "upload a dense checkpoint",
        "Upload dense starting weights (safetensors, or a torch zip file; never unpickled) and print its id.",
        with_client(upload_checkpoint_command),
        parent=kinds,
    )
    checkpoint.add_argument("path", metavar="PATH", help="the file (.safetensors or .pt)")
    checkpoint.add_argument("--name", metavar="NAME", help="a label (default: the file name)")
    checkpoint.add_argument("--format", choices=CHECKPOINT_FORMATS, help="default: from the content")
    model = add(
        "model",
        "upload a Hugging Face model directory",
        "Check a Hugging Face model directory here (config.json, model.safetensors or shards with "
        "model.safetensors.index.json, tokenizer and processor files; pickles, .pt2 programs and code are "
        "refused), then stream the files the engine reads to the server as a tar made on the fly, and "
        "print the upload's id (use it as model.path with model.source huggingface). A .zip or tar archive "
        "of such a directory is sent as it is.",
        with_client(upload_model_command),
        parent=kinds,
    )
    model.add_argument("path", metavar="DIR", help="the model directory (or a .zip/.tar(.gz) of it)")
    model.add_argument("--name", metavar="NAME", help="a label (default: the directory name)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -- running a command -------------------------------------------------------------------------------------
def _prog(args: argparse.Namespace) -> str:
    words = [args.command] + ([args.upload_kind] if getattr(args, "upload_kind", None) else [])
    return "lbc " + " ".join(words)


def _error(args: argparse.Namespace, message: str) -> None:
    say(f"{_prog(args)}: error: {message}", file=sys.stderr)


def with_client(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Resolve the server and key, run the handler with a Client, and turn every error into its exit code."""

    def run(args: argparse.Namespace) -> int:
        from client import Client, ClientError, resolve_config

        config: Config | None = None
        try:
            config = resolve_config(args.url, args.key)
            assert config.url is not None
            with Client(config.url, config.api_key) as api:
                return handler(api, args)
        except ClientError as exc:
            return report_error(args, exc, config)
        except BrokenPipeError:  # our reader went away (`lbc logs ID | head`): `main` ends quietly with 141
            raise
        except OSError as exc:  # a local file (spec, upload, download target)
            _error(args, str(exc))
            return EXIT_USAGE if isinstance(exc, FileNotFoundError | IsADirectoryError) else EXIT_FAILED
        except KeyboardInterrupt:
            say(f"\n{_prog(args)}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run


def report_error(args: argparse.Namespace, exc: Exception, config: Config | None) -> int:
    """Print what went wrong and return the exit code for it."""
    from client import (
        ApiError,
        ChecksumMismatch,
        ConfigError,
        ConnectionFailed,
        InvalidArgument,
        SpecFileError,
    )

    if isinstance(exc, ApiError):
        where = f" (request {exc.request_id})" if exc.request_id and exc.status >= 500 else ""
        if exc.status in (400, 422):
            _error(args, exc.message)
            for field, message in exc.field_problems:
                say(f"  {field or '(document)'}: {message}", file=sys.stderr)
            return EXIT_USAGE
        if exc.status in (401, 403):
            _error(args, f"{exc.message} ({exc.status})")
            if config is not None and not config.api_key:
                say("  no API key: pass --key, set LBC_API_KEY, or run `lbc login`", file=sys.stderr)
            elif config is not None:
                say(f"  the API key from {config.key_source} was rejected by {config.url}", file=sys.stderr)
            return EXIT_AUTH
        if exc.status == 404:
            _error(args, exc.message)
            return EXIT_NOT_FOUND
        _error(args, f"{exc.message} ({exc.status} {exc.code}){where}")
        return EXIT_FAILED
    if isinstance(exc, ConnectionFailed):
        _error(args, str(exc))
        say("  is the service running? (`lbc serve`, or check --url / LBC_URL)", file=sys.stderr)
        return EXIT_CONNECT
    if isinstance(exc, SpecFileError | ConfigError | InvalidArgument):
        _error(args, str(exc))
        return EXIT_USAGE
    if isinstance(exc, ChecksumMismatch):
        _error(args, f"{exc}; run the command again to download it afresh")
        return EXIT_FAILED
    _error(args, str(exc))
    return EXIT_FAILED


def _print_json(data: Any) -> None:
    from client.models import to_jsonable

    say(json.dumps(to_jsonable(data), indent=2))


def follow_job(api: Client, job_id: str) -> tuple[Job, int]:
    """Watch a job live on stderr until it ends; the final job and its exit code."""
    from cli.client_watch import JobWatcher, format_outcome

    watcher = JobWatcher(job_id)
    try:
        job = api.wait(job_id, on_event=watcher.on_event)
    except KeyboardInterrupt:
        say(
            f"\nstopped watching; job {job_id} keeps running (`lbc cancel {job_id}` stops it)",
            file=sys.stderr,
        )
        raise
    finally:
        watcher.close()
    say(format_outcome(job), file=sys.stderr)
    return job, JOB_EXIT_CODES.get(job.state, EXIT_FAILED)


# -- commands ----------------------------------------------------------------------------------------------
def login_command(args: argparse.Namespace) -> int:
    from client import Client, ClientError, Config, save_config
    from client.config import DEFAULT_URL, KEY_ENV, URL_ENV

    key = args.key or os.environ.get(KEY_ENV)
    if key == "-":
        key = sys.stdin.readline().strip()
    if not key:
        _error(args, "needs --key KEY (or --key - to read it from stdin, or LBC_API_KEY)")
        return EXIT_USAGE
    url = (args.url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    config = Config(url=url, api_key=key, url_source="--url", key_source="--key")
    try:
        with Client(url, key) as api:
            api.list_jobs(limit=1)  # any authenticated request proves the key
        path = save_config(url, key)
    except ClientError as exc:
        return report_error(args, exc, config)
    except OSError as exc:
        _error(args, f"cannot save the client config: {exc}")
        return EXIT_FAILED
    say(f"logged in to {url}; saved in {path}")
    return EXIT_OK


def submit_command(api: Client, args: argparse.Namespace) -> int:
    from client import ApiError, parse_spec_text, read_spec
    from client.spec_text import MAX_SPEC_BYTES

    if args.spec == "-":  # read one character past the limit at most: enough to refuse a larger input
        spec = parse_spec_text(sys.stdin.read(MAX_SPEC_BYTES + 1), "<stdin>")
    else:
        spec = read_spec(args.spec)
    try:
        job = api.submit(spec, idempotency_key=args.idempotency_key)
    except ApiError as exc:
        hints = upload_hints(exc, spec) if exc.status == 422 else []
        if not hints:
            raise
        code = report_error(args, exc, None)
        for hint in hints:
            say(f"  hint: {hint}", file=sys.stderr)
        return code
    say(job.id, flush=True)
    if not args.wait:
        return EXIT_OK
    _, code = follow_job(api, job.id)
    return code


# Spec fields the service reads as upload ids, and the upload command for each (``{source}``: the dataset's).
_UPLOAD_COMMANDS = {
    "dataset.path": "lbc upload dataset {path} --format {source}",
    "dataset.val_path": "lbc upload dataset {path} --format {source}",
    "dataset.tokenizer": "lbc upload dataset {path} --format tokenizer",
    "model.checkpoint": "lbc upload checkpoint {path}",
    "model.path": "lbc upload model {path}",
}


def upload_hints(exc: ApiError, spec: dict[str, Any]) -> list[str]:
    """For each upload the server did not find that names a file or directory here (a spec written for
    ``lbc train``), the command that uploads it."""
    hints = []
    for field, message in exc.field_problems:
        command = _UPLOAD_COMMANDS.get(field)
        section, _, key = field.partition(".")
        part = spec.get(section)
        if command is None or not message.endswith("does not exist") or not isinstance(part, dict):
            continue
        value = part.get(key)
        if not isinstance(value, str) or not os.path.exists(value):
            continue
        source = part.get("source", "FORMAT") if section == "dataset" else ""
        upload = command.format(path=shlex.quote(value), source=source)
        hints.append(
            f"{value} exists here, but the service reads uploads: `{upload}` prints the id for {field}"
        )
    return hints


def jobs_command(api: Client, args: argparse.Namespace) -> int:
    more = False
    if args.all:
        items = list(api.iter_jobs(args.state, args.method, args.pattern, page_size=MAX_PAGE))
    elif args.limit > MAX_PAGE:  # more than one page holds
        jobs = api.iter_jobs(args.state, args.method, args.pattern, page_size=MAX_PAGE)
        items = list(itertools.islice(jobs, args.limit + 1))
        items, more = items[: args.limit], len(items) > args.limit
    else:
        page = api.list_jobs(args.state, args.method, args.pattern, limit=args.limit)
        items, more = list(page.items), page.next_cursor is not None
    if args.json:
        _print_json(items)
        return EXIT_OK
    if not items:
        say("no jobs", file=sys.stderr)
        return EXIT_OK
    say(format_jobs_table(items))
    if more:
        say(f"(showing the newest {len(items)}; --all or --limit N for more)", file=sys.stderr)
    return EXIT_OK


def format_jobs_table(jobs: list[Job]) -> str:
    from cli.client_watch import format_time

    header = ("ID", "STATE", "PHASE", "METHOD", "PATTERN", "MODEL", "PROGRESS", "CREATED", "NAME")
    rows = [header]
    for job in jobs:
        progress = job.progress
        shown = ""
        if "epoch" in progress:
            shown = f"{progress['epoch']}/{progress.get('epochs', '?')}"
            if isinstance(progress.get("fraction"), int | float):
                shown += f" {progress['fraction']:.0%}"
        rows.append(
            (
                job.id,
                # Marked, so a succeeded job with a useless model stands out of the list.
                job.state + "".join(f" ({warning.code})" for warning in job.warnings),
                job.phase or "-",
                job.method,
                job.pattern,
                job.architecture,
                shown or "-",
                format_time(job.created_at),
                job.name or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def status_command(api: Client, args: argparse.Namespace) -> int:
    if args.watch:
        job, code = follow_job(api, args.job_id)
        if args.json:
            _print_json(job)
        return code
    job = api.get_job(args.job_id)
    if args.json:
        _print_json(job)
    else:
        say(format_job(job))
    return EXIT_OK


def format_job(job: Job) -> str:
    from cli.client_watch import format_outcome, format_progress, format_time

    lines = [
        ("job", job.id + (f"  ({job.name})" if job.name else "")),
        ("state", job.state + (f" (phase {job.phase})" if job.phase else "")),
        ("method", f"{job.method} {job.pattern} on {job.architecture}"),
        ("attempt", f"{job.attempt}/{job.max_attempts}"),
        ("created", format_time(job.created_at)),
        ("started", format_time(job.started_at)),
        ("finished", format_time(job.finished_at)),
    ]
    if job.progress:
        lines.append(("progress", format_progress(job.progress)))
    if job.error_type or job.error_message:
        lines.append(("error", f"{job.error_type or 'error'}: {job.error_message or ''}"))
    if job.finished:
        outcome, *warnings = format_outcome(job).splitlines()
        lines.append(("outcome", outcome))
        lines.extend(("warning", line.removeprefix("WARNING ")) for line in warnings)
    return "\n".join(f"{label:<9} {value}" for label, value in lines)


def logs_command(api: Client, args: argparse.Namespace) -> int:
    if args.follow:
        for line in api.follow_logs(args.job_id, tail=args.tail):
            say(line, flush=True)
        return EXIT_OK
    if args.tail is not None:
        for item in api.logs(args.job_id, tail=args.tail).lines:
            say(item.line)
        return EXIT_OK
    after: int | None = None
    while True:
        page = api.logs(args.job_id, after=after)
        for item in page.lines:
            say(item.line)
        if not page.lines or page.next_after == after:
            return EXIT_OK
        after = page.next_after


def cancel_command(api: Client, args: argparse.Namespace) -> int:
    job = api.cancel(args.job_id)
    say(f"{job.id} {job.state}")
    if job.state == "cancelling":
        say("the worker stops the job within seconds (it keeps its latest checkpoint)", file=sys.stderr)
    return EXIT_OK


def retry_command(api: Client, args: argparse.Namespace) -> int:
    job = api.retry(args.job_id)
    say(f"{job.id} {job.state}")
    return EXIT_OK


def download_command(api: Client, args: argparse.Namespace) -> int:
    from client import ApiError

    directory = Path(args.to or args.job_id)
    if directory.exists() and not directory.is_dir():  # checked before anything is fetched
        where = f"--to {directory}" if args.to else f"{directory} (the default directory)"
        _error(args, f"{where} is a file; give the directory the artifacts go to")
        return EXIT_USAGE
    artifacts = api.artifacts(args.job_id)
    if args.name:
        known = {a.name: a for a in artifacts}
        missing = [name for name in args.name if name not in known]
        if missing:
            available = ", ".join(sorted(known)) or "none yet"
            raise ApiError(
                "not_found", f"job {args.job_id} has no artifact {missing[0]!r} (available: {available})", 404
            )
        artifacts = [known[name] for name in args.name]
    if not artifacts:
        job = api.get_job(args.job_id)
        _error(args, f"job {job.id} has no artifacts (state {job.state})")
        return EXIT_FAILED
    directory.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        path = api.download_artifact(args.job_id, artifact.name, directory, artifact=artifact)
        say(f"{path}  {_size(artifact.size)}  sha256 {artifact.sha256} ok", flush=True)
    return EXIT_OK


def upload_dataset_command(api: Client, args: argparse.Namespace) -> int:
    dataset = api.upload_dataset(args.path, args.format, name=args.name)
    say(dataset.id)
    say(
        f"uploaded dataset {dataset.name!r} ({dataset.format}, {_size(dataset.size)}){_summary(dataset.summary)}",
        file=sys.stderr,
    )
    return EXIT_OK


def upload_checkpoint_command(api: Client, args: argparse.Namespace) -> int:
    checkpoint = api.upload_checkpoint(args.path, name=args.name, format=args.format)
    say(checkpoint.id)
    say(
        f"uploaded checkpoint {checkpoint.name!r} ({checkpoint.format}, {_size(checkpoint.size)})"
        f"{_summary(checkpoint.summary)}",
        file=sys.stderr,
    )
    return EXIT_OK


def upload_model_command(api: Client, args: argparse.Namespace) -> int:
    path = Path(args.path)
    files: list[str] | None = None
    if path.is_dir():
        try:
            # The server runs the same check; here it fails in a second instead of after the upload.
            info = check_model_dir(path)
        except FormatError as exc:
            _error(args, f"{path}: {exc}")
            return EXIT_USAGE
        files = list(info.files)
        size = sum((path / name).stat().st_size for name in files)
        say(f"sending {len(files)} files ({_size(size)}): {', '.join(files)}", file=sys.stderr, flush=True)
    model = api.upload_model(path, name=args.name, files=files)
    say(model.id)
    summary = model.summary
    say(
        f"uploaded model {model.name!r} ({summary.get('model_type')}, "
        f"{summary.get('parameter_count', 0):,} parameters, tasks: {', '.join(summary.get('tasks') or [])}, "
        f"{_size(model.size)})"
        + (
            f"; config keys stripped: {', '.join(summary['stripped_config_keys'])}"
            if summary.get("stripped_config_keys")
            else ""
        ),
        file=sys.stderr,
    )
    return EXIT_OK


def _summary(summary: dict[str, Any]) -> str:
    shown = [
        f"{k} {v}" for k, v in summary.items() if isinstance(v, int | float | str) and not isinstance(v, bool)
    ]
    return f": {', '.join(shown[:6])}" if shown else ""


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
