"""Keep API keys out of every log line: a logging filter for the service's processes.

Keys travel in the ``Authorization`` header, which nothing logs, but a key can still reach a log: an old
sign-in link ``/?key=...`` lands in the HTTP access log, and an error message may quote a header or a
URL. The filter rewrites a record's message and arguments before any handler formats them: the value of
a ``key``-like query parameter and anything shaped like an API key become ``***``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from jobs.auth import KEY_PREFIX

REDACTED = "***"

# `key=...`, `api_key=...`, `token=...` in a query string (up to the next separator or quote).
_SECRET_PARAMETER = re.compile(r"(?i)([?&;](?:api[_-]?)?(?:key|token)=)[^&;#\s\"']*")
# An API key anywhere (generate_token: the prefix and 43 URL-safe characters), and bearer credentials.
_API_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{16,}")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[^\s\"',]+")


def redact(text: str) -> str:
    """``text`` with every secret query parameter value, API key and bearer credential replaced."""
    text = _SECRET_PARAMETER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _API_KEY.sub(KEY_PREFIX + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class SecretsFilter(logging.Filter):
    """Redacts a record in place; never drops one. Positional arguments keep their number and order
    (uvicorn's access formatter unpacks them), only their text changes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True
