"""The dashboard is served by the API itself, from files in the package, with nothing from other hosts."""

from __future__ import annotations

import re
from pathlib import Path

from api.routes.dashboard import STATIC_DIR
from tests.api.conftest import Service

# The one absolute URL allowed: the SVG namespace, which is a name, not a request.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


def static_files() -> list[Path]:
    return sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())


def test_the_page_is_served_at_the_root_with_a_same_origin_policy(service: Service) -> None:
    response = service.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert '<script type="module" src="/static/js/app.js"></script>' in response.text
    assert '<html lang="en">' in response.text


def test_every_static_file_is_served_with_a_fitting_type(service: Service) -> None:
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
    for path in static_files():
        response = service.client.get(f"/static/{path.relative_to(STATIC_DIR).as_posix()}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(types[path.suffix]), (path, response.headers)
    assert service.client.get("/static/js/nope.js").status_code == 404


def test_nothing_is_loaded_from_another_host_and_every_import_resolves() -> None:
    for path in static_files():
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*""", text))
        assert urls <= ALLOWED_URLS, (path, urls - ALLOWED_URLS)
        if path.suffix == ".js":
            for target in re.findall(r"""^import .* from "(\.{1,2}/[^"]+)";$""", text, flags=re.M):
                assert (path.parent / target).resolve().is_file(), (path, target)
        if path.suffix == ".html":
            for target in re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", text):
                assert (STATIC_DIR / target.removeprefix("/static/")).is_file(), (path, target)


def test_the_dashboard_is_not_part_of_the_api_schema(service: Service) -> None:
    paths = service.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


# Every URL a documentation page names: element attributes, the schema Swagger UI / ReDoc fetch, url(...).
_PAGE_URLS = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: *'([^']*)'""")


def test_the_api_docs_load_everything_from_this_origin(service: Service) -> None:
    """/docs and /redoc work offline: no CDN, and each file they name is served here."""
    for page in ("/docs", "/redoc"):
        response = service.client.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        urls = [a or b for a, b in _PAGE_URLS.findall(response.text)]
        assert len(urls) >= 3, (page, urls)  # the script, the favicon and the schema at least
        assert not re.search(r"https?://|//[a-z]", response.text), (page, response.text)
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), (page, url)
            fetched = service.client.get(url)
            assert fetched.status_code == 200, (page, url)
            assert len(fetched.content) > 100, (page, url)
    bundle = service.client.get("/docs-assets/swagger-ui-bundle.js")
    assert (
        bundle.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in bundle.content
    )
