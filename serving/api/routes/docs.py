"""GET /docs and /redoc: Swagger UI and ReDoc from files this server serves itself, never from a CDN.

FastAPI's own pages load their scripts from a CDN and stay blank on a network without the internet,
which is where many newsrooms run this service. The assets come from the `fastapi-offline` package
(Swagger UI's bundle and stylesheet, ReDoc's standalone script, a favicon), mounted by the app at
`DOCS_ASSETS_PREFIX`; only its files are used, the app stays a plain FastAPI app.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
DOCS_ASSETS_PREFIX = "/docs-assets"
DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


def _prefix(request: Request) -> str:
    """The app's mount point behind a proxy ("" at the root), so the pages' links work there too."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _openapi_url(request: Request) -> str:
    return _prefix(request) + (request.app.openapi_url or "/openapi.json")


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: try the API from the browser."""
    assets = _prefix(request) + DOCS_ASSETS_PREFIX
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=_prefix(request) + OAUTH2_REDIRECT_PATH,
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    """The page Swagger UI's OAuth2 flow returns to (FastAPI serves it next to /docs by default)."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the API reference as one page."""
    assets = _prefix(request) + DOCS_ASSETS_PREFIX
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        # Google's font CDN is unreachable offline, and reaching it would tell Google who reads the docs.
        with_google_fonts=False,
    )
