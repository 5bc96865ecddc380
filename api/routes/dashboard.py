"""The web dashboard: a static single-page app in ``api/static``, served by the API itself.

No build step and nothing from other hosts: plain ES modules, CSS and hand-drawn SVG. The page is
public; everything it shows comes from the ``/v1`` API with the user's key (kept in the tab's
``sessionStorage``; ``/#key=...``, the link ``lbc serve`` prints, signs in and is then removed from
the address bar; the key is in the fragment, so the browser never sends it to any server).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Only this origin: no CDN can be used by accident. Inline styles are allowed for the speedup
# report's own page, which is shown in a sandboxed frame (no scripts, opaque origin).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "frame-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/", summary="Dashboard")
def index() -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def register(app: FastAPI) -> None:
    """The page at ``/`` and its files under ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
