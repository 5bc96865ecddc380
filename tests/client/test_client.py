"""``client.Client`` against a real embedded service (``lbc serve``): jobs really run on its worker."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from client import (
    ApiError,
    ChecksumMismatch,
    Client,
    ConnectionFailed,
    Event,
    InvalidArgument,
    Job,
    SpecFileError,
    WaitTimeout,
    load_config,
)
from tests.client.server import FAILING_SPEC, LONG_SPEC, QUICK_SPEC, Server, running_server
from tests.integration.support import free_port

pytestmark = pytest.mark.timeout(180)


class RecordingTransport(httpx.BaseTransport):
    """The real HTTP transport, recording each request; it can cut the first ``drops`` event streams
    after ``cut_after`` bytes, the way a dropped connection does."""

    def __init__(self, drops: int = 0, cut_after: int = 0) -> None:
        self.inner = httpx.HTTPTransport()
        self.drops = drops
        self.cut_after = cut_after
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/events") and self.drops > 0:
            self.drops -= 1
            assert isinstance(response.stream, httpx.SyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=CutStream(response.stream, self.cut_after),
                extensions=response.extensions,
            )
        return response

    def close(self) -> None:
        self.inner.close()


class CutStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner:
            if sent + len(chunk) >= self.limit:
                yield chunk[: self.limit - sent]
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("client-server"), request) as running:
        yield running


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[Client]:
    with Client(server.url, server.key, retry_delay=0.05) as client:
        yield client


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("specs") / "quick.yaml"
    path.write_text(json.dumps(QUICK_SPEC))  # JSON is YAML too
    return path


@pytest.fixture(scope="module")
def finished(api: Client, spec_file: Path) -> Job:
    """A quick job submitted from a YAML file, followed to its end."""
    job = api.submit(spec_file, idempotency_key="quick-1")
    assert job.state == "queued" and job.name == "quick mlp"
    return api.wait(job.id, timeout=90)


@pytest.fixture(scope="module")
def failed(api: Client, finished: Job) -> Job:
    return api.wait(api.submit(FAILING_SPEC).id, timeout=60)


# -- config ---------------------------------------------------------------------------------------------
def test_serve_saves_the_url_and_key_for_the_client_with_mode_0600(server: Server) -> None:
    config = load_config(server.config_path)
    assert (config.url, config.api_key) == (server.url, server.key)
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert f"client config saved in {server.config_path}" in server.process.log()


# -- jobs -----------------------------------------------------------------------------------------------
def test_a_submitted_job_runs_and_wait_returns_it_finished(api: Client, finished: Job) -> None:
    assert finished.state == "succeeded" and finished.finished and finished.succeeded
    assert finished.result is not None and 0.0 < finished.result["val_accuracy"] <= 1.0
    assert finished.spec is not None and finished.spec["train"]["epochs"] == 2
    assert finished.links["events"] == f"/v1/jobs/{finished.id}/events"
    assert finished.started_at and finished.finished_at and finished.finished_at >= finished.started_at
    assert api.get_job(finished.id) == finished


def test_submit_with_the_same_idempotency_key_returns_the_first_job(api: Client, finished: Job) -> None:
    again = api.submit(QUICK_SPEC, idempotency_key="quick-1")  # a mapping this time, same content
    assert again.id == finished.id

    with pytest.raises(ApiError) as caught:
        api.submit({**QUICK_SPEC, "name": "other"}, idempotency_key="quick-1")
    assert caught.value.status == 409 and caught.value.details == {"job_id": finished.id}


def test_an_invalid_spec_is_an_api_error_listing_every_field(api: Client) -> None:
    spec = {**QUICK_SPEC, "model": {"architecture": "nope"}, "sparsity": {"method": "lbc", "n": 4, "m": 4}}
    with pytest.raises(ApiError) as caught:
        api.submit(spec)
    error = caught.value
    assert (error.status, error.code, error.message) == (422, "validation_error", "invalid job spec")
    fields = [field for field, _ in error.field_problems]
    assert "model.architecture" in fields and "sparsity.n" in fields
    assert error.request_id


def test_spec_files_that_cannot_be_read_fail_before_any_request(api: Client, tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match="file not found"):
        api.submit(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(SpecFileError, match="invalid YAML"):
        api.submit(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SpecFileError, match="a job spec is a mapping"):
        api.submit(tmp_path / "list.json")


def test_a_job_that_fails_on_the_worker_ends_failed_with_its_error(failed: Job) -> None:
    assert failed.state == "failed"
    assert failed.error_type == "time_limit" and "time limit" in (failed.error_message or "")


def test_list_jobs_filters_and_pages_without_repeats(api: Client, finished: Job, failed: Job) -> None:
    assert [job.id for job in api.list_jobs(state="succeeded").items] == [finished.id]
    assert [job.id for job in api.list_jobs(state="failed", method="lbc", pattern="2:4").items] == [failed.id]
    assert api.list_jobs(method="asp").items == ()

    first = api.list_jobs(limit=1)
    assert len(first.items) == 1 and first.items[0].id == failed.id and first.next_cursor
    second = api.list_jobs(limit=1, cursor=first.next_cursor)
    assert second.items[0].id == finished.id
    listed = [job.id for job in api.iter_jobs(page_size=1)]
    assert listed[:2] == [failed.id, finished.id] and len(listed) == len(set(listed))
    assert listed[0] == api.list_jobs(limit=1).items[0].id
    assert api.list_jobs().items[0].spec is None  # listings leave the spec out

    with pytest.raises(ApiError) as caught:
        api.list_jobs(pattern="2-4")
    assert caught.value.status == 422 and [f for f, _ in caught.value.field_problems] == ["pattern"]


def test_cancel_retry_and_wait_timeout_on_a_long_job(api: Client, failed: Job) -> None:
    job = api.submit(LONG_SPEC)
    with pytest.raises(WaitTimeout):
        api.wait(job.id, timeout=0.5)
    for event in api.events(job.id):  # until it trains
        if event.kind == "progress":
            break
    cancelling = api.cancel(job.id)
    assert cancelling.state in ("cancelling", "cancelled") and cancelling.cancel_requested

    cancelled = api.wait(job.id, timeout=30)
    assert cancelled.state == "cancelled"
    with pytest.raises(ApiError) as caught:
        api.cancel(job.id)
    error = caught.value
    assert (error.status, error.code) == (409, "illegal_transition")
    assert f"job {job.id} is cancelled" in error.message and error.details["state"] == "cancelled"

    assert api.retry(job.id).state == "queued"
    assert api.cancel(job.id).state in ("cancelled", "cancelling")
    assert api.wait(job.id, timeout=30).state == "cancelled"


def test_unknown_jobs_are_404_api_errors(api: Client) -> None:
    for call in (api.get_job, api.cancel, api.retry, api.artifacts, api.metrics, api.logs):
        with pytest.raises(ApiError) as caught:
            call("0" * 32)
        assert (caught.value.status, caught.value.code) == (404, "not_found"), call
    with pytest.raises(ApiError) as caught:
        list(api.events("0" * 32))
    assert caught.value.status == 404


# -- events ---------------------------------------------------------------------------------------------
def test_events_replay_the_history_in_order_and_end_with_the_final_state(api: Client, finished: Job) -> None:
    events = list(api.events(finished.id, follow=False))
    ids = [event.id for event in events]
    assert ids == sorted(set(ids))
    assert events[0].kind == "state" and events[0].data == {"state": "queued"}
    assert events[-1].terminal and events[-1].data["state"] == "succeeded"
    assert {"state", "phase", "progress", "metrics", "log"} <= {event.kind for event in events}
    metrics = [event.data for event in events if event.kind == "metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2] and "alive_per_group" in metrics[0]
    assert list(api.events(finished.id)) == events  # following a finished job ends too


def test_events_resume_after_the_last_seen_id_without_repeats_or_gaps(api: Client, finished: Job) -> None:
    everything = list(api.events(finished.id))
    stream = api.events(finished.id)
    seen = [next(stream) for _ in range(4)]
    stream.close()  # the connection goes away mid-stream

    rest = list(api.events(finished.id, last_event_id=seen[-1].id))
    assert seen + rest == everything


def test_a_dropped_event_stream_reconnects_with_last_event_id(server: Server, finished: Job) -> None:
    transport = RecordingTransport(drops=2, cut_after=700)  # cut in the middle of an event, twice
    with Client(server.url, server.key, transport=transport, retry_delay=0.01) as client:
        events = list(client.events(finished.id))
        reference = list(client.events(finished.id, follow=False))

    assert events == reference
    resumed = [r.headers.get("Last-Event-ID") for r in transport.requests if r.url.path.endswith("/events")]
    assert resumed[0] is None and all(value is not None for value in resumed[1:3])
    assert int(resumed[1]) < int(resumed[2]) < events[-1].id  # each reconnect resumed further on


def test_an_event_stream_that_keeps_dropping_gives_up_after_bounded_retries(
    server: Server, finished: Job
) -> None:
    transport = RecordingTransport(drops=100, cut_after=5)  # never gets a whole event through
    client = Client(server.url, server.key, transport=transport, retry_delay=0.01)
    with client, pytest.raises(ConnectionFailed, match="event stream kept failing"):
        list(client.events(finished.id, max_reconnects=3))
    assert sum(r.url.path.endswith("/events") for r in transport.requests) == 4


def test_wait_reports_every_event_to_on_event(api: Client, finished: Job) -> None:
    seen: list[Event] = []
    job = api.wait(finished.id, on_event=seen.append)
    assert job.state == "succeeded" and seen[-1].terminal and len(seen) > 5


# -- logs and metrics -----------------------------------------------------------------------------------
def test_logs_whole_tail_after_and_follow(api: Client, finished: Job) -> None:
    page = api.logs(finished.id)
    lines = [item.line for item in page.lines]
    assert any("phase: training" in line for line in lines) and page.next_after > 0
    tail = api.logs(finished.id, tail=2)
    assert [item.line for item in tail.lines] == lines[-2:]
    assert api.logs(finished.id, after=page.next_after).lines == ()
    assert list(api.follow_logs(finished.id, tail=1)) == lines[-1:]
    assert list(api.follow_logs(finished.id)) == lines

    with pytest.raises(ApiError) as caught:
        api.logs(finished.id, tail=1, after=1)
    assert caught.value.status == 422


def test_metrics_history_has_one_entry_per_epoch(api: Client, finished: Job) -> None:
    history = api.metrics(finished.id)
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert history[-1]["alive_per_group"] == 1.0 and "val_accuracy" in history[-1]


# -- artifacts ------------------------------------------------------------------------------------------
def test_download_all_verifies_every_artifact(api: Client, finished: Job, tmp_path: Path) -> None:
    artifacts = {a.name: a for a in api.artifacts(finished.id)}
    assert {"model.safetensors", "masks.safetensors", "manifest.json", "metrics.json"} <= set(artifacts)

    paths = api.download_all(finished.id, tmp_path / "out")

    assert sorted(p.name for p in paths) == sorted(artifacts)
    for path in paths:
        artifact = artifacts[path.name]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
        assert path.stat().st_size == artifact.size
    assert not list((tmp_path / "out").glob("*.part"))


def test_a_partial_download_is_resumed_with_a_range_request(
    server: Server, finished: Job, tmp_path: Path
) -> None:
    transport = RecordingTransport()
    with Client(server.url, server.key, transport=transport) as client:
        artifact = next(a for a in client.artifacts(finished.id) if a.name == "model.safetensors")
        whole = client.download_artifact(finished.id, artifact.name, tmp_path / "whole.safetensors")
        content = whole.read_bytes()
        target = tmp_path / "resumed.safetensors"
        Path(f"{target}.part").write_bytes(content[: artifact.size // 2])

        assert client.download_artifact(finished.id, artifact.name, target) == target
        assert target.read_bytes() == content and not Path(f"{target}.part").exists()
        ranged = [r for r in transport.requests if "Range" in r.headers]
        assert [r.headers["Range"] for r in ranged] == [f"bytes={artifact.size // 2}-"]
        assert ranged[0].headers["If-Range"] == f'"{artifact.sha256}"'

        # Already there and verified: nothing is fetched again.
        count = len(transport.requests)
        client.download_artifact(finished.id, artifact.name, target, artifact=artifact)
        assert len(transport.requests) == count


def test_a_corrupt_partial_download_is_detected_and_discarded(
    api: Client, finished: Job, tmp_path: Path
) -> None:
    artifact = next(a for a in api.artifacts(finished.id) if a.name == "model.safetensors")
    target = tmp_path / "model.safetensors"
    part = Path(f"{target}.part")
    part.write_bytes(b"\0" * (artifact.size // 2))  # the wrong first half

    with pytest.raises(ChecksumMismatch) as caught:
        api.download_artifact(finished.id, artifact.name, target)
    assert caught.value.expected == artifact.sha256 and caught.value.actual != artifact.sha256
    assert not part.exists() and not target.exists()

    api.download_artifact(finished.id, artifact.name, target)  # the next attempt starts afresh
    assert hashlib.sha256(target.read_bytes()).hexdigest() == artifact.sha256


def test_downloading_an_unknown_artifact_is_a_404(api: Client, finished: Job, tmp_path: Path) -> None:
    with pytest.raises(ApiError) as caught:
        api.download_artifact(finished.id, "nope.bin", tmp_path / "nope.bin")
    assert caught.value.status == 404 and "nope.bin" in caught.value.message


# -- uploads and the catalogue --------------------------------------------------------------------------
def test_dataset_upload_get_list_delete(api: Client, tmp_path: Path) -> None:
    path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((40, 8, 8), dtype=np.float32), y=np.arange(40) % 4)

    dataset = api.upload_dataset(path, "npz", name="tiny")

    assert (dataset.name, dataset.format, dataset.size) == ("tiny", "npz", path.stat().st_size)
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert api.get_dataset(dataset.id) == dataset
    assert dataset.id in [d.id for d in api.list_datasets()]
    api.delete_dataset(dataset.id)
    with pytest.raises(ApiError) as caught:
        api.get_dataset(dataset.id)
    assert caught.value.status == 404


def test_an_invalid_upload_is_rejected_with_a_422(api: Client, tmp_path: Path) -> None:
    path = tmp_path / "fake.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ApiError) as caught:
        api.upload_dataset(path, "npz")
    assert caught.value.status == 422 and "npz" in caught.value.message
    with pytest.raises(FileNotFoundError):
        api.upload_dataset(tmp_path / "missing.npz", "npz")


def test_checkpoint_upload_get_list_delete(api: Client, tmp_path: Path) -> None:
    path = tmp_path / "dense.safetensors"
    save_file({"fc.weight": np.ones((4, 8), dtype=np.float32)}, str(path))

    checkpoint = api.upload_checkpoint(path)

    assert (checkpoint.name, checkpoint.format) == ("dense.safetensors", "safetensors")
    assert api.get_checkpoint(checkpoint.id) == checkpoint
    assert checkpoint.id in [c.id for c in api.list_checkpoints()]
    api.delete_checkpoint(checkpoint.id)
    assert checkpoint.id not in [c.id for c in api.list_checkpoints()]


def test_model_upload_from_a_directory_or_an_archive_get_list_delete(api: Client, tmp_path: Path) -> None:
    from tests.hf_models import hand_made_model, write_files, zip_of

    directory = write_files(tmp_path / "my-model", hand_made_model())
    model = api.upload_model(directory)
    assert (model.name, model.format, model.filename) == ("my-model.tar", "huggingface", "my-model.tar")
    assert model.summary["model_type"] == "llama" and model.summary["root"] == "my-model"
    assert api.get_hf_model(model.id) == model

    archive = tmp_path / "again.zip"
    archive.write_bytes(zip_of(hand_made_model()))
    again = api.upload_model(archive, name="again")
    assert again.name == "again" and again.summary["files"] == ["config.json", "model.safetensors"]
    assert {model.id, again.id} <= {m.id for m in api.list_hf_models()}
    api.delete_hf_model(model.id)
    assert model.id not in [m.id for m in api.list_hf_models()]


def test_models_lists_the_built_in_architectures(api: Client) -> None:
    models = {model.name: model for model in api.models()}
    assert {"mlp", "lenet5", "resnet20"} <= set(models)
    assert api.get_model("lenet5") == models["lenet5"] and models["lenet5"].layers
    with pytest.raises(ApiError) as caught:
        api.get_model("nope")
    assert caught.value.status == 404


# -- failures -------------------------------------------------------------------------------------------
def test_a_wrong_or_missing_key_is_a_401_api_error(server: Server) -> None:
    for key in ("lbc_wrong", None):
        with Client(server.url, key) as client, pytest.raises(ApiError) as caught:
            client.list_jobs()
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
        assert caught.value.request_id


def test_a_server_that_is_not_there_is_connection_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "key", retries=1, retry_delay=0.01) as client, pytest.raises(ConnectionFailed) as caught:
        client.get_job("x")
    assert caught.value.url == url and "ConnectError" in str(caught.value)


def test_an_error_body_that_is_not_the_envelope_still_becomes_an_api_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    client = Client("http://proxy.test", "key", transport=httpx.MockTransport(handler), retries=0)
    with client, pytest.raises(ApiError) as caught:
        client.models()
    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert "Bad Gateway" in caught.value.message


def test_idempotent_requests_are_retried_on_503_and_submit_reuses_its_key() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        if len(keys) < 3:
            return httpx.Response(
                503, headers={"Retry-After": "0"}, json={"error": {"code": "x", "message": "busy"}}
            )
        body = {"id": "j1", "state": "queued", "created_at": "2026-01-01T00:00:00Z"}
        return httpx.Response(201, json=body)

    with Client("http://svc.test", "key", transport=httpx.MockTransport(handler), retries=2) as client:
        job = client.submit({"model": {}})
    assert job.id == "j1" and len(keys) == 3 and keys[0] and len(set(keys)) == 1


@pytest.mark.parametrize("bad", ["", "  ", ".", ".."])
def test_an_id_that_is_no_path_segment_is_refused_before_anything_is_sent(bad: str) -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "lbc_unused", retries=0) as api:  # nothing listens
        with pytest.raises(InvalidArgument, match="is not a job id"):
            api.get_job(bad)
        with pytest.raises(InvalidArgument, match="is not a dataset id"):
            api.delete_dataset(bad)
