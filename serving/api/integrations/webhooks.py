"""POST /v1/webhooks/comments: one signed, idempotent webhook any CMS can call.

`X-Raqib-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. Events are
`{id, type, created_at?, data}`: `comment.created` (scored; the answer is /v1/score's),
`comment.moderated` (feedback) and `article.published` (article store). An event id is handled
once: a replay gets the first answer back and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.api.deps import OptionalStoreDep, ServiceDep, enforce_rate_limit, store_failed, store_unavailable
from serving.api.integrations.signatures import RAQIB_HEADER, SignatureError, verify_raqib
from serving.services.articles import article_out
from serving.services.context import Service
from serving.services.errors import ApiError, parse_body, parse_value
from serving.services.feedback import feedback_entry, feedback_response
from serving.services.schemas import (
    ArticlePut,
    ExternalId,
    FeedbackRequest,
    ScoreRequest,
    error_responses,
    request_body,
)
from serving.services.scoring import audit_entry, resolve_article, score_requests, text_too_long
from serving.store.errors import StoreConflict, StoreError
from serving.store.records import Article
from serving.store.store import Store, body_digest
from serving.store.writer import StoreWriter

WEBHOOK_PATH = "/v1/webhooks/comments"
# Signed with the webhook secret, not an API key: the CMS's events share one rate-limit bucket.
WEBHOOK_CALLER = "integration:webhook"

# What to write for an event (inside the transaction that also records the event) → (status, body).
EventOutcome = Callable[[StoreWriter], tuple[int, Any]]

router = APIRouter(
    tags=["webhooks"],
    responses=error_responses(
        400,
        413,
        422,
        429,
        described={
            401: "Missing, wrong or stale X-Raqib-Signature.",
            409: "The event id was already used for another body (event_id_reused).",
            503: "No webhook secret, no model, or no store.",
        },
    ),
)


class WebhookEvent(BaseModel):
    """The envelope of every event."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200, description="Unique per event; replays are answered once.")
    type: str = Field(description="comment.created, comment.moderated or article.published.")
    created_at: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ArticlePublished(ArticlePut):
    """article.published data."""

    id: ExternalId = Field(min_length=1)


def _reply(status: int, body: Any) -> Response:
    return Response(status_code=204) if status == 204 else JSONResponse(body, status_code=status)


def _replay(store: Store, source: str, event_id: str, digest: str) -> Response | None:
    known = store.get_event(source, event_id)
    if known is None:
        return None
    if known.body_sha256 != digest:
        raise ApiError(
            409, "event_id_reused", f"event {event_id!r} was already received with a different body", "id"
        )
    return _reply(known.status, known.response)


def handle_event(
    store: Store,
    source: str,
    event_id: str,
    digest: str,
    plan: Callable[[Store], EventOutcome | None],
) -> Response:
    """Answer an event once: a replay gets the first answer back, and nothing is written twice."""
    # `plan` runs only for a new event (it may score, or read the store) and returns the writes,
    # which commit in one transaction with the event record: all of them or none.
    try:
        replay = _replay(store, source, event_id, digest)
        if replay is not None:
            return replay
        write = plan(store)
        if write is None:
            return Response(status_code=204)  # nothing Raqib keeps; a redelivery costs nothing
        try:
            with store.write() as writer:
                status, body = write(writer)
                writer.add_event(source, event_id, digest, status, body)
        except StoreConflict:
            # The same event raced in on another connection or worker: its answer stands.
            replay = _replay(store, source, event_id, digest)
            if replay is None:
                raise
            return replay
    except StoreError as exc:
        raise store_failed(exc) from None
    return _reply(status, body)


def _comment_created(service: Service, store: Store, data: dict[str, Any]) -> EventOutcome:
    request = parse_value(ScoreRequest, data, "data")
    error = text_too_long(request, service.settings.max_text_chars)
    if error is not None:
        raise ApiError(error.status, error.code, error.message, f"data.{error.field}")
    loaded = service.models.current
    if loaded is None:
        # Not recorded, so the sender's retry is scored once a model is loaded.
        raise ApiError(503, "model_not_loaded", service.models.load_error or "model is not loaded yet")
    request = resolve_article(store, request)
    response = score_requests(service, loaded, [request])[0]

    def write(writer: StoreWriter) -> tuple[int, Any]:
        writer.add_audit([audit_entry(request, response, "webhook")])
        return 200, response.model_dump(mode="json")

    return write


def _comment_moderated(service: Service, data: dict[str, Any]) -> EventOutcome:
    body = parse_value(FeedbackRequest, data, "data")
    entry = feedback_entry(body, source="webhook")

    def write(writer: StoreWriter) -> tuple[int, Any]:
        return 200, feedback_response(service, writer.add_feedback(entry)).model_dump(mode="json")

    return write


def _article_published(data: dict[str, Any]) -> EventOutcome:
    body = parse_value(ArticlePublished, data, "data")
    article = Article(
        article_id=body.id, site=body.site, title=body.title, text=body.text, url=body.url, source="webhook"
    )

    def write(writer: StoreWriter) -> tuple[int, Any]:
        return 200, article_out(writer.put_article(article)).model_dump(mode="json")

    return write


SignatureHeader = Annotated[str | None, Header(alias=RAQIB_HEADER, include_in_schema=False)]


@router.post(
    WEBHOOK_PATH,
    summary="Signed CMS webhook: comment.created, comment.moderated, article.published",
    responses={204: {"description": "An event type Raqib does not use (nothing recorded)."}},
    openapi_extra=request_body(WebhookEvent),
)
async def comment_webhook(
    request: Request, service: ServiceDep, store: OptionalStoreDep, signature: SignatureHeader = None
) -> Response:
    """Verify the signature over the raw body, then score, record feedback or store the article, once."""
    if not service.webhook_secrets:
        # Never accept unsigned events: anyone could then write feedback that trains the model.
        raise ApiError(
            503, "webhook_secret_not_configured", "set RAQIB_WEBHOOK_SECRET to enable /v1/webhooks/comments"
        )
    # Read once, raw: the signature covers these exact bytes, so it is checked before parsing.
    body = await request.body()
    try:
        verify_raqib(body, signature, service.webhook_secrets)
    except SignatureError as exc:
        raise ApiError(401, exc.code, exc.message) from None
    event = parse_body(WebhookEvent, body)
    site = event.data.get("site")
    enforce_rate_limit(request, service, WEBHOOK_CALLER, site if isinstance(site, str) else None)
    if store is None:
        raise store_unavailable(service)  # idempotency needs the store: the sender retries later

    def plan(store: Store) -> EventOutcome | None:
        if event.type == "comment.created":
            return _comment_created(service, store, event.data)
        if event.type == "comment.moderated":
            return _comment_moderated(service, event.data)
        if event.type == "article.published":
            return _article_published(event.data)
        return None

    return await run_in_threadpool(handle_event, store, "webhook", event.id, body_digest(body), plan)
