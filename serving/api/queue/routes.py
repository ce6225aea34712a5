"""The moderators' queue: the /queue page and its login, and the JSON endpoints the page drives."""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.deps import ModelDep, Service, ServiceDep, StoreDep, store_failed
from serving.api.errors import ApiError
from serving.api.queue.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    ActingModeratorDep,
    ModeratorDep,
    QueueAuth,
    QueueAuthDep,
    new_login_token,
    tokens_match,
)
from serving.api.routes.model_info import ShadowInfo, shadow_info
from serving.api.routes.score import audit_entry, resolve_article, score_fields
from serving.api.schemas import (
    ArticleIn,
    CommentIn,
    ErrorResponse,
    ExternalId,
    ModelRef,
    ReasonOut,
    ScoreRequest,
    ScoreResponse,
    error_responses,
)
from serving.model.decisions import ACTIONS, Thresholds
from serving.model.moderation import CommentInput, Scored
from serving.runtime.holder import LoadedModel
from serving.schema import ABUSIVE, DEFAULT_LABELS, OFF_TOPIC, ON_TOPIC, SPAM
from serving.services.queue_import import (
    CSV_TYPES,
    JSONL_TYPES,
    ImportFileError,
    RawRow,
    read_file,
    read_json_records,
    validate_rows,
)
from serving.store.queue import (
    AlreadyDecided,
    AlreadyUndone,
    DecisionNotFound,
    audit_row,
    audited_sites,
    latest_audit,
    record_decision,
    undo_decision,
)
from serving.store.store import Article, AuditRecord, Store, StoreError

logger = logging.getLogger("raqib.queue")

QUEUE_PATH = "/queue"
LOGIN_PATH = "/queue/login"
LOGOUT_PATH = "/queue/logout"
ITEMS_PATH = "/v1/queue/items"
DECISIONS_PATH = "/v1/queue/decisions"
UNDO_PATH = "/v1/queue/undo"
IMPORT_PATH = "/v1/queue/import"
STATIC_PREFIX = "/static"

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"
STRINGS_FILE = STATIC_DIR / "queue-strings.json"

LANG_COOKIE = "raqib_lang"
LANGUAGES = ("ar", "en")
DEFAULT_LANGUAGE = "ar"
LOGIN_FORM_SECONDS = 3600
FAILED_LOGIN_DELAY = 0.25
LANG_COOKIE_SECONDS = 365 * 24 * 3600

