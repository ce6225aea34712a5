"""Fuzz every route with generated requests: never a 5xx, and every answer as the OpenAPI document says.

The schemathesis part reads the app's own OpenAPI document and sends each case through an
in-process TestClient with valid credentials for its route (API key, admin key, moderator key,
Perspective's `?key=`, Akismet's `api_key` form field, Coral's and the webhook's body signatures),
so generated data reaches the handlers instead of stopping at a 401. The queue's HTML pages are
not in the schema; a hypothesis test sends them generated forms, cookies and queries, checking
only that none gets a 5xx. Another sends header bytes no HTTP client library would (latin-1
digits, huge numbers) straight to the ASGI app. Generation is derandomized and bounded, so runs
repeat and fit CI.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.api.integrations.signatures import sign_coral, sign_raqib
from serving.api.queue.auth import LOGIN_COOKIE, SESSION_COOKIE
from serving.api.queue.routes import LANG_COOKIE, LOGIN_PATH, LOGOUT_PATH, QUEUE_PATH
from tests.api.conftest import ADMIN_KEY, API_KEY, AUTH, MakeClient

pytestmark = pytest.mark.api

CORAL_SECRET = "fuzz-coral-secret"
WEBHOOK_SECRET = "fuzz-webhook-secret"
MODERATOR_KEY = "fuzz-moderator-key"
# Per operation and generation mode (valid and invalid data). Operations with few possible inputs
# (no parameters) stop early, once hypothesis has sent all there is.
EXAMPLES_PER_MODE = 30
MINIMUM_CASES = 1000
SCORING_OPERATIONS = (
    "POST /v1/score",
    "POST /v1/score/batch",
    "POST /v1/feedback",
    "POST /v1/integrations/coral/moderate",
    "POST /v1/integrations/coral/webhook",
    "POST /v1alpha1/comments:analyze",
    "POST /v1alpha1/comments:suggestscore",
    "POST /1.1/comment-check",
    "POST /1.1/submit-spam",
    "POST /v1/webhooks/comments",
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Hop-by-hop and computed headers of the prepared request that the TestClient sets itself.
_DROPPED_HEADERS = {"host", "content-length", "user-agent", "accept-encoding", "connection"}
SETTINGS = settings(
    max_examples=EXAMPLES_PER_MODE,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _prepared(case: schemathesis.Case) -> tuple[dict[str, str], bytes | None]:
    """Headers and body bytes as the case would send them (so signed routes can sign exactly them)."""
    prepared = requests.Request(**case.as_transport_kwargs(base_url="http://testserver")).prepare()
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in _DROPPED_HEADERS}
    body = prepared.body
    return headers, body.encode("utf-8") if isinstance(body, str) else body


def _with_credentials(
    case: schemathesis.Case, headers: dict[str, str], body: bytes | None
) -> tuple[dict[str, str], bytes | None]:
    """The request with valid credentials for its route added."""
    path = case.operation.path
    security = {name for entry in case.operation.definition.raw.get("security", []) for name in entry}
    keys = {"HTTPBearer": API_KEY, "AdminKey": ADMIN_KEY, "ModeratorKey": MODERATOR_KEY}
    for scheme, key in keys.items():
        if scheme in security:
            headers["Authorization"] = f"Bearer {key}"
    if path.startswith("/1.1/"):
        # Akismet reads the first value of a field: the valid key goes first.
        body = urlencode({"api_key": API_KEY}).encode() + (b"&" + body if body else b"")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif path.startswith("/v1/integrations/coral/"):
        headers["X-Coral-Signature"] = sign_coral(body or b"", [CORAL_SECRET.encode()])
    elif path == "/v1/webhooks/comments":
        headers["X-Raqib-Signature"] = sign_raqib(body or b"", WEBHOOK_SECRET.encode())
    return headers, body


def _send(client: TestClient, case: schemathesis.Case) -> Any:
    headers, body = _with_credentials(case, *_prepared(case))
    query = dict(case.query or {})
    if case.operation.path.startswith("/v1alpha1/"):
        query["key"] = API_KEY
    return client.request(case.method, case.formatted_path, params=query, headers=headers, content=body)


def _describe(exc: BaseException) -> str:
    """A short account of a failure: each check's title and message, and the falsifying example."""
    found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    lines = [f"{getattr(f, 'title', type(f).__name__)}: {getattr(f, 'message', str(f))}"[:600] for f in found]
    return "\n".join(lines + [note[:1500] for note in getattr(exc, "__notes__", [])])


