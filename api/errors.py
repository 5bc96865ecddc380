"""One JSON error envelope for every failure, and the handlers that render it.

``{"error": {"code", "message", "details", "request_id"}}``: service errors carry their own status and
code (``jobs.errors``); request validation, unknown routes, wrong methods, an unreachable database and
unexpected exceptions are mapped onto the same shape, so clients parse one thing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import check_key_before_422
from jobs.db import is_database_unavailable
from jobs.errors import ServiceError
from jobs.spec import format_path

log = logging.getLogger("api.errors")

RETRY_AFTER_SECONDS = 5  # only for an app without settings; see Settings.retry_after_seconds
# The longest string an error returns; what is longer was echoed from the request and is cut.
MAX_ECHO_CHARS = 1000
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class FieldProblem(BaseModel):
    field: str = Field(description="Dotted path of the field at fault, e.g. `sparsity.n`.")
    message: str
    location: str | None = Field(default=None, description="body, query, path or header (request errors).")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code.", examples=["not_found"])
    message: str = Field(description="What went wrong, for people.", examples=["job 1f0c... not found"])
    details: Any = Field(
        default=None,
        description="Structured context: for 422 a list of {field, message}; for 409 the current state.",
    )
    request_id: str | None = Field(default=None, description="Also sent as the X-Request-ID header.")


class ErrorEnvelope(BaseModel):
    error: ErrorBody

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "invalid job spec",
                        "details": [{"field": "sparsity.n", "message": "must be smaller than m (4)"}],
                        "request_id": "5b0e3f0c2f6a4d0e9b1c8e2d7a6f4b3c",
                    }
                }
            ]
        }
    }


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def retry_after(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return str(getattr(settings, "retry_after_seconds", RETRY_AFTER_SECONDS))


def clip_text(value: Any, limit: int = MAX_ECHO_CHARS) -> Any:
    """``value`` with every string longer than ``limit`` cut, saying how much was left out.

    Error messages echo what was sent (``got '...'``, a field name, a file name): a 10 MB job name must
    not come back as a 10 MB error.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}... ({len(value) - limit} more characters)"
    if isinstance(value, dict):
        return {clip_text(key, limit): clip_text(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clip_text(item, limit) for item in value]
    return value


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one envelope every error goes out in; every string in it is clipped (``clip_text``)."""
    request_id = request_id_of(request)
    error = {"code": code, "message": clip_text(message), "details": clip_text(details)}
    body = {"error": {**error, "request_id": request_id}}
    headers = dict(headers or {})
    if request_id:
        headers.setdefault("X-Request-ID", request_id)
    return JSONResponse(body, status_code=status_code, headers=headers)


def validation_problems(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's request errors as ``{field, message, location}`` with dotted paths (no leading ``body``)."""
    problems = []
    for item in errors:
        loc = list(item.get("loc", ()))
        location = (
            str(loc.pop(0)) if loc and loc[0] in ("body", "query", "path", "header", "cookie") else None
        )
        field = format_path([part for part in loc if isinstance(part, str | int)]) or (location or "")
        message = str(item.get("msg", "invalid value"))
        if item.get("type") == "missing":
            message = "required field is missing"
        problems.append({"field": field, "message": message, "location": location})
    return problems


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = dict(exc.headers)
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if exc.status_code == 503:
        headers.setdefault("Retry-After", retry_after(request))
    details = exc.details
    if exc.status_code == 422 and details is None:  # a 422 always lists its problems
        details = [{"field": "", "message": exc.message}]
    return error_response(request, exc.status_code, exc.code, exc.message, details, headers)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    try:
        await check_key_before_422(request)  # a bad key is a 401 whatever else is wrong
    except ServiceError as key_error:
        return await _service_error(request, key_error)
    except (DBAPIError, DisconnectionError, PoolTimeout) as database_error:
        return await _database_error(request, database_error)
    problems = validation_problems(exc.errors())
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return error_response(request, 422, "validation_error", f"invalid request: {summary}", problems)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(request, exc.status_code, code, message, None, dict(exc.headers or {}))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        return await _unexpected(request, exc)
    # The driver's message can carry host names and user names: log it, do not return it.
    log.warning(
        "database unavailable in %s %s (request %s): %s",
        request.method,
        request.url.path,
        request_id_of(request),
        exc.__class__.__name__,
    )
    seconds = retry_after(request)
    return error_response(
        request,
        503,
        "database_unavailable",
        f"the database is unavailable; retry in {seconds} s",
        None,
        {"Retry-After": seconds},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception(
        "unhandled error in %s %s (request %s)", request.method, request.url.path, request_id_of(request)
    )
    return error_response(request, 500, "internal_error", "internal server error", None)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    for database_error in (DBAPIError, DisconnectionError, PoolTimeout):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorEnvelope, "description": "Missing or invalid API key"},
    422: {"model": ErrorEnvelope, "description": "Invalid request; `details` lists every problem"},
    500: {"model": ErrorEnvelope, "description": "Internal error (details are logged, not returned)"},
    503: {
        "model": ErrorEnvelope,
        "description": "The database (code `database_unavailable`) or the object store is unreachable "
        "for now; retry after the Retry-After delay",
        "headers": {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        },
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope, "description": "No such resource for this owner"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorEnvelope, "description": "Conflicts with the current state"}
}