Decision = Literal["approve", "spam", "off_topic", "abusive"]
# What each button records: approving a comment says it is fine where it is, i.e. on_topic.
DECISION_LABELS: dict[str, str] = {
    "approve": ON_TOPIC,
    "spam": SPAM,
    "off_topic": OFF_TOPIC,
    "abusive": ABUSIVE,
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


# --- security headers ------------------------------------------------------------------------------


def _app_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class QueueSecurityHeadersMiddleware:
    """Security headers on the queue's pages, JSON and static assets; no caching of comment text."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _app_path(scope)
        is_static = path.startswith(STATIC_PREFIX + "/")
        if not (is_static or path == QUEUE_PATH or path.startswith((QUEUE_PATH + "/", "/v1/queue/"))):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not is_static:
                    # Pages and JSON carry comment text and CSRF tokens: never kept in any cache.
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- page rendering --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def ui_strings() -> dict[str, dict[str, str]]:
    """The interface strings per language (one file, shared by the server and queue.js)."""
    strings: dict[str, dict[str, str]] = json.loads(STRINGS_FILE.read_text(encoding="utf-8"))
    return strings


@lru_cache(maxsize=1)
def _strings_json() -> str:
    # Inside a <script type="application/json"> block: no "<", ">" or "&" may end it early.
    text = json.dumps(ui_strings(), ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=1)
def asset_version() -> str:
    """A hash of the page's assets, appended to their URLs so a new release is never served stale."""
    digest = hashlib.sha256()
    for name in ("queue.js", "queue.css", "queue-strings.json"):
        digest.update((STATIC_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=4)
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def choose_language(request: Request, asked: str | None = None) -> str:
    """`?lang=`, else the language cookie, else the browser's first ar/en preference, else Arabic."""
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    for part in request.headers.get("accept-language", "").split(","):
        primary = part.split(";")[0].strip().lower()[:2]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def render_page(request: Request, template: str, lang: str, **values: str) -> str:
    """Fill a page template: every value HTML-escaped, strings in `lang` as $t_<key>."""
    strings = ui_strings()[lang]
    fields = {f"t_{key}": html.escape(text) for key, text in strings.items()}
    fields.update({key: html.escape(value) for key, value in values.items()})
    fields.update(
        lang=lang,
        dir="rtl" if lang == "ar" else "ltr",
        other_lang="en" if lang == "ar" else "ar",
        root=html.escape(_root(request)),
        asset_version=asset_version(),
        strings_json=_strings_json(),
    )
    return _template(template).substitute(fields)


def _remember_language(response: Response, request: Request, asked: str | None) -> None:
    if asked in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            asked,
            max_age=LANG_COOKIE_SECONDS,
            path="/",
            samesite="strict",
            secure=_is_https(request),
        )


def _login_response(
    request: Request, auth: QueueAuth, lang: str, status: int = 200, message: str = "", name: str = ""
) -> HTMLResponse:
    """The login page with a fresh double-submit token (cookie and hidden field)."""
    token = new_login_token()
    if not auth.enabled:
        message, status = "queue_disabled", 403
    body = render_page(
        request,
        "queue_login.html",
        lang,
        login_token=token,
        name=name,
        message_key=message,
        message=ui_strings()[lang].get(message, ""),
        message_hidden="" if message else "hidden",
        form_hidden="hidden" if not auth.enabled else "",
    )
    response = HTMLResponse(body, status_code=status)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_FORM_SECONDS,
        path=_root(request) + LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
    )
    return response


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(_root(request) + path, status_code=303)


LangQuery = Annotated[str | None, Query(description="ar or en; remembered in a cookie.")]

page_router = APIRouter(include_in_schema=False)


@page_router.get(LOGIN_PATH, response_class=HTMLResponse)
async def login_page(request: Request, auth: QueueAuthDep, lang: LangQuery = None) -> Response:
    """The login form (or straight to the queue when already logged in)."""
    if auth.enabled and auth.session_moderator(request) is not None:
        return _redirect(request, QUEUE_PATH)
    response = _login_response(request, auth, choose_language(request, lang))
    _remember_language(response, request, lang)
    return response


async def _form_fields(request: Request, *names: str) -> dict[str, str]:
    try:
        form = await request.form(max_files=0, max_fields=10)
    except (StarletteHTTPException, ValueError, KeyError):
        # A malformed form counts as an empty one: its token check then refuses it.
        return {}
    # Only plain fields count; a file smuggled in under a field name is ignored.
    return {name: value for name in names if isinstance(value := form.get(name), str)}


@page_router.post(LOGIN_PATH, response_class=HTMLResponse)
async def login(request: Request, auth: QueueAuthDep) -> Response:
    """Check name and key; on success set the signed session cookie and go to the queue."""
    fields = await _form_fields(request, "name", "key", "csrf")
    lang = choose_language(request)
    name = fields.get("name", "").strip()
    if not auth.enabled:
        return _login_response(request, auth, lang)
    if not tokens_match(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return _login_response(request, auth, lang, 403, "login_expired", name)
    if not auth.check_login(name, fields.get("key", "")):
        logger.info("queue login refused")
        # A pause per failure slows guessing; keys should be long random strings all the same.
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        return _login_response(request, auth, lang, 401, "login_failed", name)
    logger.info("moderator %s logged in to the queue", name)
    response = _redirect(request, QUEUE_PATH)
    response.set_cookie(
        SESSION_COOKIE,
        auth.issue(name),
        max_age=auth.max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=_root(request) + LOGIN_PATH)
    return response


@page_router.post(LOGOUT_PATH)
async def logout(request: Request, auth: QueueAuthDep) -> Response:
    """End the session in this browser (the form carries the page's CSRF token)."""
    fields = await _form_fields(request, "csrf")
    moderator = auth.session_moderator(request)
    if moderator is not None and not tokens_match(fields.get("csrf"), moderator.csrf):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token; reload the queue page")
    response = _redirect(request, LOGIN_PATH)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_is_https(request)
    )
    return response


