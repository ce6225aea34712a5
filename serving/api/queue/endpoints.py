"""The queue's JSON endpoints: pending items, decisions, undo, import, shadow agreement.

Each route checks the moderator, parses the request, calls `serving.services.queue` and turns its
results and exceptions into the API's responses and error shape.
"""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.deps import ModelDep, ServiceDep, StoreDep, store_failed
from serving.api.queue.auth import ActingModeratorDep, ModeratorDep
from serving.api.queue.paths import DECISIONS_PATH, IMPORT_PATH, ITEMS_PATH, SHADOW_PATH, UNDO_PATH
from serving.api.queue.schemas import (
    Action,
    ActionFilter,
    DecisionRequest,
    DecisionResponse,
    ImportResponse,
    LabelFilter,
    LimitQuery,
    OffsetQuery,
    OrderQuery,
    QueueArticle,
    QueueItem,
    QueueItemsResponse,
    QueueShadowResponse,
    ScoreBound,
    SiteFilter,
    UndoRequest,
    UndoResponse,
)
from serving.model.decisions import ACTIONS
from serving.runtime.loaded import LoadedModel
from serving.services.errors import ApiError
from serving.services.queue import (
    DECISION_LABELS,
    CommentNotFound,
    ImportRefused,
    ImportTooLarge,
    PendingComment,
    PendingFilters,
    decide,
    import_comments,
    list_pending,
    undo,
)
from serving.services.queue_import import (
    CSV_TYPES,
    JSONL_TYPES,
    ImportFileError,
    RawRow,
    read_file,
    read_json_records,
)
from serving.services.schemas import (
    ErrorResponse,
    ModelRef,
    ReasonOut,
    SpanOut,
    error_responses,
)
from serving.services.shadow import shadow_info
from serving.store.errors import StoreError
from serving.store.queue import AlreadyDecided, AlreadyUndone, DecisionNotFound

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No session cookie and no moderator key."},
    403: {"model": ErrorResponse, "description": "queue_disabled, or csrf_failed (cookie sessions)."},
    503: {"model": ErrorResponse, "description": "The store is unavailable."},
    **error_responses(422),
}
# What a JSON body can get wrong before the handler sees it.
_BODY_ERRORS = error_responses(400, 413, 415)

router = APIRouter(tags=["queue"], responses=_ERRORS)


def _model_ref(loaded: LoadedModel) -> ModelRef:
    return ModelRef(name=loaded.name, version=loaded.version)


@router.get(
    SHADOW_PATH,
    response_model=QueueShadowResponse,
    summary="Shadow mode: how often the challenger agrees with the champion, and where it does not",
)
def queue_shadow(moderator: ModeratorDep, service: ServiceDep, store: StoreDep) -> QueueShadowResponse:
    """The same shadow summary as /v1/model, for the queue page (shadow null when not configured)."""
    loaded = service.models.current
    if loaded is None:
        return QueueShadowResponse(champion=None, shadow=None)
    return QueueShadowResponse(champion=_model_ref(loaded), shadow=shadow_info(service, loaded, store))


# --- items -----------------------------------------------------------------------------------------


def _as_action(value: str) -> Action:
    # Audit rows hold one of ACTIONS; anything else (a hand-edited row) is shown as needing review.
    return cast(Action, value) if value in ACTIONS else "review"


def _queue_item(pending: PendingComment, loaded: LoadedModel | None) -> QueueItem:
    record, article, explanation = pending.record, pending.article, pending.explanation
    assert record.comment_id is not None  # the store's queue lists comments that have an id
    known_article = None
    if record.article_id:
        known_article = QueueArticle(
            id=record.article_id,
            title=article.title if article else None,
            url=article.url if article else None,
        )
    reasons = explanation.reasons if explanation else []
    spans = explanation.spans if explanation else []
    return QueueItem(
        audit_id=record.id,
        comment_id=record.comment_id,
        site=record.site,
        text=record.text,
        article=known_article,
        label=record.label,
        decided_label=record.decided_label,
        action=_as_action(record.decided_action),
        cms_action=_as_action(record.action),
        scores=record.scores,
        risk=record.risk,
        reasons=[ReasonOut(kind=r.kind, detail=r.detail, weight=r.weight) for r in reasons],
        spans=[SpanOut(begin=s.begin, end=s.end, score=s.score) for s in spans],
        model=ModelRef(name=record.model_name, version=record.model_version),
        explained_by=_model_ref(loaded) if explanation and loaded else None,
        source=record.source,
        created_at=record.created_at,
    )


@router.get(ITEMS_PATH, response_model=QueueItemsResponse, summary="Comments waiting for a moderator")
def queue_items(
    moderator: ModeratorDep,
    service: ServiceDep,
    store: StoreDep,
    site: SiteFilter = None,
    action: ActionFilter = None,
    label: LabelFilter = None,
    min_score: ScoreBound = None,
    max_score: ScoreBound = None,
    order: OrderQuery = "risk",
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
) -> QueueItemsResponse:
    """The latest audit row of each comment without a verdict, filtered and ordered, with spans."""
    # Taken once: the spans and the `explained_by` they are shown with come from the same model.
    loaded = service.models.current
    filters = PendingFilters(
        site=site, action=action, label=label, min_score=min_score, max_score=max_score, order=order
    )
    try:
        page = list_pending(store, loaded, filters, limit, offset)
    except StoreError as exc:
        raise store_failed(exc) from None
    return QueueItemsResponse(
        items=[_queue_item(pending, loaded) for pending in page.comments],
        has_more=page.has_more,
        moderator=moderator.name,
        labels=page.labels,
        sites=page.sites,
        decisions=DECISION_LABELS,
    )


