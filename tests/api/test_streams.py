"""Live events over Server-Sent Events, the job log and the metrics history.

A worker is simulated by writing events through ``jobs.repository``, as the real worker does.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from jobs import repository
from jobs.db import transaction
from tests.api.conftest import Service


def _parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


def _running_job_with_events(service: Service, headers: dict[str, str], owner_caller: Any) -> str:
    job = service.submit(owner_caller)
    service.worker_runs(
        job["id"],
        events=[
            ("phase", {"phase": "training"}),
            ("progress", {"epoch": 1, "step": 10}),
            ("metrics", {"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.7}),
            ("log", {"lines": ["line 1", "line 2", "line 3"]}),
            ("metrics", {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.85}),
            ("log", {"lines": ["line 4", "line 5"]}),
        ],
    )
    return str(job["id"])


def test_events_replay_after_last_event_id_and_close_when_the_job_is_finished(service: Service) -> None:
    alice = service.caller()
    job_id = _running_job_with_events(service, alice.headers, alice)
    with transaction(service.sessions) as session:
        repository.finish_success(session, job_id, "test-worker", [], {"accuracy": 0.85})

    everything = service.client.get(f"/v1/jobs/{job_id}/events", headers=alice.headers)
    assert everything.status_code == 200
    assert everything.headers["content-type"].startswith("text/event-stream")
    events = _parse_sse(everything.text)
    kinds = [e["event"] for e in events]
    assert kinds == ["state", "state", "phase", "progress", "metrics", "log", "metrics", "log", "state"]
    assert [e["data"]["data"].get("state") for e in events if e["event"] == "state"] == [
        "queued",
        "running",
        "succeeded",
    ]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and all(e["data"]["id"] == int(e["id"]) for e in events)

    resumed = service.client.get(
        f"/v1/jobs/{job_id}/events", headers={**alice.headers, "Last-Event-ID": str(ids[4])}
    )
    assert [int(e["id"]) for e in _parse_sse(resumed.text)] == ids[5:]
    # The header wins over ?after= (EventSource reconnects keep the original URL).
    both = service.client.get(
        f"/v1/jobs/{job_id}/events",
        params={"after": ids[0]},
        headers={**alice.headers, "Last-Event-ID": str(ids[7])},
    )
    assert [int(e["id"]) for e in _parse_sse(both.text)] == ids[8:]
    by_query = service.client.get(
        f"/v1/jobs/{job_id}/events", params={"after": ids[6]}, headers=alice.headers
    )
    assert [int(e["id"]) for e in _parse_sse(by_query.text)] == ids[7:]

    bad = service.client.get(f"/v1/jobs/{job_id}/events", headers={**alice.headers, "Last-Event-ID": "x"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "Last-Event-ID"


def test_follow_false_returns_what_exists_for_a_running_job(service: Service) -> None:
    alice = service.caller()
    job_id = _running_job_with_events(service, alice.headers, alice)
    response = service.client.get(
        f"/v1/jobs/{job_id}/events", params={"follow": "false"}, headers=alice.headers
    )
    assert len(_parse_sse(response.text)) == 8


def test_following_streams_new_events_with_heartbeats_until_the_job_ends(service: Service) -> None:
    alice = service.caller()
    job_id = _running_job_with_events(service, alice.headers, alice)
    service.app.state.sse_poll_seconds = 0.05
    service.app.state.sse_heartbeat_seconds = 0.1

    def worker() -> None:
        time.sleep(0.4)
        with transaction(service.sessions) as session:
            repository.add_event(session, job_id, "progress", {"epoch": 3}, attempt=1)
        time.sleep(0.3)
        with transaction(service.sessions) as session:
            repository.finish_success(session, job_id, "test-worker", [], {})

    thread = threading.Thread(target=worker)
    thread.start()
    started = time.monotonic()
    with service.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=alice.headers) as response:
        text = "".join(response.iter_text())
    thread.join()
    assert time.monotonic() - started < 10
    events = _parse_sse(text)
    assert [e["event"] for e in events][-2:] == ["progress", "state"]
    assert events[-1]["data"]["data"]["state"] == "succeeded"
    assert ": heartbeat" in text
    assert text.startswith("retry: ")


def test_logs_as_text_tail_and_pages(service: Service) -> None:
    alice = service.caller()
    job_id = _running_job_with_events(service, alice.headers, alice)
    url = f"/v1/jobs/{job_id}/logs"

    text = service.client.get(url, headers=alice.headers)
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == "line 1\nline 2\nline 3\nline 4\nline 5\n"

    tail = service.client.get(url, params={"tail": 2}, headers=alice.headers)
    assert tail.text == "line 4\nline 5\n"

    first = service.client.get(
        url, params={"limit": 1}, headers={**alice.headers, "Accept": "application/json"}
    )
    page = first.json()
    assert [item["line"] for item in page["items"]] == ["line 1", "line 2", "line 3"]  # whole records
    rest = service.client.get(
        url, params={"after": page["next_after"]}, headers={**alice.headers, "Accept": "application/json"}
    ).json()
    assert [item["line"] for item in rest["items"]] == ["line 4", "line 5"]
    assert rest["next_after"] > page["next_after"]
    assert service.client.get(url, params={"after": rest["next_after"]}, headers=alice.headers).text == ""
    both = service.client.get(url, params={"after": 1, "tail": 1}, headers=alice.headers)
    assert both.status_code == 422


def test_metrics_history_lists_the_epoch_records(service: Service) -> None:
    alice = service.caller()
    job_id = _running_job_with_events(service, alice.headers, alice)
    response = service.client.get(f"/v1/jobs/{job_id}/metrics", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {
        "job_id": job_id,
        "history": [
            {"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.7},
            {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.85},
        ],
    }
