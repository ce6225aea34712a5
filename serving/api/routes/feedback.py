"""POST /v1/feedback: a moderator's verdict on a comment, kept for the next training run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from serving.api.deps import (
    CallerDep,
    Service,
    ServiceDep,
    StoreDep,
    enforce_rate_limit,
    require_api_key,
    store_failed,
)
from serving.api.schemas import FeedbackRequest, FeedbackResponse, error_responses
from serving.schema import DEFAULT_LABELS
from serving.store.errors import StoreError
from serving.store.records import FeedbackEntry, FeedbackRecord

FEEDBACK_PATH = "/v1/feedback"

router = APIRouter(
    tags=["feedback"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(
        400,
        401,
        413,
        415,
        429,
        described={
            422: "Invalid request (e.g. invalid_label); `field` names the offending field.",
            503: "The store is unavailable or refused the write (store_unavailable); nothing was recorded.",
        },
    ),
)


def feedback_response(service: Service, record: FeedbackRecord) -> FeedbackResponse:
    """The API view of a recorded verdict."""
    loaded = service.models.current
    labels = loaded.model.labels if loaded is not None else DEFAULT_LABELS
    return FeedbackResponse(
        id=record.id,
        comment_id=record.comment_id,
        site=record.site,
        label=record.label,
        known_label=record.label in labels,
        created_at=record.created_at,
    )


def feedback_entry(body: FeedbackRequest, source: str) -> FeedbackEntry:
    """The store's record of a verdict sent as a FeedbackRequest (API or CMS webhook)."""
    return FeedbackEntry(
        comment_id=body.comment_id,
        site=body.site,
        label=body.label,
        moderator=body.moderator,
        source=source,
        text=body.comment.text if body.comment else None,
        article_id=body.article.id if body.article else None,
        article_title=body.article.title if body.article else None,
        article_text=body.article.text if body.article else None,
    )


@router.post(
    FEEDBACK_PATH, status_code=201, response_model=FeedbackResponse, summary="Record a moderator's verdict"
)
def post_feedback(
    body: FeedbackRequest, request: Request, service: ServiceDep, caller: CallerDep, store: StoreDep
) -> FeedbackResponse:
    """Store the verdict (committed to disk before the 201); the latest verdict per comment wins on export."""
    enforce_rate_limit(request, service, caller, body.site)
    try:
        record = store.record_feedback(feedback_entry(body, source="api"))
    except StoreError as exc:
        raise store_failed(exc) from None
    return feedback_response(service, record)
