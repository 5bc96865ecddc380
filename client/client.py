"""``Client``: a small synchronous client of the REST API (httpx), with typed results and event iterators.

It never imports the server's code: it speaks HTTP and JSON only, so it can run anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from client.config import resolve_config
from client.errors import (
    ApiError,
    ChecksumMismatch,
    ClientError,
    ConfigError,
    ConnectionFailed,
    InvalidArgument,
    SpecFileError,
    WaitTimeout,
)
from client.models import (
    Artifact,
    CheckpointInfo,
    Dataset,
    Event,
    HFModelInfo,
    Job,
    JobPage,
    LogPage,
    ModelInfo,
)
from client.spec_text import SpecTextError, load_spec_file, load_spec_text
from client.sse import SSEDecoder
from client.tar_stream import TarStream

USER_AGENT = "lbc-client/1.0"
CHUNK_SIZE = 1 << 16
MAX_RETRY_DELAY = 5.0
_RETRY_STATUSES = frozenset({502, 503, 504})


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A job spec file as data: JSON for ``.json``, YAML otherwise, read by the one bounded spec reader
    (``client.spec_text``) that the service uses too. The server validates the content."""
    try:
        data = load_spec_file(path)
    except SpecTextError as exc:
        raise SpecFileError(f"{Path(path)}: {exc}") from None
    return _spec_mapping(data, str(Path(path)))


def parse_spec_text(text: str, source: str = "<spec>", *, is_json: bool = False) -> dict[str, Any]:
    """Spec text (YAML, or JSON, which YAML also reads) as data; raises SpecFileError."""
    try:
        data = load_spec_text(text, is_json=is_json)
    except SpecTextError as exc:
        raise SpecFileError(f"{source}: {exc}") from None
    return _spec_mapping(data, source)


