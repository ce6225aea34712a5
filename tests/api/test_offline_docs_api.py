"""/docs and /redoc work on a network without the internet: every script, style and icon is ours."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.settings import Settings

pytestmark = pytest.mark.api

BASE = "http://testserver"
# src="…", href='…' and the like, in tags and in the inline scripts that pass URLs to the UIs.
REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
# URLs the pages hand to JavaScript (`url: '/openapi.json'`, `spec-url=`) and any absolute URL at all.
ABSOLUTE = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


def references(html: str) -> list[str]:
    return REFERENCE.findall(html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_the_apps_own_assets(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    urls = references(html)
    assert urls, f"{page} references no assets"
    for url in urls:
        absolute = urlsplit(urljoin(BASE + page, url))
        assert f"{absolute.scheme}://{absolute.netloc}" == BASE, f"{page} loads {url} from elsewhere"
    # Hosts may hide in inline scripts too (a CDN bundle, Google's fonts): none may appear anywhere.
    external = [m for m in ABSOLUTE.findall(html) if m.rstrip("/") not in ("", BASE, "//testserver")]
    assert not external, f"{page} names external hosts: {external}"
    assert "fonts.googleapis" not in html and "cdn" not in html.lower()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_the_docs_pages_use_is_served_by_the_app(client: TestClient, page: str) -> None:
    for url in references(client.get(page).text):
        asset = client.get(urlsplit(urljoin(BASE + page, url)).path)
        assert asset.status_code == 200, f"{page}: {url} answered {asset.status_code}"
        assert asset.content, f"{page}: {url} is empty"


def test_the_docs_pages_load_the_openapi_document_of_this_app(client: TestClient) -> None:
    assert "/openapi.json" in client.get("/docs").text
    assert 'spec-url="/openapi.json"' in client.get("/redoc").text
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_the_docs_pages_are_not_in_the_api_document(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert not {"/docs", "/redoc", "/docs/oauth2-redirect"} & paths


def test_docs_pages_and_assets_are_counted_under_their_own_routes(client: TestClient) -> None:
    client.get("/docs")
    client.get("/docs-assets/swagger-ui.css")
    metrics = client.get("/metrics").text
    assert 'raqib_requests_total{method="GET",route="/docs",status="200"} 1.0' in metrics
    assert (
        'raqib_requests_total{method="GET",route="/docs-assets/swagger-ui.css",status="200"} 1.0' in metrics
    )
    assert 'route="<unmatched>"' not in metrics


def test_the_docs_follow_the_apps_mount_point_behind_a_proxy(tiny_bundle: Path, tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=tiny_bundle, api_keys=["k"], state_dir=tmp_path))
    with TestClient(app, root_path="/raqib") as client:
        html = client.get("/docs").text
    assert "/raqib/docs-assets/swagger-ui-bundle.js" in html
    assert "/raqib/openapi.json" in html
