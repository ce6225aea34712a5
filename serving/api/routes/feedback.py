"""POST /v1/feedback: a moderator's verdict on a comment, kept for the next training run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from serving.api.deps import (
    CallerDep,
    ServiceDep,
    StoreDep,
    enforce_rate_limit,
    require_api_key,
    store_failed,
)
from serving.services.feedback import feedback_entry, feedback_response
from serving.services.schemas import FeedbackRequest, FeedbackResponse, error_responses
from serving.store.errors import StoreError

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
