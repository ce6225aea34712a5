"""What the moderators' queue does, without HTTP: list pending comments, decide, undo, import an export.

The queue's routes (`serving.api.queue.endpoints`) parse requests, call these functions and turn
their results and exceptions into responses. Store failures come through as
`serving.store.errors.StoreError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from serving.model.decisions import Thresholds
from serving.model.moderation import CommentInput, Scored
from serving.runtime.loaded import LoadedModel
from serving.schema import ABUSIVE, DEFAULT_LABELS, OFF_TOPIC, ON_TOPIC, SPAM
from serving.services.context import Service
from serving.services.queue_import import ImportRecord, RawRow, RowError, validate_rows
from serving.services.schemas import ArticleIn, CommentIn, ScoreRequest, ScoreResponse
from serving.services.scoring import audit_entry, resolve_article, score_fields
from serving.settings import Settings
from serving.store.queue import (
    DecisionRecord,
    UndoResult,
    audit_row,
    audited_sites,
    latest_audit,
    record_decision,
    undo_decision,
)
from serving.store.records import Article, AuditRecord, QueueOrder
from serving.store.store import Store

logger = logging.getLogger("raqib.queue")

Decision = Literal["approve", "spam", "off_topic", "abusive"]
# What each button records: approving a comment says it is fine where it is, i.e. on_topic.
DECISION_LABELS: dict[str, str] = {
    "approve": ON_TOPIC,
    "spam": SPAM,
    "off_topic": OFF_TOPIC,
    "abusive": ABUSIVE,
}
IMPORT_SOURCE = "import"


# --- listing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingFilters:
    """Which pending comments to list, and in what order (None: no restriction)."""

    site: str | None = None
    action: str | None = None
    label: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    order: QueueOrder = "risk"


@dataclass(frozen=True)
class PendingComment:
    """A comment waiting for a moderator: its latest audit row, its stored article, its explanation."""

    record: AuditRecord
    article: Article | None
    explanation: Scored | None = None
    """Spans and reasons from the model serving now; None while no model is loaded."""


@dataclass(frozen=True)
class PendingPage:
    """One page of the queue, with what the filters can offer."""

    comments: list[PendingComment]
    has_more: bool
    sites: list[str | None]
    labels: list[str]


def _thresholds_for(loaded: LoadedModel, sites: Sequence[str | None]) -> list[Thresholds] | None:
    """Per-comment thresholds when any site overrides them; None lets the model use its own."""
    rules = [loaded.rules_for(site) for site in sites]
    if all(rule is None for rule in rules):
        return None
    return [rule.thresholds if rule else loaded.model.thresholds for rule in rules]


def _stored_articles(store: Store, records: Sequence[AuditRecord]) -> list[Article | None]:
    """Each record's article from the article store, each article read once."""
    found: dict[tuple[str | None, str], Article | None] = {}
    for record in records:
        if record.article_id and (record.site, record.article_id) not in found:
            found[(record.site, record.article_id)] = store.get_article(record.article_id, record.site)
    return [found[(r.site, r.article_id)] if r.article_id else None for r in records]


def _explain(
    loaded: LoadedModel | None, records: Sequence[AuditRecord], articles: Sequence[Article | None]
) -> list[Scored | None]:
    """Spans and reasons for each record (the audit log keeps scores only), from the current model."""
    if loaded is None or not records:
        return [None] * len(records)
    inputs = [
        CommentInput(
            text=record.text,
            article_title=article.title if article else None,
            article_text=article.text if article else None,
        )
        for record, article in zip(records, articles, strict=True)
    ]
    thresholds = _thresholds_for(loaded, [record.site for record in records])
    return list(loaded.model.score(inputs, thresholds))


def list_pending(
    store: Store, loaded: LoadedModel | None, filters: PendingFilters, limit: int, offset: int
) -> PendingPage:
    """The latest audit row of each comment without a verdict, filtered and ordered, explained by `loaded`."""
    records = store.pending(
        site=filters.site,
        action=filters.action,
        label=filters.label or None,
        min_score=filters.min_score,
        max_score=filters.max_score,
        order=filters.order,
        # One more than asked for says whether another page follows.
        limit=limit + 1,
        offset=offset,
    )
    has_more = len(records) > limit
    records = records[:limit]
    articles = _stored_articles(store, records)
    sites = audited_sites(store)
    explanations = _explain(loaded, records, articles)
    return PendingPage(
        comments=[
            PendingComment(record=record, article=article, explanation=explanation)
            for record, article, explanation in zip(records, articles, explanations, strict=True)
        ],
        has_more=has_more,
        sites=sites,
        labels=list(loaded.model.labels) if loaded is not None else list(DEFAULT_LABELS),
    )


# --- deciding --------------------------------------------------------------------------------------


class CommentNotFound(LookupError):
    """No audited comment matches the audit id, or the comment id and site, of a decision."""


