"""Scoring as every entry point does it: resolve the article, score under the site's policy, audit, shadow.

Routes (/v1/score, the batch, the queue's import, Coral, Perspective, Akismet, webhooks) call these
functions; none of them knows HTTP beyond the shapes in serving.services.schemas.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import BackgroundTasks
from fastapi.concurrency import run_in_threadpool

from serving.model.decisions import APPROVE, REJECT, REVIEW, Thresholds
from serving.model.moderation import CommentInput, Scored
from serving.runtime.batcher import Batcher
from serving.runtime.loaded import LoadedModel
from serving.runtime.metrics import ServiceMetrics
from serving.runtime.policy import OBSERVE, apply_policy
from serving.runtime.shadow import ShadowCase
from serving.services.context import CommentBatcher, Service
from serving.services.errors import ApiError
from serving.services.remote import ArticleFinder
from serving.services.schemas import (
    DecisionOut,
    ModelRef,
    ReasonOut,
    ScoreRequest,
    ScoreResponse,
    SpanOut,
)
from serving.settings import Settings
from serving.store.errors import StoreError
from serving.store.records import AuditEntry
from serving.store.shadow import Verdict
from serving.store.store import Store

logger = logging.getLogger("raqib.audit")


def text_too_long(request: ScoreRequest, max_chars: int) -> ApiError | None:
    """The 422 for a comment over `max_text_chars` code points, or None."""
    length = len(request.comment.text)
    if length > max_chars:
        return ApiError(
            422,
            "text_too_long",
            f"comment text has {length} characters; the limit is {max_chars}",
            field="comment.text",
        )
    return None


def _as_input(request: ScoreRequest) -> CommentInput:
    article = request.article
    return CommentInput(
        text=request.comment.text,
        article_title=article.title if article else None,
        article_text=article.text if article else None,
        article_key=f"{request.site or ''}/{article.id}" if article and article.id else None,
    )


def _thresholds(loaded: LoadedModel, requests: Sequence[ScoreRequest]) -> list[Thresholds] | None:
    """Per-item thresholds when any item's site overrides them; None lets the model use its own."""
    rules = [loaded.rules_for(request.site) for request in requests]
    if all(rule is None for rule in rules):
        return None
    return [rule.thresholds if rule else loaded.model.thresholds for rule in rules]


def _response_fields(
    service: Service,
    loaded: LoadedModel,
    request: ScoreRequest,
    scored: Scored,
    trusted_reason: str | None = None,
) -> dict[str, Any]:
    rules = loaded.rules_for(request.site)
    decision = apply_policy(scored.action, scored.decided_label, rules, request.comment.author)
    lowered_by = "trusted author" if decision.trusted_author and scored.action == REJECT else None
    if lowered_by is None and trusted_reason is not None and decision.decided_action == REJECT:
        # An integration vouches for the author (Coral's staff roles): the trusted-author rule applies.
        decision = dataclasses.replace(
            decision,
            decided_action=REVIEW,
            action=APPROVE if decision.mode == OBSERVE else REVIEW,
            trusted_author=True,
        )
        lowered_by = trusted_reason
    service.metrics.count_decision(scored.label, decision.decided_action)
    reasons = [ReasonOut(kind=r.kind, detail=r.detail, weight=r.weight) for r in scored.reasons]
    if lowered_by is not None:
        reasons.append(ReasonOut(kind="policy", detail=f"{lowered_by}: reject lowered to review", weight=1.0))
    # Plain values: pydantic checks them (actions and modes are Literal types) when the caller
    # builds a ScoreResponse or BatchItemOk from this.
    return {
        "comment_id": request.comment.id,
        "label": scored.label,
        "scores": scored.scores,
        "action": decision.action,
        "decision": DecisionOut(
            action=decision.decided_action,  # type: ignore[arg-type]
            label=decision.label,
            mode=decision.mode,  # type: ignore[arg-type]
        ),
        "reasons": reasons,
        "spans": [SpanOut(begin=s.begin, end=s.end, score=s.score) for s in scored.spans],
        "model": ModelRef(name=loaded.name, version=loaded.version),
    }


def needs_article_lookup(request: ScoreRequest) -> bool:
    """True when the request names an article (id or URL) but lacks its title or text."""
    article = request.article
    return bool(article and (article.id or article.url) and not (article.title and article.text))


def resolve_article(
    store: Store | None, request: ScoreRequest, finder: ArticleFinder | None = None, via_coral: bool = False
) -> ScoreRequest:
    """The request with title and text filled from the article store (the request's own values win)."""
    return resolve_article_context(store, request, finder, via_coral)[0]