def _fuzz(
    client: TestClient, operation: schemathesis.APIOperation, mode: GenerationMode, statuses: Counter[int]
) -> None:
    """Run one operation's generated cases through every check, counting the statuses they got."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case: schemathesis.Case) -> None:
        response = _send(client, case)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        pass  # no invalid input exists for this operation (e.g. nothing to get wrong)


@pytest.fixture
def fuzz_client(make_client: MakeClient) -> TestClient:
    return make_client(
        coral_secrets=[CORAL_SECRET],
        webhook_secret=[WEBHOOK_SECRET],
        moderator_keys=[f"fuzz:{MODERATOR_KEY}"],
        session_secret="fuzz-session-secret",
        # Limited (the headers are sent and checked) but never refused: 429s would hide the handlers.
        rate_limit={"per_second": 1e6, "burst": 1_000_000},
    )


def test_every_documented_operation_survives_generated_requests(fuzz_client: TestClient) -> None:
    schema = schemathesis.openapi.from_dict(fuzz_client.app.openapi())  # type: ignore[attr-defined]
    statuses: dict[str, Counter[int]] = {}
    failures: dict[str, str] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        statuses[label] = Counter()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(fuzz_client, operation, mode, statuses[label])
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report
                failures[f"{label} [{mode.value}]"] = _describe(exc)
    total = sum(sum(counts.values()) for counts in statuses.values())
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {total} generated cases over {len(statuses)} operations in {elapsed:.1f} s")
    for label, counts in sorted(statuses.items()):
        print(f"  {sum(counts.values()):4d}  {label}  {dict(sorted(counts.items()))}")
    assert not failures, "\n\n".join(f"{label}:\n{message}" for label, message in failures.items())
    assert len(statuses) >= 20
    assert total >= MINIMUM_CASES
    # The credentials worked: every operation answered with something other than 401/403 ...
    assert all(set(counts) - {401, 403} for counts in statuses.values()), statuses
    # ... and the scoring and integration routes answered generated requests with successes too.
    succeeded = {label for label, counts in statuses.items() if any(200 <= s < 300 for s in counts)}
    assert set(SCORING_OPERATIONS) <= succeeded, statuses


PAGES = [("GET", QUEUE_PATH), ("GET", LOGIN_PATH), ("POST", LOGIN_PATH), ("POST", LOGOUT_PATH)]
texts = st.text(max_size=40)
header_texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(
    page=st.sampled_from(PAGES),
    query=st.dictionaries(st.sampled_from(["lang", "next", "x"]), texts, max_size=2),
    form=st.dictionaries(st.sampled_from(["name", "key", "csrf", "other"]), texts, max_size=4),
    cookies=st.dictionaries(
        st.sampled_from([SESSION_COOKIE, LOGIN_COOKIE, LANG_COOKIE]), header_texts, max_size=3
    ),
    language=header_texts,
)
@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    # One app serves every generated request: state carried between examples is part of the test.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_queue_pages_never_answer_5xx(
    fuzz_client: TestClient,
    page: tuple[str, str],
    query: dict[str, str],
    form: dict[str, str],
    cookies: dict[str, str],
    language: str,
) -> None:
    method, path = page
    fuzz_client.cookies.clear()
    response = fuzz_client.request(
        method,
        path,
        params=query,
        data=form if method == "POST" else None,
        headers={
            "Accept-Language": language,
            "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
        },
        follow_redirects=False,
    )
    assert response.status_code < 500, response.text


# Header bytes an HTTP client library will not send (it encodes str headers itself) but a raw client
# can: latin-1 superscript digits ("²".isdigit() is true, int("²") fails), huge numbers, separators.
HEADER_ALPHABET = b"0123456789\xb2\xb3\xb9\xd9\xa3,;=.:tv1ab \xff"
RAW_TARGETS = [
    ("POST", "/v1/webhooks/comments", b"x-raqib-signature", b"t="),
    ("POST", "/v1/integrations/coral/moderate", b"x-coral-signature", b"sha256="),
    ("GET", "/v1/queue/items", b"cookie", SESSION_COOKIE.encode() + b"=YQ."),
    ("GET", QUEUE_PATH, b"cookie", SESSION_COOKIE.encode() + b"=YQ."),
    ("POST", "/v1/score", b"content-length", b""),
    ("POST", "/v1/score", b"authorization", b"Bearer "),
    ("POST", "/v1alpha1/comments:analyze", b"x-goog-api-key", b""),
    ("GET", "/healthz", b"x-request-id", b""),
    ("GET", LOGIN_PATH, b"accept-language", b""),
]


async def _raw_status(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> int:
    """Call the ASGI app with exactly these header bytes; the response status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


@given(
    target=st.sampled_from(RAW_TARGETS),
    value=st.binary(max_size=30).map(
        lambda raw: bytes(HEADER_ALPHABET[byte % len(HEADER_ALPHABET)] for byte in raw)
    ),
)
@example(target=RAW_TARGETS[0], value=b"\xb2,v1=ab")
@example(target=RAW_TARGETS[2], value=b"\xb2.zz")
@example(target=RAW_TARGETS[4], value=b"\xb2")
@example(target=RAW_TARGETS[4], value=b"9" * 5000)
@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_raw_header_bytes_never_answer_5xx(
    fuzz_client: TestClient, target: tuple[str, str, bytes, bytes], value: bytes
) -> None:
    method, path, name, prefix = target
    body = b'{"comment": {"text": "hello"}}' if method == "POST" else b""
    headers = [(name, prefix + value), (b"content-type", b"application/json")]
    if name != b"content-length":
        headers.append((b"content-length", str(len(body)).encode()))
    status = asyncio.run(_raw_status(fuzz_client.app, method, path, headers, body))
    assert status < 500


def test_oversized_bodies_are_refused_in_each_protocols_documented_shape(make_client: MakeClient) -> None:
    client = make_client(max_article_body_bytes=100)
    schema = schemathesis.openapi.from_dict(client.app.openapi())  # type: ignore[attr-defined]
    big = b"x" * 101  # declared in Content-Length: refused before anything reads it
    perspective = client.post(
        "/v1alpha1/comments:analyze",
        params={"key": API_KEY},
        content=big,
        headers={"Content-Type": "application/json"},
    )
    assert perspective.status_code == 413
    assert perspective.json()["error"]["status"] == "INVALID_ARGUMENT"
    akismet = client.post(
        "/1.1/comment-check", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert akismet.status_code == 413 and akismet.headers["content-type"].startswith("text/plain")
    assert akismet.headers["x-akismet-debug-help"] == akismet.text
    feedback = client.post("/v1/feedback", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert feedback.status_code == 413 and feedback.json()["error"]["code"] == "body_too_large"
    for path, response in (
        ("/v1alpha1/comments:analyze", perspective),
        ("/1.1/comment-check", akismet),
        ("/v1/feedback", feedback),
    ):
        operation = schema[path]["POST"]
        case = operation.Case(media_type="application/json")
        case.validate_response(response, checks=CHECKS)
