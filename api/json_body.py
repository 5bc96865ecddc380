"""JSON request bodies: read only after authentication, capped while they stream in, decoded with bounds.

FastAPI reads and decodes a ``Body()`` parameter before it solves any dependency, so an unauthenticated
300 MB body was read and parsed before its 401 (6.6 s and +0.9 GB in the API). Routes that take JSON
declare :data:`JsonBody` instead: it depends on the current owner, so the key is checked first, then the
body is read chunk by chunk and cut off with a 413 once it passes ``LBC_MAX_JSON_BODY_BYTES``, whatever
``Content-Length`` says or whether it is sent at all (chunked).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from api.deps import CurrentOwner, SettingsDep
from jobs.errors import InvalidInput, PayloadTooLarge
from lbc_formats.errors import FormatError
from lbc_formats.json_data import load_json_data

# A job spec nests five levels; anything far deeper is not a spec.
MAX_JSON_DEPTH = 64


def _too_large(limit: int) -> PayloadTooLarge:
    # Connection: close, so the server stops reading the rest of a body nobody will look at.
    return PayloadTooLarge(
        f"the JSON body exceeds the limit of {limit} bytes (LBC_MAX_JSON_BODY_BYTES)",
        details={"max_json_body_bytes": limit},
        headers={"Connection": "close"},
    )


def _body_problem(message: str) -> InvalidInput:
    return InvalidInput(
        f"invalid request: {message}", details=[{"field": "body", "message": message, "location": "body"}]
    )


async def read_json_body(request: Request, owner: CurrentOwner, settings: SettingsDep) -> Any:
    """The decoded body, read only once ``owner`` is authenticated (the parameter exists for that order)."""
    del owner
    limit = settings.max_json_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)  # known before a byte of the body is read
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # Content-Length absent (chunked) or lying
            raise _too_large(limit)
    if not body:
        raise _body_problem("the body is empty; send the request as JSON")
    try:
        return load_json_data(bytes(body), what="the body", max_bytes=limit, max_depth=MAX_JSON_DEPTH)
    except FormatError as exc:
        raise _body_problem(str(exc)) from None


# The JSON body of a route, authenticated first and bounded; routes document its schema in openapi_extra.
JsonBody = Annotated[Any, Depends(read_json_body)]
