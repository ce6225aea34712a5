"""Akismet-compatible `comment-check`, `submit-spam`, `submit-ham` and `verify-key` (API 1.1).

Any Akismet client (the WordPress plugin, akismet libraries for PHP, Python, Node…) whose API host
is pointed at Raqib keeps working. Requests are form-encoded; answers are plain text (`true`,
`false`, `valid`, `invalid`, `Thanks for making the web a better place.`), as Akismet's are.

Coral's spam phase (coralproject/talk, server/src/core/server/services/comments/pipeline/phases/
spam.ts) sends the comment's HTML body as `comment_content` and the story URL as `permalink`: bodies
are read as the text a reader sees, and the permalink finds the stored article. As Akismet documents
(comment-check), `user_role=administrator` is never spam and `is_test=1` marks a test request, which
Raqib answers but never stores, so tests cannot reach the moderators' queue or training.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.deps import OptionalStoreDep, ServiceDep, enforce_rate_limit, key_matches, store_unavailable
from serving.model.decisions import APPROVE, REJECT
from serving.runtime.ratelimit import caller_id
from serving.schema import ON_TOPIC, SPAM
from serving.services.context import Service
from serving.services.errors import ApiError
from serving.services.schemas import RATE_LIMIT_HEADERS, ScoreRequest, request_body
from serving.services.scoring import score_integration_comment
from serving.store.errors import StoreError
from serving.store.records import FeedbackEntry
from serving.store.store import Store
from serving.text.html import html_to_text

COMMENT_CHECK_PATH = "/1.1/comment-check"
SUBMIT_SPAM_PATH = "/1.1/submit-spam"
SUBMIT_HAM_PATH = "/1.1/submit-ham"
VERIFY_KEY_PATH = "/1.1/verify-key"
PATHS = frozenset({COMMENT_CHECK_PATH, SUBMIT_SPAM_PATH, SUBMIT_HAM_PATH, VERIFY_KEY_PATH})

DEBUG_HEADER = "X-akismet-debug-help"
PRO_TIP_HEADER = "X-akismet-pro-tip"
GUID_HEADER = "X-akismet-guid"
# Akismet: "administrator" in user_role makes comment-check answer false, whatever the comment says.
ADMINISTRATOR = "administrator"
TEST_FLAGS = frozenset({"1", "true"})
THANKS = "Thanks for making the web a better place."
INVALID_KEY_HELP = (
    "We were unable to verify your API key: it is not one of this Raqib server's RAQIB_API_KEYS."
)


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> PlainTextResponse:
    return PlainTextResponse(body, status_code=status, headers=headers)


def akismet_failure(status: int, message: str, headers: Mapping[str, str] | None = None) -> PlainTextResponse:
    """An error as Akismet answers one: the message as plain text and in X-akismet-debug-help."""
    # Akismet clients read the body as a verdict: an error says so in words and in the debug header.
    return _text(message, status, {**(headers or {}), DEBUG_HEADER: message})


class AkismetRoute(APIRoute):
    """A route whose errors are plain text with `X-akismet-debug-help`, as Akismet's are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so its errors are answered as Akismet answers them."""
        handler = super().get_route_handler()

        async def akismet_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return akismet_failure(exc.status, exc.message, exc.headers)
            except StarletteHTTPException as exc:
                return akismet_failure(exc.status_code, str(exc.detail), exc.headers)

        return akismet_handler


_PLAIN_TEXT = {"text/plain": {"schema": {"type": "string"}}}
# Akismet's errors are plain text too (the message, repeated in X-akismet-debug-help).
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A form field Raqib cannot read (invalid_form).", "content": _PLAIN_TEXT},
    413: {"description": "Body over max_article_body_bytes.", "content": _PLAIN_TEXT},
    429: {
        "description": "Over this key's rate limit; retry after Retry-After seconds.",
        "content": _PLAIN_TEXT,
        "headers": RATE_LIMIT_HEADERS,
    },
    503: {"description": "No model loaded, or no store for submit-spam/ham.", "content": _PLAIN_TEXT},
}

router = APIRouter(tags=["akismet"], route_class=AkismetRoute, responses=_ERRORS)


