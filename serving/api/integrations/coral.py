"""Coral Talk: the External Moderation Phase (`/v1/integrations/coral/moderate`) and its webhooks.

Coral signs the raw body (`X-Coral-Signature: sha256=<hex>`, several values while it rotates
secrets), so both routes read the body once, verify it against `coral_secrets`, and only then
parse it with pydantic. See serving/INTEGRATIONS.md for the status and reason mappings.

The shapes are Coral's own (coralproject/talk v9.11): the phase request is `ExternalModerationRequest`
in `server/src/core/server/services/comments/pipeline/phases/external.ts` — no comment id, no story
title; webhook events are `CoralEventPayload` (`server/src/core/server/events/event.ts`: id, type,
data, createdAt) plus tenantID and tenantDomain (`server/src/core/server/queue/tasks/webhook/
processor.ts`), with `data` as in `server/src/core/server/events/events.ts` and the Subscription
inputs it names (`server/src/core/server/graph/resolvers/Subscription/*.ts`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.api.deps import OptionalStoreDep, ServiceDep, enforce_rate_limit, store_unavailable
from serving.api.integrations.signatures import CORAL_HEADER, SignatureError, verify_coral
from serving.api.integrations.webhooks import EventOutcome, handle_event
from serving.model.decisions import REJECT
from serving.runtime.policy import OBSERVE
from serving.schema import ABUSIVE, SPAM
from serving.services.context import Service
from serving.services.errors import ApiError, parse_body, parse_value
from serving.services.remote import (
    COMMENT_JOB,
    DECISION_JOB,
    STORY_JOB,
    VERDICT_STATUSES,
    coral_comment_key,
    decision_label,
    held_label,
)
from serving.services.schemas import (
    ExternalId,
    ReasonOut,
    ScoreRequest,
    ScoreResponse,
    error_responses,
    request_body,
)
from serving.services.scoring import score_integration_comment
from serving.store.records import Article, FeedbackEntry
from serving.store.store import Store, body_digest
from serving.store.writer import StoreWriter
from serving.text.html import html_to_text

logger = logging.getLogger("raqib.coral")

MODERATE_PATH = "/v1/integrations/coral/moderate"
WEBHOOK_PATH = "/v1/integrations/coral/webhook"
# Coral authenticates with its signing secret, not an API key: its requests share one rate-limit bucket.
CORAL_CALLER = "integration:coral"

# Coral's roles whose comments a machine never rejects (a reject becomes a withhold for review).
STAFF_ROLES = frozenset({"STAFF", "MODERATOR", "ADMIN"})
# Raqib label → Coral's COMMENT_FLAG_DETECTED_REASON. Coral has no reason that means "off topic";
# a wrong one (SUSPECT_WORD, LINKS, ...) would send moderators looking for something that is not
# there, so other labels withhold or reject with the status alone and no FLAG.
CORAL_REASONS = {SPAM: "COMMENT_DETECTED_SPAM", ABUSIVE: "COMMENT_DETECTED_TOXIC"}

router = APIRouter(
    tags=["coral"],
    responses=error_responses(
        400,
        413,
        422,
        429,
        described={
            401: "Missing or wrong X-Coral-Signature.",
            503: "No Coral signing secret configured (coral_secrets), or no store for a webhook event.",
        },
    ),
)

SiteQuery = Annotated[
    str | None,
    Query(description="Raqib site key for policy and joins (default: Coral's site id); same on both URLs."),
]
SignatureHeader = Annotated[str | None, Header(alias=CORAL_HEADER, include_in_schema=False)]


# --- HTML → text ---------------------------------------------------------------------------------


class _Coral(BaseModel):
    # Coral adds fields over time; unknown ones are ignored.
    model_config = ConfigDict(extra="ignore")


class CoralComment(_Coral):
    """The comment as Coral sends it: body (HTML or plain text, per the phase's format) and parentID."""

    body: str
    parentID: str | None = None
    # Coral sends no id (external.ts); read when a relay adds one, else Raqib makes a provisional one.
    id: ExternalId | None = None


class CoralAuthor(_Coral):
    """The commenter."""

    id: ExternalId | None = None
    role: str | None = None


class CoralStory(_Coral):
    """The story (article) the comment is on."""

    id: ExternalId | None = None
    url: str | None = None


class CoralSite(_Coral):
    """The Coral site."""

    id: ExternalId | None = None


class CoralModerationRequest(_Coral):
    """What Coral's External Moderation Phase posts for a new or edited comment."""

    action: str = "NEW"
    comment: CoralComment
    author: CoralAuthor = Field(default_factory=CoralAuthor)
    story: CoralStory = Field(default_factory=CoralStory)
    site: CoralSite = Field(default_factory=CoralSite)
    tenantID: str | None = None
    tenantDomain: str | None = None


class CoralAction(BaseModel):
    """A moderation action Coral should add to the comment."""

    actionType: Literal["FLAG"] = "FLAG"
    reason: str


class RaqibNote(BaseModel):
    """Raqib's own view, for operators and logs: Coral validates its response with `stripUnknown`
    (external.ts, `validateResponse`), so this field never reaches Coral's database."""

    comment_id: str = Field(
        description="The id Raqib audits the comment under (provisional: coral:<digest>)."
    )
    label: str
    reasons: list[ReasonOut]


class CoralModerationResponse(BaseModel):
    """Raqib's verdict in Coral's terms."""

    actions: list[CoralAction]
    status: Literal["APPROVED", "REJECTED", "SYSTEM_WITHHELD", "NONE"]
    tags: list[str]
    raqib: RaqibNote | None = None


class CoralEvent(_Coral):
    """Coral's webhook envelope."""

    id: str = Field(min_length=1)
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    createdAt: str | None = None
    tenantID: str | None = None
    tenantDomain: str | None = None


class StoryCreated(_Coral):
    """STORY_CREATED data."""

    storyID: ExternalId
    storyURL: str | None = None
    siteID: ExternalId | None = None


class CommentModerationQueue(_Coral):
    """COMMENT_ENTERED_/COMMENT_LEFT_MODERATION_QUEUE data (Subscription/commentLeftModerationQueue.ts)."""

    commentID: ExternalId
    queue: str | None = None
    # The comment's status after the change; optional in Coral's interface.
    status: str | None = None
    storyID: ExternalId | None = None
    siteID: ExternalId | None = None
    section: str | None = None


class CommentStatusUpdated(_Coral):
    """COMMENT_STATUS_UPDATED data (Subscription/commentStatusUpdated.ts): no siteID in Coral's interface."""

    commentID: ExternalId
    newStatus: str
    oldStatus: str | None = None
    moderatorID: str | None = None
    commentRevisionID: str | None = None
    storyID: ExternalId | None = None
    siteID: ExternalId | None = None


# --- helpers -------------------------------------------------------------------------------------


def _check_signature(service: Service, body: bytes, header: str | None) -> None:
    if not service.coral_secrets:
        # Never accept unsigned: without a secret nothing proves the request comes from Coral.
        raise ApiError(
            503, "coral_secret_not_configured", "set RAQIB_CORAL_SECRETS to Coral's signing secret(s)"
        )
    try:
        verify_coral(body, header, service.coral_secrets)
    except SignatureError as exc:
        raise ApiError(401, exc.code, exc.message) from None


def coral_verdict(response: ScoreResponse) -> CoralModerationResponse | None:
    """Raqib's decision as Coral's status and FLAG action; None (no opinion) in observe mode."""
    if response.decision.mode == OBSERVE:
        return None  # observe mode must not change what Coral does, and APPROVED would
    note = RaqibNote(comment_id=response.comment_id or "", label=response.label, reasons=response.reasons)
    if response.action == "approve":
        return CoralModerationResponse(actions=[], status="APPROVED", tags=[], raqib=note)
    reason = CORAL_REASONS.get(response.decision.label or "")
    return CoralModerationResponse(
        actions=[CoralAction(reason=reason)] if reason else [],
        status="REJECTED" if response.action == REJECT else "SYSTEM_WITHHELD",
        tags=[],
        raqib=note,
    )


def _score_request(payload: CoralModerationRequest, text: str, site: str | None) -> ScoreRequest | None:
    story = payload.story
    # No comment id from Coral: a provisional one joins this score to the comment's later events.
    comment_id = payload.comment.id or coral_comment_key(story.id, payload.author.id, text)
    try:
        return ScoreRequest.model_validate(
            {
                "comment": {"id": comment_id, "text": text, "author": payload.author.id},
                "article": {"id": story.id, "url": story.url} if (story.id or story.url) else None,
                "site": site,
            }
        )
    except ValidationError:
        return None


# --- routes --------------------------------------------------------------------------------------


@router.post(
    MODERATE_PATH,
    response_model=CoralModerationResponse,
    summary="Coral External Moderation Phase",
    responses={
        204: {"description": "No opinion (no model loaded, observe mode, nothing to judge, or too slow)."}
    },
    openapi_extra=request_body(CoralModerationRequest),
)
async def coral_moderate(
    request: Request,
    service: ServiceDep,
    store: OptionalStoreDep,
    signature: SignatureHeader = None,
    site: SiteQuery = None,
) -> CoralModerationResponse | Response:
    """Score a new or edited Coral comment; reject, withhold for review, approve, or 204 for no opinion."""
    # Read once, raw: the signature covers these exact bytes, so it is checked before parsing.
    body = await request.body()
    _check_signature(service, body, signature)
    payload = parse_body(CoralModerationRequest, body)
    enforce_rate_limit(request, service, CORAL_CALLER, site or payload.site.id)
    loaded = service.models.current
    if loaded is None:
        return Response(status_code=204)  # Coral falls back to its own rules; a 5xx would only add noise
    text = html_to_text(payload.comment.body)
    if not text or len(text) > service.settings.max_text_chars:
        return Response(status_code=204)
    score_request = _score_request(payload, text, site or payload.site.id)
    if score_request is None:
        return Response(status_code=204)
    staff = (payload.author.role or "").upper() in STAFF_ROLES
    budget = service.settings.coral_timeout_ms / 1000
    try:
        # Scoring takes milliseconds; the deadline keeps a stalled store from outlasting Coral's timeout.
        response = await asyncio.wait_for(
            score_integration_comment(
                service,
                loaded,
                store,
                score_request,
                "coral",
                trusted_reason="Coral staff role" if staff else None,
                finder=service.remote.finder if service.remote is not None else None,
                via_coral=True,
            ),
            budget,
        )
    except TimeoutError:
        logger.warning(
            "coral moderation took over %d ms: answered no opinion", service.settings.coral_timeout_ms
        )
        return Response(status_code=204)
    verdict = coral_verdict(response)
    return verdict if verdict is not None else Response(status_code=204)


def _coral_site(site: str | None, data_site: str | None) -> str | None:
    return site or data_site


def _story_created(service: Service, event: CoralEvent, site: str | None) -> EventOutcome:
    data = parse_value(StoryCreated, event.data, "data")
    site = _coral_site(site, data.siteID)
    article = Article(article_id=data.storyID, site=site, url=data.storyURL, source="coral")
    fetch = service.remote is not None and service.remote.jobs is not None

    def write(writer: StoreWriter) -> tuple[int, Any]:
        stored = writer.put_article(article, merge=True)  # keeps a title/text stored via PUT /v1/articles
        if fetch and not stored.title:
            # Coral scrapes the story's title after creating it: ask its API, retrying until it answers.
            writer.add_job(STORY_JOB, site, data.storyID, detail=data.storyURL)
            return 202, {"status": "queued", "article_id": stored.article_id, "site": stored.site}
        return 200, {"status": "recorded", "article_id": stored.article_id, "site": stored.site}

    return write


def _queue_job(kind: str, site: str | None, comment_id: str) -> EventOutcome:
    def write(writer: StoreWriter) -> tuple[int, Any]:
        writer.add_job(kind, site, comment_id)
        return 202, {"status": "queued", "comment_id": comment_id}

    return write


def _comment_event(
    service: Service, store: Store, event: CoralEvent, site: str | None
) -> EventOutcome | None:
    if event.type == "COMMENT_STATUS_UPDATED":
        updated = parse_value(CommentStatusUpdated, event.data, "data")
        comment_id, status, story_id = updated.commentID, updated.newStatus, updated.storyID
        site = _coral_site(site, updated.siteID)
    else:
        moved = parse_value(CommentModerationQueue, event.data, "data")
        comment_id, status, story_id = moved.commentID, moved.status or "", moved.storyID
        site = _coral_site(site, moved.siteID)
    with_api = service.remote is not None and service.remote.jobs is not None
    if event.type == "COMMENT_ENTERED_MODERATION_QUEUE":
        # Held (by Raqib or Coral): its body from Coral's API gives Raqib's audit row Coral's id.
        return _queue_job(COMMENT_JOB, site, comment_id) if with_api else None
    if with_api:
        # Body, story and the moderator's reason are only in Coral's API; its current status wins
        # over the event's (a later decision may already have replaced this one).
        return _queue_job(DECISION_JOB, site, comment_id)
    # From the event alone: no reason code and no text; the same rule as with Coral's API.
    status = status.upper()
    if status not in VERDICT_STATUSES:
        return None
    label = decision_label(status, None, held_label(store, site, comment_id))
    entry = FeedbackEntry(comment_id=comment_id, site=site, label=label, source="coral", article_id=story_id)

    def write(writer: StoreWriter) -> tuple[int, Any]:
        record = writer.add_feedback(entry)
        return 200, {"status": "recorded", "comment_id": record.comment_id, "label": record.label}

    return write


# Coral's webhook listener delivers STORY_CREATED, COMMENT_CREATED, COMMENT_REPLY_CREATED and
# COMMENT_ENTERED/LEFT_MODERATION_QUEUE (server/src/core/server/events/listeners/webhook.ts);
# COMMENT_STATUS_UPDATED is accepted too, for relays of Coral's internal event of that name.
CORAL_EVENTS = frozenset(
    {
        "STORY_CREATED",
        "COMMENT_ENTERED_MODERATION_QUEUE",
        "COMMENT_LEFT_MODERATION_QUEUE",
        "COMMENT_STATUS_UPDATED",
    }
)


@router.post(
    WEBHOOK_PATH,
    summary="Coral webhooks (STORY_CREATED, COMMENT_ENTERED/LEFT_MODERATION_QUEUE, COMMENT_STATUS_UPDATED)",
    responses={
        202: {"description": "Kept: Raqib asks Coral's API for the rest, retrying until it answers."},
        204: {"description": "Event type (or status) Raqib does not use."},
        **error_responses(described={409: "The event id already came with another body (event_id_reused)."}),
    },
    openapi_extra=request_body(CoralEvent),
)
async def coral_webhook(
    request: Request,
    service: ServiceDep,
    store: OptionalStoreDep,
    signature: SignatureHeader = None,
    site: SiteQuery = None,
) -> Response:
    """Stories fill the article store, held comments are linked, decisions become labels (once per event)."""
    body = await request.body()  # raw, once: signed bytes
    _check_signature(service, body, signature)
    event = parse_body(CoralEvent, body)
    enforce_rate_limit(request, service, CORAL_CALLER, site)
    if event.type not in CORAL_EVENTS:
        return Response(status_code=204)
    if store is None:
        raise store_unavailable(service)

    def plan(store: Store) -> EventOutcome | None:
        if event.type == "STORY_CREATED":
            return _story_created(service, event, site)
        return _comment_event(service, store, event, site)

    answer = await run_in_threadpool(handle_event, store, "coral", event.id, body_digest(body), plan)
    if answer.status_code == 202 and service.remote is not None and service.remote.jobs is not None:
        service.remote.jobs.kick()
    return answer