def resolve_article_context(
    store: Store | None, request: ScoreRequest, finder: ArticleFinder | None = None, via_coral: bool = False
) -> tuple[ScoreRequest, ReasonOut | None]:
    """`resolve_article`, plus a reason saying which article the comment is judged against.

    With a `finder`, an article the store lacks (or a fetched one past its TTL) is fetched in the
    background: this request is scored at once with what is known, and the reason says so.
    """
    if not needs_article_lookup(request):
        return request, None
    article = request.article
    assert article is not None
    stored = None
    if store is not None:
        try:
            stored = store.get_article(article.id, request.site) if article.id else None
            if stored is None and article.url:
                stored = store.find_article_by_url(article.url, request.site)
        except StoreError as exc:
            logger.warning("article look-up failed, scoring without the stored article: %s", exc)
    if stored is not None and (stored.title or stored.text):
        if finder is not None and finder.is_stale(stored):
            finder.request(
                request.site, article.id or stored.article_id, article.url or stored.url, via_coral
            )
        merged = article.model_copy(
            update={
                "id": article.id or stored.article_id,
                "title": article.title or stored.title,
                "text": article.text or stored.text,
            }
        )
        shown = f"«{stored.title[:80]}»" if stored.title else f"{stored.article_id} (its text, no title)"
        reason = ReasonOut(kind="article", detail=f"judged against the stored article {shown}", weight=0.0)
        return request.model_copy(update={"article": merged}), reason
    if article.title or article.text:
        return request, None
    named = article.id or article.url
    if finder is not None and finder.request(request.site, article.id, article.url, via_coral):
        detail = f"no article context: {named} is not known yet and is being fetched; judged without it"
    else:
        detail = f"no article context: {named} is not stored (nothing to fetch it from); judged without it"
    return request, ReasonOut(kind="article", detail=detail, weight=0.0)


def score_fields(
    service: Service,
    loaded: LoadedModel,
    requests: Sequence[ScoreRequest],
    trusted_reason: str | None = None,
) -> list[dict[str, Any]]:
    """Score requests in one model call under their sites' policies (articles already resolved)."""
    scored = score_together(loaded, requests)
    return [
        _response_fields(service, loaded, request, verdict, trusted_reason)
        for request, verdict in zip(requests, scored, strict=True)
    ]


def score_requests(
    service: Service,
    loaded: LoadedModel,
    requests: Sequence[ScoreRequest],
    trusted_reason: str | None = None,
) -> list[ScoreResponse]:
    """`score_fields` as /v1/score responses."""
    return [ScoreResponse(**fields) for fields in score_fields(service, loaded, requests, trusted_reason)]


def audit_entry(request: ScoreRequest, response: ScoreResponse, source: str) -> AuditEntry:
    """The audit-log row for one decision."""
    return AuditEntry(
        comment_id=request.comment.id,
        site=request.site,
        article_id=request.article.id if request.article else None,
        text=request.comment.text,
        author_id=request.comment.author,
        label=response.label,
        action=response.action,
        decided_action=response.decision.action,
        decided_label=response.decision.label,
        scores=response.scores,
        model_name=response.model.name,
        model_version=response.model.version,
        source=source,
    )


def _audit_failed(service: Service, count: int, exc: StoreError | None) -> None:
    service.metrics.audit_failures.inc(count)
    if exc is not None:  # without a store at all, StoreHolder has already said why (once)
        service.stores.audit_failed(count, exc)


def audit_quietly(service: Service, store: Store | None, entries: Sequence[AuditEntry]) -> None:
    """Log decisions; a store failure is counted and logged (without text) but never fails the request."""
    if not entries:
        return
    if store is None:
        _audit_failed(service, len(entries), None)
        return
    try:
        store.record_audit(entries)
    except StoreError as exc:
        _audit_failed(service, len(entries), exc)
        return
    service.stores.audit_succeeded()


async def audit_from_loop(service: Service, store: Store | None, entries: Sequence[AuditEntry]) -> None:
    """`audit_quietly` for the event loop: waits for the group commit without a threadpool hop."""
    if not entries:
        return
    if store is None:
        _audit_failed(service, len(entries), None)
        return
    try:
        await store.submit_audit_from_loop(entries)
    except StoreError as exc:
        _audit_failed(service, len(entries), exc)
        return
    service.stores.audit_succeeded()


def shadow_after(
    background: BackgroundTasks,
    service: Service,
    store: Store | None,
    requests: Sequence[ScoreRequest],
    responses: Sequence[ScoreResponse],
    source: str,
) -> None:
    """Have the shadow model, if one is loaded, score the same comments once the answer is sent."""
    slot = service.models.shadow
    if slot is None or slot.loaded is None or not requests:
        return
    cases = [
        ShadowCase(
            comment=_as_input(request),
            comment_id=response.comment_id,
            site=request.site,
            author=request.comment.author,
            champion_name=response.model.name,
            champion_version=response.model.version,
            champion=Verdict(label=response.label, action=response.decision.action),
        )
        for request, response in zip(requests, responses, strict=True)
    ]
    # A background task runs after the response is sent, so the caller never waits for the shadow,
    # and the server still finishes it on shutdown (its comparisons are not lost).
    background.add_task(service.models.shadow_tracker.run, slot.loaded, cases, store, service.metrics, source)