@page_router.get(QUEUE_PATH, response_class=HTMLResponse)
async def queue_page(request: Request, auth: QueueAuthDep, lang: LangQuery = None) -> Response:
    """The queue page; without a session, a 303 to the login form."""
    moderator = auth.session_moderator(request) if auth.enabled else None
    if moderator is None or moderator.csrf is None:
        return _redirect(request, LOGIN_PATH)
    language = choose_language(request, lang)
    body = render_page(request, "queue.html", language, csrf=moderator.csrf, moderator=moderator.name)
    response = HTMLResponse(body)
    _remember_language(response, request, lang)
    return response


# --- JSON endpoints --------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No session cookie and no moderator key."},
    403: {"model": ErrorResponse, "description": "queue_disabled, or csrf_failed (cookie sessions)."},
    503: {"model": ErrorResponse, "description": "The store is unavailable."},
    **error_responses(422),
}
# What a JSON body can get wrong before the handler sees it.
_BODY_ERRORS = error_responses(400, 413, 415)

router = APIRouter(tags=["queue"], responses=_ERRORS)

Action = Literal["approve", "review", "reject"]
# SQLite's (and PostgreSQL's bigint) largest integer: a bigger id cannot even be bound as a parameter.
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class QueueArticle(BaseModel):
    """The article a queued comment sits under, as far as it is known."""

    id: str | None
    title: str | None
    url: str | None


class SpanOut(BaseModel):
    """A flagged stretch of the comment: text[begin:end] in code points."""

    begin: int
    end: int
    score: float


class QueueItem(BaseModel):
    """One comment waiting for a moderator, from its latest audit row."""

    audit_id: int
    comment_id: str
    site: str | None
    text: str
    article: QueueArticle | None
    label: str = Field(description="The model's most probable label.")
    decided_label: str | None = Field(description="The label that drove review/reject.")
    action: Action = Field(description="The policy's decided action (also in observe mode).")
    cms_action: Action = Field(description="What the CMS was told (approve in observe mode).")
    scores: dict[str, float]
    risk: float
    reasons: list[ReasonOut]
    spans: list[SpanOut]
    model: ModelRef = Field(description="The model that scored the comment (its audit row).")
    explained_by: ModelRef | None = Field(description="The model whose spans and reasons are shown.")
    source: str
    created_at: datetime


class QueueItemsResponse(BaseModel):
    """A page of the queue, with what the filters can offer."""

    items: list[QueueItem]
    has_more: bool
    moderator: str
    labels: list[str]
    sites: list[str | None]
    decisions: dict[str, str] = Field(description="Decision → the label it records.")


class DecisionRequest(BaseModel):
    """A moderator's decision on one queued comment: its audit row, or its comment id and site."""

    model_config = ConfigDict(extra="forbid")

    audit_id: RowId | None = None
    comment_id: ExternalId | None = None
    site: str | None = None
    decision: Decision

    @model_validator(mode="after")
    def _names_a_comment(self) -> DecisionRequest:
        if self.audit_id is None and not self.comment_id:
            raise ValueError("send audit_id, or comment_id (and site)")
        return self


class DecisionResponse(BaseModel):
    """A recorded decision: the feedback row is on disk."""

    decision_id: int
    feedback_id: int
    audit_id: int
    comment_id: str
    site: str | None
    decision: Decision
    label: str
    moderator: str
    model: ModelRef
    created_at: datetime


class UndoRequest(BaseModel):
    """The decision to take back."""

    model_config = ConfigDict(extra="forbid")

    decision_id: RowId


class UndoResponse(BaseModel):
    """An undone decision; `pending` says whether the comment is back in the queue."""

    decision_id: int
    comment_id: str
    site: str | None
    pending: bool