def _spec_mapping(data: Any, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecFileError(f"{source}: a job spec is a mapping (model, dataset, sparsity, train, ...)")
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _segment(value: str, what: str) -> str:
    """``value`` as one path segment. A blank id, ``.`` or ``..`` is refused before anything is sent: the URL
    would resolve them away or reach another route (``/v1/jobs/.`` is the job list)."""
    text = str(value)
    if not text.strip() or text in (".", ".."):
        raise InvalidArgument(f"{text!r} is not {what}")
    return quote(text, safe="")


def _reason(exc: httpx.HTTPError) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _artifact_path(name: str) -> Path:
    """An artifact name as a relative path that stays inside the target directory."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise ClientError(f"refusing to write artifact {name!r}: not a plain relative path")
    return Path(*parts)


class Client:
    """The service's REST API under ``/v1``.

    >>> with Client.from_config() as lbc:          # --url/--key, LBC_URL/LBC_API_KEY, or the config file
    ...     job = lbc.submit("examples/quickstart.yaml")
    ...     job = lbc.wait(job.id)
    ...     lbc.download_all(job.id, "out/")

    Errors: :class:`ApiError` (the server's error envelope), :class:`ConnectionFailed` (the server cannot
    be reached), :class:`ChecksumMismatch` (a download does not match its listed sha256).
    Requests that are safe to repeat are retried ``retries`` times on connection trouble and on 502/503/504;
    every request is retried when the connection could not even be opened. Submissions carry an
    ``Idempotency-Key``, so a retried submit never creates a second job.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
        retry_delay: float = 0.25,
        stream_read_timeout: float = 60.0,
    ) -> None:
        base_url = base_url.strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the server URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url
        self.timeout = timeout
        self.retries = max(0, retries)
        self.retry_delay = retry_delay
        # Longer than the server's 15 s heartbeat: a silent stream is a dead one.
        self.stream_read_timeout = stream_read_timeout
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def from_config(cls, url: str | None = None, api_key: str | None = None, **kwargs: Any) -> Client:
        """Explicit arguments, then ``LBC_URL``/``LBC_API_KEY``, then the config file (see client.config)."""
        config = resolve_config(url, api_key)
        assert config.url is not None
        return cls(config.url, config.api_key, **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- jobs ------------------------------------------------------------------------------------------
    def submit(
        self, spec: Mapping[str, Any] | str | os.PathLike[str], idempotency_key: str | None = None
    ) -> Job:
        """Submit a spec (data, or a YAML/JSON file). The Idempotency-Key (a fresh one by default) makes
        retries safe: the server returns the job the first attempt created."""
        body = dict(spec) if isinstance(spec, Mapping) else read_spec(spec)
        key = idempotency_key or uuid.uuid4().hex
        response = self._send("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        return Job.from_json(self._json(response))

    def get_job(self, job_id: str) -> Job:
        return Job.from_json(self._json(self._send("GET", f"/v1/jobs/{_segment(job_id, 'a job id')}")))

    def list_jobs(
        self,
        state: str | None = None,
        method: str | None = None,
        pattern: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """One page, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("status", state), ("method", method), ("pattern", pattern), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        return JobPage.from_json(self._json(self._send("GET", "/v1/jobs", params=params)))

    def iter_jobs(
        self,
        state: str | None = None,
        method: str | None = None,
        pattern: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every matching job, newest first, page by page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(state, method, pattern, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        """Queued: cancelled at once; running: ``cancelling`` until the worker stops. A finished job is an
        ApiError 409 naming its state."""
        return Job.from_json(
            self._json(
                self._send("POST", f"/v1/jobs/{_segment(job_id, 'a job id')}/cancel", idempotent=False)
            )
        )

    def retry(self, job_id: str) -> Job:
        """A failed or cancelled job back to ``queued`` (it resumes from its latest checkpoint)."""
        return Job.from_json(
            self._json(self._send("POST", f"/v1/jobs/{_segment(job_id, 'a job id')}/retry", idempotent=False))
        )

    # -- progress --------------------------------------------------------------------------------------
    def events(
        self,
        job_id: str,
        last_event_id: int | None = None,
        follow: bool = True,
        *,
        max_reconnects: int = 5,
    ) -> Generator[Event, None, None]:
        """The job's events after ``last_event_id``, oldest first (Server-Sent Events).

        With ``follow`` the iterator ends once the job is finished and every event was delivered;
        without it, once the events that exist now were delivered. A dropped connection is reopened
        with ``Last-Event-ID``, so no event repeats or goes missing; after ``max_reconnects`` failures
        in a row it raises :class:`ConnectionFailed`. ``close()`` on the iterator closes the connection;
        to resume later, pass the last event's ``id`` as ``last_event_id``.
        """
        return self._events(job_id, last_event_id, follow, max_reconnects=max_reconnects)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> Job:
        """Follow the job's events until it is finished and return the final job; ``on_event`` sees each
        event (history first). Raises :class:`WaitTimeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_id: int | None = None
        while True:
            for event in self._events(job_id, last_id, True, deadline=deadline, timeout=timeout):
                last_id = event.id
                if on_event is not None:
                    on_event(event)
            job = self.get_job(job_id)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job_id, timeout or 0.0)

    def logs(
        self, job_id: str, tail: int | None = None, after: int | None = None, limit: int | None = None
    ) -> LogPage:
        """Log lines: the last ``tail`` ones, or those of log events after event id ``after``."""
        params: dict[str, Any] = {}
        for name, value in (("tail", tail), ("after", after), ("limit", limit)):
            if value is not None:
                params[name] = value
        response = self._send(
            "GET",
            f"/v1/jobs/{_segment(job_id, 'a job id')}/logs",
            params=params,
            headers={"Accept": "application/json"},
        )
        return LogPage.from_json(self._json(response))

    def follow_logs(self, job_id: str, tail: int | None = None) -> Generator[str, None, None]:
        """The log (or its last ``tail`` lines), then new lines as they come, until the job is finished."""
        start = 0
        if tail is not None:
            page = self.logs(job_id, tail=tail)
            yield from (item.line for item in page.lines)
            start = page.next_after
        for event in self.events(job_id, last_event_id=start, follow=True):
            yield from event.log_lines

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """Per-epoch metrics, oldest first (loss, accuracy, learning rate, alive combinations per group)."""
        data = self._json(self._send("GET", f"/v1/jobs/{_segment(job_id, 'a job id')}/metrics"))
        history = data.get("history", [])
        return [dict(item) for item in history if isinstance(item, Mapping)]

    # -- artifacts -------------------------------------------------------------------------------------
    def artifacts(self, job_id: str) -> list[Artifact]:
        data = self._json(self._send("GET", f"/v1/jobs/{_segment(job_id, 'a job id')}/artifacts"))
        return [Artifact.from_json(item) for item in data.get("items", [])]

    def download_artifact(
        self,
        job_id: str,
        name: str,
        dest: str | os.PathLike[str],
        *,
        artifact: Artifact | None = None,
    ) -> Path:
        """Download one artifact to ``dest`` (a file path, or an existing directory to put it in).

        The bytes go to ``<dest>.part`` and are checked against the listed sha256 and size before an
        atomic rename; a mismatch deletes them and raises :class:`ChecksumMismatch`. An existing
        ``.part`` file is resumed with a Range request (If-Range on the ETag), a dropped transfer is
        resumed up to ``retries`` times, and a ``dest`` that already matches is not downloaded again.
        """
        if artifact is None:
            listing = {a.name: a for a in self.artifacts(job_id)}
            if name not in listing:
                raise ApiError("not_found", f"job {job_id} has no artifact {name!r}", 404)
            artifact = listing[name]
        target = Path(dest)
        if target.is_dir():
            target = target / _artifact_path(artifact.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if (
            target.is_file()
            and target.stat().st_size == artifact.size
            and sha256_file(target) == artifact.sha256
        ):
            return target
        part = target.with_name(target.name + ".part")
        failures = 0
        while True:
            try:
                self._fetch(job_id, artifact, part)
                break
            except ConnectionFailed:
                failures += 1
                if failures > self.retries:
                    raise  # the .part file stays: the next call resumes it
                time.sleep(self._delay(failures))
        actual = sha256_file(part)
        if actual != artifact.sha256 or part.stat().st_size != artifact.size:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(artifact.name, artifact.sha256, actual)
        os.replace(part, target)
        return target

    def download_all(self, job_id: str, to_dir: str | os.PathLike[str]) -> list[Path]:
        """Every artifact of the job under ``to_dir`` (created), each verified; returns the paths."""
        directory = Path(to_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return [
            self.download_artifact(job_id, a.name, directory / _artifact_path(a.name), artifact=a)
            for a in self.artifacts(job_id)
        ]

    def _fetch(self, job_id: str, artifact: Artifact, part: Path) -> None:
        """Bring ``part`` to the artifact's full size (resuming what is there); does not verify."""
        path = f"/v1/jobs/{_segment(job_id, 'a job id')}/artifacts/{quote(artifact.name, safe='/')}"
        timeout = httpx.Timeout(self.timeout, read=self.stream_read_timeout)
        for _ in range(2):  # a second round only after the partial file was found unusable
            offset = part.stat().st_size if part.is_file() else 0
            if offset > artifact.size:
                offset = 0
            if offset == artifact.size and offset > 0:
                return
            headers = {"Accept": "*/*"}
            if offset:
                # If-Range: should the artifact have changed, the server sends all of it (200), not a range.
                headers.update({"Range": f"bytes={offset}-", "If-Range": f'"{artifact.sha256}"'})
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    status = response.status_code
                    if offset and (
                        status == 416
                        or (
                            status == 206
                            and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
                        )
                    ):
                        part.unlink(missing_ok=True)  # the server cannot continue this partial file
                        continue
                    if status not in (200, 206):
                        raise ApiError.from_response(response)
                    with part.open("ab" if status == 206 else "wb") as handle:
                        for chunk in response.iter_bytes(CHUNK_SIZE):
                            handle.write(chunk)
                        handle.flush()
                        os.fsync(handle.fileno())
                    return
            except httpx.TransportError as exc:
                raise ConnectionFailed(self.base_url, _reason(exc)) from exc
        raise ClientError(f"the server does not resume {artifact.name!r} from byte {offset}")

    # -- uploads ---------------------------------------------------------------------------------------
    def upload_dataset(self, path: str | os.PathLike[str], format: str, name: str | None = None) -> Dataset:
        """Upload a dataset file (streamed) of ``format`` mnist, npz, imagefolder, cifar10, cifar100, text,
        labeled-text or tokenizer;
        the server validates it. Use the returned id as ``dataset.path`` in a spec."""
        return Dataset.from_json(
            self._upload(
                "/v1/datasets",
                path,
                {"format": format, "name": name},
                directory_hint="a dataset is uploaded as one file: pack the directory into a .zip or tar "
                "archive first (mnist and imagefolder datasets are archives), e.g. `tar -cf data.tar -C DIR .`",
            )
        )

    def upload_checkpoint(
        self, path: str | os.PathLike[str], name: str | None = None, format: str | None = None
    ) -> CheckpointInfo:
        """Upload dense starting weights (safetensors, or a torch zip file that is scanned, never
        unpickled). Use the returned id as ``model.checkpoint``."""
        return CheckpointInfo.from_json(
            self._upload(
                "/v1/checkpoints",
                path,
                {"format": format, "name": name},
                directory_hint="upload the weights file itself (.safetensors, or a torch .pt file)",
            )
        )

    def upload_model(
        self, path: str | os.PathLike[str], name: str | None = None, *, files: list[str] | None = None
    ) -> HFModelInfo:
        """Upload a Hugging Face model: a directory (streamed as a tar made on the fly from its top-level
        files, or from ``files``) or a .zip/.tar(.gz) archive of one. The server checks it without running
        or unpickling anything. Use the returned id as ``model.path`` with ``model.source: huggingface``."""
        source = Path(path)
        if not source.is_dir():
            return HFModelInfo.from_json(
                self._upload("/v1/hf-models", source, {"name": name}, directory_hint="")
            )
        names = (
            files
            if files is not None
            else sorted(p.name for p in source.iterdir() if p.is_file() and not p.is_symlink())
        )
        stream = TarStream(source, names, source.resolve().name or "model")
        with stream:
            return HFModelInfo.from_json(
                self._post_file(
                    "/v1/hf-models", f"{source.resolve().name or 'model'}.tar", stream, {"name": name}
                )
            )

    def list_hf_models(self, limit: int = 200) -> list[HFModelInfo]:
        data = self._json(self._send("GET", "/v1/hf-models", params={"limit": limit}))
        return [HFModelInfo.from_json(item) for item in data.get("items", [])]

    def get_hf_model(self, model_id: str) -> HFModelInfo:
        return HFModelInfo.from_json(
            self._json(self._send("GET", f"/v1/hf-models/{_segment(model_id, 'a model id')}"))
        )

    def delete_hf_model(self, model_id: str) -> None:
        """409 (ApiError) while an unfinished job uses it."""
        self._send("DELETE", f"/v1/hf-models/{_segment(model_id, 'a model id')}", idempotent=False)

    def list_datasets(self, limit: int = 200) -> list[Dataset]:
        data = self._json(self._send("GET", "/v1/datasets", params={"limit": limit}))
        return [Dataset.from_json(item) for item in data.get("items", [])]

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(
            self._json(self._send("GET", f"/v1/datasets/{_segment(dataset_id, 'a dataset id')}"))
        )

    def delete_dataset(self, dataset_id: str) -> None:
        """409 (ApiError) while an unfinished job uses it."""
        self._send("DELETE", f"/v1/datasets/{_segment(dataset_id, 'a dataset id')}", idempotent=False)

    def list_checkpoints(self, limit: int = 200) -> list[CheckpointInfo]:
        data = self._json(self._send("GET", "/v1/checkpoints", params={"limit": limit}))
        return [CheckpointInfo.from_json(item) for item in data.get("items", [])]

    def get_checkpoint(self, checkpoint_id: str) -> CheckpointInfo:
        response = self._send("GET", f"/v1/checkpoints/{_segment(checkpoint_id, 'a checkpoint id')}")
        return CheckpointInfo.from_json(self._json(response))

    def delete_checkpoint(self, checkpoint_id: str) -> None:
        self._send(
            "DELETE", f"/v1/checkpoints/{_segment(checkpoint_id, 'a checkpoint id')}", idempotent=False
        )

    def _upload(
        self,
        endpoint: str,
        path: str | os.PathLike[str],
        fields: dict[str, str | None],
        *,
        directory_hint: str,
    ) -> dict[str, Any]:
        file = Path(path)
        if file.is_dir():
            raise IsADirectoryError(f"{file} is a directory; {directory_hint}")
        if not file.exists():
            raise FileNotFoundError(f"{file}: no such file")
        if not file.is_file():
            raise OSError(f"{file} is not a regular file (a device, socket or pipe); upload a file")
        with file.open("rb") as handle:
            return self._post_file(endpoint, file.name, handle, fields)

    def _post_file(
        self, endpoint: str, filename: str, handle: Any, fields: Mapping[str, str | None]
    ) -> dict[str, Any]:
        data = {k: v for k, v in fields.items() if v is not None}
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, 600.0))
        files = {"file": (filename, handle, "application/octet-stream")}
        # Not retried: the body is a stream that was (partly) read.
        response = self._send(
            "POST",
            endpoint,
            idempotent=False,
            retry_connect=False,
            files=files,
            data=data,
            timeout=timeout,
        )
        return self._json(response)

    # -- catalogue -------------------------------------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        """The built-in architectures, their arguments and which layers get an N:M mask."""
        data = self._json(self._send("GET", "/v1/models"))
        return [ModelInfo.from_json(item) for item in data.get("items", [])]

    def get_model(self, name: str) -> ModelInfo:
        return ModelInfo.from_json(
            self._json(self._send("GET", f"/v1/models/{_segment(name, 'an architecture name')}"))
        )

    # -- plumbing --------------------------------------------------------------------------------------
    def _delay(self, attempt: int) -> float:
        return float(min(MAX_RETRY_DELAY, self.retry_delay * 2 ** (attempt - 1)))

    def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        retry_connect: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                # A connection that never opened carried no request: repeating it is always safe.
                never_sent = retry_connect and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (idempotent or never_sent) and attempt < self.retries:
                    attempt += 1
                    time.sleep(self._delay(attempt))
                    continue
                raise ConnectionFailed(self.base_url, _reason(exc)) from exc
            if response.status_code in _RETRY_STATUSES and idempotent and attempt < self.retries:
                attempt += 1
                time.sleep(self._retry_after(response, attempt))
                continue
            if response.is_error:
                raise ApiError.from_response(response)
            return response

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        try:
            return min(MAX_RETRY_DELAY, max(0.0, float(response.headers.get("Retry-After", ""))))
        except ValueError:
            return self._delay(attempt)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ClientError(
                f"unexpected response from {response.request.method} {response.request.url.path}: not JSON"
            ) from None
        if not isinstance(data, dict):
            raise ClientError(f"unexpected response from {response.request.url.path}: not a JSON object")
        return data

    def _events(
        self,
        job_id: str,
        last_id: int | None,
        follow: bool,
        *,
        max_reconnects: int = 5,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> Generator[Event, None, None]:
        path = f"/v1/jobs/{_segment(job_id, 'a job id')}/events"
        failures = 0
        connected = False  # until a stream opens, a failure means a server that is not there: fewer retries
        while True:
            read_timeout = self.stream_read_timeout
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0)
                read_timeout = min(read_timeout, remaining)
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            params = {"follow": "true" if follow else "false"}
            received = finished = False
            try:
                with self._http.stream(
                    "GET",
                    path,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=read_timeout),
                ) as response:
                    if response.status_code in _RETRY_STATUSES and failures < max_reconnects:
                        failures += 1
                        time.sleep(self._retry_after(response, failures))
                        continue
                    if response.status_code != 200:
                        raise ApiError.from_response(response)
                    connected = True
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        message = decoder.feed(line)
                        if message is None:
                            continue
                        try:
                            event = Event.from_json(json.loads(message.data))
                        except (ValueError, KeyError, TypeError) as exc:
                            raise ClientError(
                                f"malformed event from the server: {message.data[:200]!r}"
                            ) from exc
                        last_id, received, failures = event.id, True, 0
                        finished = event.terminal
                        yield event
                        if deadline is not None and time.monotonic() >= deadline:
                            raise WaitTimeout(job_id, timeout or 0.0)
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(job_id, timeout or 0.0) from exc
                failures += 1
                if not connected and failures > self.retries:
                    raise ConnectionFailed(self.base_url, _reason(exc)) from exc
                if failures > max_reconnects:
                    raise ConnectionFailed(
                        self.base_url, f"the event stream kept failing: {_reason(exc)}"
                    ) from exc
                time.sleep(self._delay(failures))
                continue
            # The server ended the stream.
            if not follow or finished:
                return
            if received:
                continue  # closed mid-way (a proxy, a restart): resume at once from the last event
            if self.get_job(job_id).finished:
                return  # nothing after last_id and the job is over
            failures += 1
            if failures > max_reconnects:
                raise ConnectionFailed(
                    self.base_url, "the event stream keeps closing before the job finishes"
                )
            time.sleep(self._delay(failures))