def _score_one(
    service: Service, loaded: LoadedModel, request: ScoreRequest, trusted_reason: str | None = None
) -> ScoreResponse:
    return _response(service, loaded, request, score_together(loaded, [request])[0], trusted_reason)


def _response(
    service: Service,
    loaded: LoadedModel,
    request: ScoreRequest,
    scored: Scored,
    trusted_reason: str | None = None,
) -> ScoreResponse:
    return ScoreResponse(**_response_fields(service, loaded, request, scored, trusted_reason))


def score_together(loaded: LoadedModel, requests: Sequence[ScoreRequest]) -> list[Scored]:
    """One model call for requests that waited together, each under its own site's thresholds."""
    return loaded.model.score([_as_input(r) for r in requests], _thresholds(loaded, requests))


def comment_batcher(settings: Settings, metrics: ServiceMetrics) -> CommentBatcher | None:
    """The batcher /v1/score hands its comments to (None when `score_batch_max` is 1)."""
    if settings.score_batch_max <= 1:
        return None
    return Batcher(
        score_together,
        settings.score_batch_max,
        cost=_batch_cost,
        inline_budget=INLINE_BATCH_BUDGET,
        on_batch=metrics.score_batch_size.observe,
    )


async def score_comment(
    service: Service, loaded: LoadedModel, request: ScoreRequest, trusted_reason: str | None = None
) -> ScoreResponse:
    """One comment (/v1/score's, or an integration's), scored together with the comments waiting at
    the same time. `trusted_reason`: an integration vouches for the author (see `_response_fields`)."""
    batcher = service.batcher
    if batcher is None:
        if _scoring_cost(request) <= INLINE_SCORING_BUDGET:
            return _score_one(service, loaded, request, trusted_reason)
        return await run_in_threadpool(_score_one, service, loaded, request, trusted_reason)
    return _response(service, loaded, request, await batcher.submit(loaded, request), trusted_reason)


async def score_integration_comment(
    service: Service,
    loaded: LoadedModel,
    store: Store | None,
    request: ScoreRequest,
    source: str,
    *,
    keep: bool = True,
    trusted_reason: str | None = None,
    finder: ArticleFinder | None = None,
    via_coral: bool = False,
) -> ScoreResponse:
    """One comment from Coral, Perspective or Akismet, taken as /v1/score takes one: the article looked
    up in the store when it is named but not sent (on the threadpool; with a `finder`, fetched in the
    background when unknown, and the reasons say which), the comment scored with the comments waiting
    at the same time, and its decision audited before the answer (unless `keep` is false: a test call).
    """
    article_reason = None
    if needs_article_lookup(request):
        request, article_reason = await run_in_threadpool(
            resolve_article_context, store, request, finder, via_coral
        )
    response = await score_comment(service, loaded, request, trusted_reason)
    if article_reason is not None:
        response.reasons.append(article_reason)
    if keep:
        await audit_from_loop(service, store, [audit_entry(request, response, source)])
    return response


# Measured with 1000 sequential requests against uvicorn (tiny model, 2 cores): an `async def` that
# scores inline answered a short comment in ~2.8-3.5 ms p50 against ~3.4-4.1 ms for a plain `def`
# (the threadpool hop), with equal throughput under 8 concurrent clients. But inline scoring blocks
# the event loop, and cost grows with length (~4 ms per 1000 comment characters, explanations
# included, ~1 ms per 1000 characters of a new article): so requests estimated under ~4 ms are
# scored inline and longer ones go to the threadpool, where they cannot stall /healthz.
INLINE_SCORING_BUDGET = 1000
# A batch of short comments is cheaper per comment (~0.6-0.8 ms each in a batch of 16, explanations
# included): one whose estimated cost is within this is scored on the event loop, where 16 short
# comments fit (measured on the champion: 16 comments of 180-250 characters in 11-15 ms); a costlier
# one goes to the batcher's scoring thread. Long comments gain little from batching (4 comments of
# 1000 characters took ~28 ms, 7 ms each, as alone), so the worst stall of the loop is ~30 ms.
INLINE_BATCH_BUDGET = 4 * INLINE_SCORING_BUDGET


def _batch_cost(request: ScoreRequest) -> int:
    """A comment's share of a batch's inline budget. One that alone would go to the threadpool takes
    more than the whole budget, so its batch is scored on the scoring thread: batching must not move
    a long comment (a 4000-character one takes ~20 ms) onto the event loop."""
    cost = _scoring_cost(request)
    return cost if cost <= INLINE_SCORING_BUDGET else INLINE_BATCH_BUDGET + 1


def _scoring_cost(request: ScoreRequest) -> int:
    """Rough scoring cost in comment-character units (article text is ~4x cheaper per character)."""
    article = request.article
    article_chars = len(article.title or "") + len(article.text or "") if article else 0
    return len(request.comment.text) + article_chars // 4