class AkismetComment(BaseModel):
    """The form fields Raqib reads (Akismet clients send more; the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    api_key: str | None = None
    key: str | None = None  # verify-key's older name for api_key
    blog: str | None = None
    permalink: str | None = None
    comment_type: str | None = None
    comment_author: str | None = None
    comment_content: str = ""
    blog_lang: str | None = None
    user_role: str | None = None
    is_test: str | None = None
    comment_context: list[str] = Field(default_factory=list)

    @property
    def presented_key(self) -> str | None:
        """The API key, under either of its names."""
        return self.api_key or self.key

    @property
    def testing(self) -> bool:
        """`is_test=1` (or `true`): a client's test request, kept out of the audit log and feedback."""
        return (self.is_test or "").strip().lower() in TEST_FLAGS

    @property
    def by_administrator(self) -> bool:
        """`user_role=administrator` (any case)."""
        return (self.user_role or "").strip().lower() == ADMINISTRATOR


FORM_BODY = request_body(AkismetComment, "application/x-www-form-urlencoded")


async def read_form(request: Request) -> AkismetComment:
    """The form-encoded body as an AkismetComment; `comment_context[]` may repeat."""
    form = await request.form()
    values: dict[str, Any] = {}
    context: list[str] = []
    for name, value in form.multi_items():
        if not isinstance(value, str):
            continue  # an uploaded file means nothing here
        if name == "comment_context" or name.startswith("comment_context["):
            if value.strip():
                context.append(value)
        else:
            values.setdefault(name, value)
    values["comment_context"] = context
    try:
        return AkismetComment.model_validate(values)
    except ValidationError as exc:
        raise ApiError(400, "invalid_form", f"invalid form field: {exc.errors()[0]['msg']}") from None


def _key_valid(service: Service, comment: AkismetComment) -> bool:
    if service.open_access:
        return True
    presented = comment.presented_key
    return bool(presented) and key_matches(presented or "", service.api_keys)


def _limit_rate(request: Request, service: Service, comment: AkismetComment) -> None:
    """Count the request against its key's rate limit (a wrong key is answered `invalid`, not counted)."""
    presented = comment.presented_key
    if service.open_access or not presented or not key_matches(presented, service.api_keys):
        return
    enforce_rate_limit(request, service, caller_id(presented), site_of(comment.blog))


def _invalid_key() -> PlainTextResponse:
    return _text("invalid", headers={DEBUG_HEADER: INVALID_KEY_HELP})


def site_of(blog: str | None) -> str | None:
    """The Raqib site key of an Akismet `blog` URL: its host name, without `www.`."""
    if not blog or not blog.strip():
        return None
    raw = blog.strip()
    try:
        host = urlsplit(raw if "://" in raw else f"//{raw}").hostname
    except ValueError:  # "http://[": not a URL, so the value itself names the site
        return raw
    return host.removeprefix("www.") if host else raw


def comment_id_for(site: str | None, text: str) -> str:
    """Akismet has no comment id: a digest of site and text joins comment-check and submit-*."""
    return "akismet:" + hashlib.sha256(f"{site or ''}\n{text}".encode()).hexdigest()[:24]


def comment_text(comment: AkismetComment) -> str:
    """The comment as a reader sees it, whole: what both comment-check and submit-* key the comment by."""
    # Coral sends HTML, WordPress plain text; both go through the same conversion, so the join key
    # of a comment is the same whichever endpoint computes it.
    return html_to_text(comment.comment_content).strip()


def _verdict(body: str, headers: Mapping[str, str] | None = None) -> PlainTextResponse:
    # Akismet gives every comment-check answer an id of its own.
    return _text(body, headers={**(headers or {}), GUID_HEADER: uuid.uuid4().hex})