class ImportResponse(BaseModel):
    """Imported records: scored, audited with source "import", and pending unless already decided."""

    imported: int
    comment_ids: list[str]
    model: ModelRef


SiteFilter = Annotated[
    str | None, Query(description="Only this site; an empty value means comments without a site.")
]
ActionFilter = Annotated[Action | None, Query(description="The decided action.")]
LabelFilter = Annotated[str | None, Query(description="The decided label, else the top label.")]
ScoreBound = Annotated[float | None, Query(ge=0.0, le=1.0, description="Bound on risk.")]
OrderQuery = Annotated[
    Literal["risk", "time"], Query(description="risk: riskiest first; time: newest first.")
]
LimitQuery = Annotated[int, Query(ge=1, le=200)]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_ROW_ID)]


def _thresholds_for(loaded: LoadedModel, sites: list[str | None]) -> list[Thresholds] | None:
    rules = [loaded.rules_for(site) for site in sites]
    if all(rule is None for rule in rules):
        return None
    return [rule.thresholds if rule else loaded.model.thresholds for rule in rules]


def _articles_of(store: Store, records: list[AuditRecord]) -> dict[tuple[str | None, str], Article | None]:
    articles: dict[tuple[str | None, str], Article | None] = {}
    for record in records:
        if record.article_id and (record.site, record.article_id) not in articles:
            articles[(record.site, record.article_id)] = store.get_article(record.article_id, record.site)
    return articles


def _explain(
    loaded: LoadedModel | None, records: list[AuditRecord], articles: list[Article | None]
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


def _as_action(value: str) -> Action:
    # Audit rows hold one of ACTIONS; anything else (a hand-edited row) is shown as needing review.
    return cast(Action, value) if value in ACTIONS else "review"


def _queue_item(
    record: AuditRecord, article: Article | None, scored: Scored | None, loaded: LoadedModel | None
) -> QueueItem:
    assert record.comment_id is not None
    known_article = None
    if record.article_id:
        known_article = QueueArticle(
            id=record.article_id,
            title=article.title if article else None,
            url=article.url if article else None,
        )
    reasons = (
        [ReasonOut(kind=r.kind, detail=r.detail, weight=r.weight) for r in scored.reasons] if scored else []
    )
    spans = [SpanOut(begin=s.begin, end=s.end, score=s.score) for s in scored.spans] if scored else []
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
        reasons=reasons,
        spans=spans,
        model=ModelRef(name=record.model_name, version=record.model_version),
        explained_by=ModelRef(name=loaded.name, version=loaded.version) if scored and loaded else None,
        source=record.source,
        created_at=record.created_at,
    )


class QueueShadowResponse(BaseModel):
    """The champion serving now and, when configured, its shadow's agreement with it."""

    champion: ModelRef | None
    shadow: ShadowInfo | None


