"""What the client raises: one base class, the server's error envelope, and the client's own failures."""

from __future__ import annotations

import json
from typing import Any

import httpx


class ClientError(Exception):
    """Base class of every error this package raises."""


class ApiError(ClientError):
    """The server answered with an error: the fields of ``{"error": {code, message, details, request_id}}``.

    A response that is not the envelope (a proxy's HTML page, say) still becomes an ApiError, with the
    code ``http_<status>`` and the start of the body as the message.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int,
        details: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ApiError(code={self.code!r}, status={self.status}, message={self.message!r})"

    @property
    def field_problems(self) -> list[tuple[str, str]]:
        """``(field, message)`` for each problem a 422 lists (empty for other errors)."""
        problems: list[tuple[str, str]] = []
        if isinstance(self.details, list):
            for item in self.details:
                if isinstance(item, dict) and "message" in item:
                    problems.append((str(item.get("field") or ""), str(item["message"])))
        return problems

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        status = response.status_code
        request_id = response.headers.get("X-Request-ID")
        try:
            body = json.loads(response.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return cls(
                code=str(error.get("code") or f"http_{status}"),
                message=error["message"],
                status=status,
                details=error.get("details"),
                request_id=error.get("request_id") or request_id,
            )
        text = " ".join(response.text.split())[:200] if response.content else ""
        reason = response.reason_phrase or "error"
        return cls(
            code=f"http_{status}",
            message=f"HTTP {status} {reason}" + (f": {text}" if text else ""),
            status=status,
            request_id=request_id,
        )


class ConnectionFailed(ClientError):
    """The server could not be reached (refused, DNS, TLS, timeout, or the connection kept dropping)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot connect to {url}: {reason}")
        self.url = url
        self.reason = reason


class ChecksumMismatch(ClientError):
    """A downloaded artifact does not have the sha256 (or size) the server listed; nothing was kept."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{name}: sha256 mismatch (expected {expected}, got {actual}); the download was discarded"
        )
        self.name = name
        self.expected = expected
        self.actual = actual


class InvalidArgument(ClientError, ValueError):
    """An argument refused before anything is sent, e.g. an empty job id."""


class SpecFileError(ClientError):
    """A job spec file that cannot be read or parsed (the server validates the content itself)."""


class ConfigError(ClientError):
    """A client config file that cannot be read or is malformed."""


class WaitTimeout(ClientError):
    """``Client.wait`` gave up before the job finished."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout
