"""Errors that carry their HTTP status and a stable code; the API renders them in one envelope."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class NotFound(ServiceError):
    status_code, code = 404, "not_found"


class Conflict(ServiceError):
    status_code, code = 409, "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status_code, code = 403, "forbidden"


class InvalidInput(ServiceError):
    status_code, code = 422, "validation_error"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "payload_too_large"


class QuotaExceeded(ServiceError):
    status_code, code = 429, "quota_exceeded"


class StorageQuotaExceeded(QuotaExceeded):
    """An upload that would take the owner past the storage quota: too large, not too many requests."""

    status_code = 413


class Unavailable(ServiceError):
    status_code, code = 503, "unavailable"