@router.get(
    "/v1/queue/shadow",
    response_model=QueueShadowResponse,
    summary="Shadow mode: how often the challenger agrees with the champion, and where it does not",
)
def queue_shadow(moderator: ModeratorDep, service: ServiceDep, store: StoreDep) -> QueueShadowResponse:
    """The same shadow summary as /v1/model, for the queue page (shadow null when not configured)."""
    loaded = service.models.current
    if loaded is None:
        return QueueShadowResponse(champion=None, shadow=None)
    return QueueShadowResponse(
        champion=ModelRef(name=loaded.name, version=loaded.version),
        shadow=shadow_info(service, loaded, store),
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
    loaded = service.models.current
    try:
        records = store.pending(
            site=site,
            action=action,
            label=label or None,
            min_score=min_score,
            max_score=max_score,
            order=order,
            limit=limit + 1,
            offset=offset,
        )
        has_more = len(records) > limit
        records = records[:limit]
        stored = _articles_of(store, records)
        sites = audited_sites(store)
    except StoreError as exc:
        raise store_failed(exc) from None
    articles = [stored.get((r.site, r.article_id)) if r.article_id else None for r in records]
    explained = _explain(loaded, records, articles)
    labels = list(loaded.model.labels) if loaded is not None else list(DEFAULT_LABELS)
    return QueueItemsResponse(
        items=[
            _queue_item(record, article, scored, loaded)
            for record, article, scored in zip(records, articles, explained, strict=True)
        ],
        has_more=has_more,
        moderator=moderator.name,
        labels=labels,
        sites=sites,
        decisions=DECISION_LABELS,
    )


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
        if body.audit_id is not None:
            audit = audit_row(store, body.audit_id)
        else:
            assert body.comment_id is not None
            audit = latest_audit(store, body.comment_id, body.site)
        if audit is None or audit.comment_id is None:
            raise ApiError(404, "comment_not_found", "no audited comment matches", field="audit_id")
        article = store.get_article(audit.article_id, audit.site) if audit.article_id else None
        label = DECISION_LABELS[body.decision]
        record = record_decision(store, audit, body.decision, label, moderator.name, article)
    except AlreadyDecided as exc:
        by = f" by {exc.moderator}" if exc.moderator else ""
        raise ApiError(
            409, "already_decided", f"the comment already has a verdict ({exc.label or 'no label'}{by})"
        ) from None
    except StoreError as exc:
        raise store_failed(exc) from None
    logger.info(
        "moderator %s decided %s on comment %s (site %s)",
        moderator.name,
        body.decision,
        record.comment_id,
        record.site,
    )
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
        result = undo_decision(store, body.decision_id, moderator.name)
    except DecisionNotFound:
        raise ApiError(404, "decision_not_found", "no such decision of yours", field="decision_id") from None
    except AlreadyUndone:
        raise ApiError(
            409, "already_undone", "this decision was already undone", field="decision_id"
        ) from None
    except StoreError as exc:
        raise store_failed(exc) from None
    logger.info("moderator %s undid decision %d", moderator.name, body.decision_id)
    return UndoResponse(
        decision_id=result.decision.id,
        comment_id=result.decision.comment_id,
        site=result.decision.site,
        pending=result.pending,
    )


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


def _import(service: Service, loaded: LoadedModel, store: Store, rows: list[RawRow]) -> ImportResponse:
    settings = service.settings
    if not rows:
        raise ApiError(422, "empty_import", "the import has no records")
    if len(rows) > settings.max_batch_items:
        raise ApiError(
            413,
            "too_many_items",
            f"the import has {len(rows)} records; the limit is {settings.max_batch_items} (split it)",
        )
    records, errors = validate_rows(rows, settings.max_text_chars)
    if errors:
        first = errors[0]
        raise ApiError(
            422,
            first.code,
            first.message,
            field=first.field,
            extra={"line": first.line, "errors": [error.as_dict() for error in errors]},
        )
    requests = []
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
                source="import",
            )
        article = (
            ArticleIn(id=article_id, title=record.article_title, text=record.article_text)
            if article_id
            else None
        )
        request = ScoreRequest(
            comment=CommentIn(id=record.resolved_comment_id(), text=record.text, author=record.author),
            article=article,
            site=record.site,
        )
        requests.append(request)
    try:
        if articles:
            # Kept so the queue can show each comment's article title; one transaction for all of them.
            with store.write() as writer:
                for article_record in articles.values():
                    writer.put_article(article_record, merge=True)
        requests = [resolve_article(store, request) for request in requests]
        # One vectorised model call for every record.
        responses = [ScoreResponse(**fields) for fields in score_fields(service, loaded, requests)]
        store.record_audit([audit_entry(r, s, "import") for r, s in zip(requests, responses, strict=True)])
    except StoreError as exc:
        raise store_failed(exc) from None
    return ImportResponse(
        imported=len(requests),
        comment_ids=[request.comment.id or "" for request in requests],
        model=ModelRef(name=loaded.name, version=loaded.version),
    )


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
    result = await run_in_threadpool(_import, service, loaded, store, rows)
    logger.info("moderator %s imported %d comments into the queue", moderator.name, result.imported)
    return result