@router.post(
    COMMENT_CHECK_PATH,
    response_class=PlainTextResponse,
    summary="Akismet-compatible comment-check",
    openapi_extra=FORM_BODY,
    responses={
        200: {
            "description": "`true` (hold), `false` (publish) or `invalid` (wrong key).",
            "headers": {
                GUID_HEADER: {
                    "description": "A fresh id of this check (on `true` and `false`).",
                    "schema": {"type": "string"},
                }
            },
        }
    },
)
async def comment_check(request: Request, service: ServiceDep, store: OptionalStoreDep) -> Response:
    """`true` when Raqib holds the comment (review or reject), with `X-akismet-pro-tip: discard` on reject.

    Every answer carries a fresh `X-akismet-guid`. `user_role=administrator` is always `false`, unscored
    (as Akismet does). `is_test=1` is scored and answered but not audited, so it never reaches the
    moderators' queue or the training export. The comment (HTML or plain text) is keyed by its whole
    text and scored up to `max_text_chars`; `permalink` finds a stored article by its URL.
    """
    comment = await read_form(request)
    if not _key_valid(service, comment):
        return _invalid_key()
    _limit_rate(request, service, comment)
    if comment.by_administrator:
        return _verdict("false")
    loaded = service.models.current
    if loaded is None:
        return akismet_failure(503, f"model not loaded: {service.models.load_error or 'not loaded yet'}")
    text = comment_text(comment)
    if not text:
        return _verdict("false")  # nothing a reader would see
    site = site_of(comment.blog)
    try:
        score_request = ScoreRequest.model_validate(
            {
                "comment": {
                    # The key is the whole text, as submit-* computes it, so a long comment still joins;
                    # only the scored text is cut: a verdict on the beginning beats none.
                    "id": comment_id_for(site, text),
                    "text": text[: service.settings.max_text_chars],
                    "author": comment.comment_author,
                },
                "article": {"url": comment.permalink, "text": "\n".join(comment.comment_context) or None},
                "site": site,
            }
        )
    except ValidationError as exc:
        return akismet_failure(400, f"invalid comment: {exc.errors()[0]['msg']}")
    response = await score_integration_comment(
        service, loaded, store, score_request, "akismet", keep=not comment.testing
    )
    if response.action == APPROVE:
        return _verdict("false")
    headers = {PRO_TIP_HEADER: "discard"} if response.action == REJECT else None
    return _verdict("true", headers)


def _submit(service: Service, store: Store | None, comment: AkismetComment, label: str) -> Response:
    if not _key_valid(service, comment):
        return _invalid_key()
    if comment.testing:
        return _text(THANKS)  # a client's test: answered as Akismet answers, never learnt from
    text = comment_text(comment)
    if not text:
        return _text(THANKS)  # nothing to learn from
    if store is None:
        raise store_unavailable(service)
    site = site_of(comment.blog)
    article = None
    if comment.permalink:
        try:
            article = store.find_article_by_url(comment.permalink, site)
        except StoreError:
            article = None
    entry = FeedbackEntry(
        comment_id=comment_id_for(site, text),
        site=site,
        label=label,
        source="akismet",
        text=text,
        article_id=article.article_id if article else None,
        article_text="\n".join(comment.comment_context) or None,
    )
    try:
        store.record_feedback(entry)
    except StoreError as exc:
        return akismet_failure(503, f"{exc}; nothing was recorded, retry later")
    return _text(THANKS)


@router.post(
    SUBMIT_SPAM_PATH,
    response_class=PlainTextResponse,
    summary="Akismet-compatible submit-spam",
    openapi_extra=FORM_BODY,
)
async def submit_spam(request: Request, service: ServiceDep, store: OptionalStoreDep) -> Response:
    """A moderator marked the comment as spam: feedback label `spam` (nothing recorded for `is_test=1`)."""
    comment = await read_form(request)
    _limit_rate(request, service, comment)
    return await run_in_threadpool(_submit, service, store, comment, SPAM)


@router.post(
    SUBMIT_HAM_PATH,
    response_class=PlainTextResponse,
    summary="Akismet-compatible submit-ham",
    openapi_extra=FORM_BODY,
)
async def submit_ham(request: Request, service: ServiceDep, store: OptionalStoreDep) -> Response:
    """A moderator marked the comment as not spam: feedback `on_topic` (nothing recorded for `is_test=1`)."""
    comment = await read_form(request)
    _limit_rate(request, service, comment)
    return await run_in_threadpool(_submit, service, store, comment, ON_TOPIC)


@router.post(
    VERIFY_KEY_PATH,
    response_class=PlainTextResponse,
    summary="Akismet-compatible verify-key",
    openapi_extra=FORM_BODY,
)
async def verify_key(request: Request, service: ServiceDep) -> Response:
    """`valid` for one of the API keys (any key while none are configured), else `invalid`."""
    comment = await read_form(request)
    _limit_rate(request, service, comment)
    return _text("valid") if _key_valid(service, comment) else _invalid_key()