def decide(
    store: Store,
    moderator: str,
    decision: Decision,
    audit_id: int | None = None,
    comment_id: str | None = None,
    site: str | None = None,
) -> DecisionRecord:
    """Record `decision` on an audit row (by id, else the comment's latest) as one feedback row.

    Raises `CommentNotFound`, `serving.store.queue.AlreadyDecided` when the comment already has a
    verdict, or `StoreError`.
    """
    if audit_id is not None:
        audit = audit_row(store, audit_id)
    elif comment_id is not None:
        audit = latest_audit(store, comment_id, site)
    else:
        raise CommentNotFound("a decision names an audit id or a comment id")
    if audit is None or audit.comment_id is None:
        raise CommentNotFound("no audited comment matches")
    # The feedback row keeps the article as stored now, so training sees what the moderator saw.
    article = store.get_article(audit.article_id, audit.site) if audit.article_id else None
    record = record_decision(store, audit, decision, DECISION_LABELS[decision], moderator, article)
    logger.info(
        "moderator %s decided %s on comment %s (site %s)", moderator, decision, record.comment_id, record.site
    )
    return record


def undo(store: Store, moderator: str, decision_id: int) -> UndoResult:
    """Take back one of `moderator`'s decisions: its feedback row goes, its log row is marked undone.

    Raises `serving.store.queue.DecisionNotFound` (no such decision of theirs), `AlreadyUndone`, or
    `StoreError`.
    """
    result = undo_decision(store, decision_id, moderator)
    logger.info("moderator %s undid decision %d", moderator, decision_id)
    return result


# --- importing -------------------------------------------------------------------------------------


class ImportRefused(Exception):
    """An import that is not done at all (imports are all or nothing), and why."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        line: int | None = None,
        errors: Sequence[RowError] = (),
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.line = line
        self.errors = list(errors)


class ImportTooLarge(ImportRefused):
    """More records than one import may hold (`max_batch_items`)."""


@dataclass(frozen=True)
class ImportResult:
    """The comments an import scored and put in the audit log (pending unless already decided)."""

    comment_ids: list[str]


def _checked_records(rows: Sequence[RawRow], settings: Settings) -> list[ImportRecord]:
    """Every row as a valid record, or `ImportRefused` naming the first bad one (and up to 20 more)."""
    if not rows:
        raise ImportRefused("empty_import", "the import has no records")
    if len(rows) > settings.max_batch_items:
        raise ImportTooLarge(
            "too_many_items",
            f"the import has {len(rows)} records; the limit is {settings.max_batch_items} (split it)",
        )
    records, errors = validate_rows(list(rows), settings.max_text_chars)
    if errors:
        first = errors[0]
        raise ImportRefused(first.code, first.message, field=first.field, line=first.line, errors=errors)
    return records


def _articles_to_store(records: Sequence[ImportRecord]) -> list[Article]:
    """The articles an import describes (by title, text or URL), the last record's values winning."""
    articles: dict[tuple[str | None, str], Article] = {}
    for record in records:
        article_id = record.resolved_article_id()
        if article_id and (record.article_title or record.article_text or record.article_url):
            articles[(record.site, article_id)] = Article(
                article_id=article_id,
                site=record.site,
                title=record.article_title,
                text=record.article_text,
                url=record.article_url,
                source=IMPORT_SOURCE,
            )
    return list(articles.values())


def _score_request(record: ImportRecord) -> ScoreRequest:
    article_id = record.resolved_article_id()
    article = (
        ArticleIn(id=article_id, title=record.article_title, text=record.article_text) if article_id else None
    )
    return ScoreRequest(
        comment=CommentIn(id=record.resolved_comment_id(), text=record.text, author=record.author),
        article=article,
        site=record.site,
    )


def import_comments(
    service: Service, loaded: LoadedModel, store: Store, rows: Sequence[RawRow], moderator: str
) -> ImportResult:
    """Validate every row, store the articles, score all comments in one batch, audit them as "import".

    Scoring is the scoring API's, with `loaded`: stored articles fill in, each site's policy applies.
    Raises `ImportRefused` (`ImportTooLarge` for too many rows) before anything is written, or
    `StoreError`.
    """
    records = _checked_records(rows, service.settings)
    articles = _articles_to_store(records)
    if articles:
        # Kept so the queue can show each comment's article title; one transaction for all of them.
        with store.write() as writer:
            for article in articles:
                writer.put_article(article, merge=True)
    requests = [resolve_article(store, _score_request(record)) for record in records]
    # One vectorised model call for every record.
    responses = [ScoreResponse(**fields) for fields in score_fields(service, loaded, requests)]
    store.record_audit([audit_entry(r, s, IMPORT_SOURCE) for r, s in zip(requests, responses, strict=True)])
    logger.info("moderator %s imported %d comments into the queue", moderator, len(requests))
    return ImportResult(comment_ids=[request.comment.id or "" for request in requests])
