"""Article pages fetched for sites that allow it, through /v1/score: the comment is answered at once,
the page is fetched in the background and stored; refused or failed fetches are logged with their
reason and never reach the caller as an error."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.store.store import Store
from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ON_POLITICS
from tests.unit.test_page_fetch import HEADLINE, Server, serving

pytestmark = pytest.mark.api


@pytest.fixture
def pages() -> Iterator[Server]:
    yield from serving(Server())


@pytest.fixture
def fetching(make_client: MakeClient) -> TestClient:
    return make_client(
        sites={
            # The test server is on loopback, so this site must allow private addresses explicitly.
            "local": {"article_hosts": ["127.0.0.1"], "article_private_addresses": True},
            "public-only": {"article_hosts": ["127.0.0.1"]},
            "elsewhere": {"article_hosts": ["news.example"]},
        },
        article_fetch_max_bytes=50_000,
        article_fetch_timeout_s=1.0,
    )


def score(client: TestClient, url: str, site: str, text: str = ON_POLITICS[0]) -> Any:
    body = {"comment": {"text": text}, "article": {"url": url}, "site": site}
    return client.post("/v1/score", headers=AUTH, json=body)


def article_reasons(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["detail"] for r in response.json()["reasons"] if r["kind"] == "article"]


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_an_allowed_page_is_fetched_in_the_background_and_used_for_later_comments(
    fetching: TestClient, pages: Server
) -> None:
    url = f"http://127.0.0.1:{pages.port}/article"
    first = score(fetching, url, "local")
    assert article_reasons(first) == [
        f"no article context: {url} is not known yet and is being fetched; judged without it"
    ]
    wait_until(lambda: store_of(fetching).find_article_by_url(url, "local") is not None)
    stored = store_of(fetching).find_article_by_url(url, "local")
    assert stored.title == HEADLINE and stored.source == "page" and "السنديان" in (stored.text or "")
    second = score(fetching, url, "local", ON_POLITICS[1])
    assert article_reasons(second) == [f"judged against the stored article «{HEADLINE}»"]
    assert pages.paths() == ["/article"]  # fetched once, then served from the store


@pytest.mark.parametrize(
    ("path", "site", "code"),
    [
        ("/article", "public-only", "address_not_allowed"),  # loopback without the site's consent
        ("/big", "local", "too_large"),
        ("/big-chunked", "local", "too_large"),
        ("/slow", "local", "timeout"),
    ],
)
def test_refused_and_cut_off_fetches_are_logged_and_never_fail_the_comment(
    fetching: TestClient, pages: Server, caplog: pytest.LogCaptureFixture, path: str, site: str, code: str
) -> None:
    caplog.set_level(logging.INFO)
    url = f"http://127.0.0.1:{pages.port}{path}"
    assert article_reasons(score(fetching, url, site))[0].startswith("no article context:")
    wait_until(lambda: any(code in record.getMessage() for record in caplog.records))
    refusal = next(r for r in caplog.records if code in r.getMessage())
    assert refusal.levelno == logging.WARNING
    assert store_of(fetching).find_article_by_url(url, site) is None
    # The next comment is still answered at once, and the failed page is not asked again at once.
    requests_so_far = len(pages.paths())
    assert score(fetching, url, site, ON_POLITICS[1]).status_code == 200
    assert len(pages.paths()) == requests_so_far


def test_a_host_off_the_list_is_never_contacted(fetching: TestClient, pages: Server) -> None:
    url = f"http://127.0.0.1:{pages.port}/article"
    reasons = article_reasons(score(fetching, url, "elsewhere"))
    assert reasons == [
        f"no article context: {url} is not stored (nothing to fetch it from); judged without it"
    ]
    reasons = article_reasons(score(fetching, url, "no-such-site"))
    assert reasons[0].endswith("(nothing to fetch it from); judged without it")
    time.sleep(0.2)
    assert pages.paths() == []
