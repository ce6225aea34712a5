"""POST /v1/score and /v1/score/batch: the model's verdict on comments, under each site's policy."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError

from serving.api.deps import (
    CallerDep,
    ModelDep,
    OptionalStoreDep,
    ScoringDep,
    ServiceDep,
    enforce_rate_limit,
    require_api_key,
)
from serving.services.errors import ApiError, describe_validation_error
from serving.services.schemas import (
    BatchItemError,
    BatchItemOk,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    ScoreRequest,
    ScoreResponse,
    error_responses,
)
from serving.services.scoring import (
    audit_entry,
    audit_from_loop,
    audit_quietly,
    needs_article_lookup,
    resolve_article,
    resolve_article_context,
    score_comment,
    score_fields,
    shadow_after,
    text_too_long,
)

SCORE_PATH = "/v1/score"
BATCH_PATH = "/v1/score/batch"

_ERRORS = error_responses(
    400,
    401,
    415,
    422,
    429,
    described={
        413: "Body over the size limit (body_too_large), or too many batch items (too_many_items).",
        503: "No model loaded (model_not_loaded).",
    },
)

# The API key is checked by each route's own dependencies: /v1/score takes it with the model and the
# store in one (ScoringDep), the batch by require_api_key.
router = APIRouter(tags=["scoring"], responses=_ERRORS)
# ScoreResponse as JSON bytes, straight from pydantic's serializer (see `score`).
_SCORE_JSON = TypeAdapter(ScoreResponse)


@router.post(SCORE_PATH, response_model=ScoreResponse, summary="Score one comment against its article")
async def score(request: ScoreRequest, context: ScoringDep) -> Response:
    """Label, scores, action, reasons and spans for one comment."""
    service, loaded, store = context.service, context.loaded, context.store
    enforce_rate_limit(context.request, service, context.caller, request.site)
    error = text_too_long(request, service.settings.max_text_chars)
    if error is not None:
        raise error
    article_reason = None
    if needs_article_lookup(request):
        # An article named but not sent: the store's copy, else (for sites that allow it) its page is
        # fetched in the background for the next comments; the reasons say which case this was.
        finder = service.remote.finder if service.remote is not None else None
        request, article_reason = await run_in_threadpool(resolve_article_context, store, request, finder)
    response = await score_comment(service, loaded, request)
    if article_reason is not None:
        response.reasons.append(article_reason)
    # Committed before answering: the decision is in the audit log when the CMS acts on it.
    await audit_from_loop(service, store, [audit_entry(request, response, "score")])
    background = BackgroundTasks()
    shadow_after(background, service, store, [request], [response], "score")
    # The response was validated once, when _score_one built it: returned as a model, FastAPI would
    # validate it again against response_model (kept for the OpenAPI document) before dumping it.
    return Response(
        _SCORE_JSON.dump_json(response),
        media_type="application/json",
        background=background if background.tasks else None,
    )


@router.post(
    BATCH_PATH,
    response_model=BatchResponse,
    summary="Score many comments in one call",
    dependencies=[Depends(require_api_key)],
)
def score_batch(
    body: BatchRequest,
    http_request: Request,
    service: ServiceDep,
    caller: CallerDep,
    loaded: ModelDep,
    store: OptionalStoreDep,
    background: BackgroundTasks,
) -> BatchResponse:
    """One result per item; an invalid item gets an item-level error instead of failing the batch."""
    # Items may name different sites: a batch counts as one request against the key's default limit.
    enforce_rate_limit(http_request, service, caller)
    limit = service.settings.max_batch_items
    if len(body.items) > limit:
        raise ApiError(
            413,
            "too_many_items",
            f"batch has {len(body.items)} items; the limit is {limit} (split it)",
            field="items",
        )
    results: list[BatchItemOk | BatchItemError | None] = [None] * len(body.items)
    accepted: list[tuple[int, ScoreRequest]] = []
    for index, raw in enumerate(body.items):
        try:
            request = ScoreRequest.model_validate(raw)
        except ValidationError as exc:
            code, message, field = describe_validation_error(exc.errors()[0], strip_body=False)
            results[index] = BatchItemError(
                index=index, error=ErrorBody(code=code, message=message, field=field)
            )
            continue
        error = text_too_long(request, service.settings.max_text_chars)
        if error is not None:
            results[index] = BatchItemError(
                index=index, error=ErrorBody(code=error.code, message=error.message, field=error.field)
            )
            continue
        accepted.append((index, resolve_article(store, request)))
    requests = [request for _, request in accepted]
    # One vectorised model call for the whole batch: per-item calls would cost ~10x more.
    scored = [
        BatchItemOk(index=index, **fields)
        for (index, _), fields in zip(accepted, score_fields(service, loaded, requests), strict=True)
    ]
    for item in scored:
        results[item.index] = item
    audit_quietly(
        service, store, [audit_entry(r, item, "batch") for r, item in zip(requests, scored, strict=True)]
    )
    shadow_after(background, service, store, requests, scored, "batch")
    return BatchResponse(results=[result for result in results if result is not None])
