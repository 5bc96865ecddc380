"""``lbc`` run as a user runs it against a hostile server (or old data): what the server says is shown,
never obeyed by the terminal. Names, error messages, log lines and failure reasons carrying ANSI escapes,
carriage returns or bidirectional overrides come out as visible escapes (``\\x1b``, ``\\u202e``)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cli.terminal import shown
from tests.integration.support import LBC, clean_environment

ESCAPES = ("\x1b", "\x07", "\r", "\u202e", "\u2066")
JOB_ID = "0123456789abcdef0123456789abcdef"
HOSTILE_NAME = "evil\x1b]0;owned\x07\x1b[2J\u202etxt.exe"
HOSTILE_MESSAGE = "job is done\x1b[1A\r\x1b[2Kall good\u2066"
HOSTILE_LINE = "epoch 1\x1b[31m red\x1b[0m\rfake line"

JOB: dict[str, Any] = {
    "id": JOB_ID,
    "owner_id": "o",
    "name": HOSTILE_NAME,
    "state": "failed",
    "phase": None,
    "method": "lbc",
    "pattern": "2:4",
    "architecture": "lenet5\x1b[5m",
    "queue": "gpu",
    "attempt": 1,
    "max_attempts": 3,
    "progress": {},
    "error_type": "invalid_input",
    "error_message": HOSTILE_MESSAGE,
    "created_at": "2026-01-01T00:00:00Z",
    "finished_at": "2026-01-01T00:01:00Z",
    "started_at": "2026-01-01T00:00:10Z",
}
ROUTES: dict[tuple[str, str], tuple[int, Any]] = {
    ("GET", "/v1/jobs"): (200, {"items": [JOB], "next_cursor": None}),
    ("GET", f"/v1/jobs/{JOB_ID}"): (200, JOB),
    ("GET", f"/v1/jobs/{JOB_ID}/logs"): (
        200,
        {
            "items": [{"event_id": 1, "created_at": "2026-01-01T00:00:00Z", "line": HOSTILE_LINE}],
            "next_after": 1,
        },
    ),
    ("POST", f"/v1/jobs/{JOB_ID}/cancel"): (
        409,
        {
            "error": {
                "code": "illegal_transition",
                "message": HOSTILE_MESSAGE,
                "details": None,
                "request_id": "r",
            }
        },
    ),
    ("POST", f"/v1/jobs/{JOB_ID}/retry"): (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": "invalid",
                "details": [{"field": HOSTILE_NAME, "message": HOSTILE_MESSAGE}],
                "request_id": "r",
            }
        },
    ),
}


class HostileHandler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        status, body = ROUTES.get(
            (self.command, path), (404, {"error": {"code": "not_found", "message": "no"}})
        )
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["jobs"], 0, "evil\\x1b]0;owned\\x07\\x1b[2J\\u202etxt.exe"),
        (["status", JOB_ID], 0, "\\x1b[1A\\x0d\\x1b[2Kall good\\u2066"),
        (["logs", JOB_ID], 0, "epoch 1\\x1b[31m red\\x1b[0m\\x0dfake line"),
        (["cancel", JOB_ID], 1, "job is done\\x1b[1A"),
        (["retry", JOB_ID], 2, "evil\\x1b]0;owned"),
    ],
    ids=["jobs", "status", "logs", "error-message", "field-problems"],
)
def test_server_text_reaches_the_terminal_escaped(
    hostile_url: str, args: list[str], code: int, expected: str
) -> None:
    result = subprocess.run(
        [LBC, *args, "--url", hostile_url, "--key", "lbc_test"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == code, result.stderr
    output = result.stdout + result.stderr
    assert not any(char in output for char in ESCAPES), repr(output)
    assert expected in output, output


def test_the_escaping_keeps_text_and_line_breaks() -> None:
    assert shown("résumé 稀疏 שלום\nline two\tend") == "résumé 稀疏 שלום\nline two\\x09end"
    assert shown("\x9b31m") == "\\x9b31m"  # the one-byte C1 control sequence introducer too
