"""Moderators' verdicts as the store keeps them: request → feedback entry, record → response."""

from __future__ import annotations

from serving.schema import DEFAULT_LABELS
from serving.services.context import Service
from serving.services.schemas import FeedbackRequest, FeedbackResponse
from serving.store.records import FeedbackEntry, FeedbackRecord


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