# --- decisions -------------------------------------------------------------------------------------


@router.post(
    DECISIONS_PATH,
    status_code=201,
    response_model=DecisionResponse,
    summary="Decide a queued comment",
    responses={
        404: {"model": ErrorResponse, "description": "No such comment in the audit log."},
        409: {"model": ErrorResponse, "description": "The comment already has a verdict (already_decided)."},
        **_BODY_ERRORS,
    },
)
def post_decision(body: DecisionRequest, moderator: ActingModeratorDep, store: StoreDep) -> DecisionResponse:
    """Record the decision as one feedback row (with the moderator and the audit row's model version)."""
    try:
        record = decide(
            store,
            moderator.name,
            body.decision,
            audit_id=body.audit_id,
            comment_id=body.comment_id,
            site=body.site,
        )
    except CommentNotFound:
        raise ApiError(404, "comment_not_found", "no audited comment matches", field="audit_id") from None
    except AlreadyDecided as exc:
        by = f" by {exc.moderator}" if exc.moderator else ""
        raise ApiError(
            409, "already_decided", f"the comment already has a verdict ({exc.label or 'no label'}{by})"
        ) from None
    except StoreError as exc:
        raise store_failed(exc) from None
    return DecisionResponse(
        decision_id=record.id,
        feedback_id=record.feedback_id,
        audit_id=record.audit_id,
        comment_id=record.comment_id,
        site=record.site,
        decision=body.decision,
        label=record.label,
        moderator=record.moderator,
        model=ModelRef(name=record.model_name, version=record.model_version),
        created_at=record.created_at,
    )


@router.post(
    UNDO_PATH,
    response_model=UndoResponse,
    summary="Take back one of your decisions",
    responses={
        404: {"model": ErrorResponse, "description": "No such decision of yours."},
        409: {"model": ErrorResponse, "description": "Already undone."},
        **_BODY_ERRORS,
    },
)
def post_undo(body: UndoRequest, moderator: ActingModeratorDep, store: StoreDep) -> UndoResponse:
    """Delete the decision's feedback row (the log keeps it, marked undone): the comment is pending again."""
    try:
        result = undo(store, moderator.name, body.decision_id)
    except DecisionNotFound:
        raise ApiError(404, "decision_not_found", "no such decision of yours", field="decision_id") from None
    except AlreadyUndone:
        raise ApiError(
            409, "already_undone", "this decision was already undone", field="decision_id"
        ) from None
    except StoreError as exc:
        raise store_failed(exc) from None
    return UndoResponse(
        decision_id=result.decision.id,
        comment_id=result.decision.comment_id,
        site=result.decision.site,
        pending=result.pending,
    )


# --- import ----------------------------------------------------------------------------------------


async def _import_rows(request: Request) -> list[RawRow]:
    """The records of the request: a multipart file, a raw CSV/JSONL body or a JSON list."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=10)
            except StarletteHTTPException as exc:
                raise ApiError(400, "invalid_multipart", f"cannot read the upload: {exc.detail}") from None
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(
                    422, "missing_field", "upload the export as the form field 'file'", field="file"
                )
            data = await upload.read()
            return read_file(data, upload.filename, upload.content_type)
        if kind == "application/json":
            try:
                value = json.loads(await request.body())
            except ValueError as exc:
                raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
            return read_json_records(value)
        if kind in CSV_TYPES or kind in JSONL_TYPES:
            return read_file(await request.body(), None, kind)
    except ImportFileError as exc:
        extra = {"line": exc.line} if exc.line is not None else None
        raise ApiError(422, exc.code, exc.message, field=exc.field, extra=extra) from None
    raise ApiError(
        415,
        "unsupported_media_type",
        "send a multipart upload (field 'file'), text/csv, application/x-ndjson or a JSON list of records",
    )


def _refused(exc: ImportRefused) -> ApiError:
    if isinstance(exc, ImportTooLarge):
        return ApiError(413, exc.code, exc.message, field=exc.field)
    extra: dict[str, Any] | None = None
    if exc.errors:
        extra = {"line": exc.line, "errors": [error.as_dict() for error in exc.errors]}
    return ApiError(422, exc.code, exc.message, field=exc.field, extra=extra)


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}},
            },
        },
    }
}


@router.post(
    IMPORT_PATH,
    status_code=201,
    response_model=ImportResponse,
    summary="Import an export into the queue",
    openapi_extra=_IMPORT_BODY,
    responses={
        **error_responses(400),
        413: {"model": ErrorResponse, "description": "More than max_batch_items records (or too large)."},
        415: {"model": ErrorResponse, "description": "Neither a multipart upload, CSV, JSONL nor JSON."},
        422: {
            "model": ErrorResponse,
            "description": "A record is invalid: the message names line and field.",
        },
    },
)
async def import_records(
    request: Request, moderator: ActingModeratorDep, service: ServiceDep, loaded: ModelDep, store: StoreDep
) -> ImportResponse:
    """Score every record in one batch and write it to the audit log (source "import") as pending."""
    rows = await _import_rows(request)
    try:
        result = await run_in_threadpool(import_comments, service, loaded, store, rows, moderator.name)
    except ImportRefused as exc:
        raise _refused(exc) from None
    except StoreError as exc:
        raise store_failed(exc) from None
    return ImportResponse(
        imported=len(result.comment_ids), comment_ids=result.comment_ids, model=_model_ref(loaded)
    )
