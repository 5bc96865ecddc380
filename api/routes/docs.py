"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, with every file they load
served from this origin: FastAPI's defaults load them from a CDN, which leaves the pages blank offline.

The files come from the ``fastapi-offline`` distribution (a pinned dependency, used only for the
Swagger UI and ReDoc bundles it ships), so nothing large is vendored into this repository.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_PACKAGE = "fastapi_offline"
FAVICON_URL = "/static/favicon.svg"  # the dashboard's own


def assets_dir() -> Path:
    return Path(str(files(ASSETS_PACKAGE) / "static"))


def register(app: FastAPI) -> None:
    """``/docs``, its OAuth2 redirect page, ``/redoc`` and their files under ``/docs-assets``.

    The app must be created with ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not
    registered first."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}" if redirect_url else None,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{FAVICON_URL}",
        )

    if redirect_url:

        @app.get(redirect_url, include_in_schema=False)
        def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{FAVICON_URL}",
            with_google_fonts=False,
        )
