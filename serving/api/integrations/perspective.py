"""Perspective-compatible `comments:analyze` and `comments:suggestscore`, for clients such as Coral.

A client whose Perspective endpoint (default https://commentanalyzer.googleapis.com/v1alpha1) is
set to `https://<raqib>/v1alpha1` keeps working, in Arabic too: TOXICITY is Raqib's `abusive`,
SPAM is `spam`, OFF_TOPIC is `off_topic`. Errors use Perspective's shape
`{"error": {"code", "message", "status"}}`, and the key comes as `?key=` (or `X-Goog-Api-Key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.deps import (
    OptionalStoreDep,
    ServiceDep,
    StoreDep,
    enforce_rate_limit,
    key_matches,
    store_failed,
)
from serving.runtime.loaded import LoadedModel
from serving.runtime.ratelimit import caller_id
from serving.schema import ABUSIVE, OFF_TOPIC, ON_TOPIC, SPAM
from serving.services.context import Service
from serving.services.errors import ApiError, dotted_field
from serving.services.schemas import ScoreRequest, ScoreResponse, error_responses
from serving.services.scoring import audit_entry, audit_quietly, score_requests
from serving.store.errors import StoreError
from serving.store.records import FeedbackEntry
from serving.store.store import Store
from serving.text.html import html_to_text
from serving.text.normalize import dominant_script

ANALYZE_PATH = "/v1alpha1/comments:analyze"
SUGGEST_PATH = "/v1alpha1/comments:suggestscore"

# Perspective attribute → Raqib label. Anything else is refused (400), as Perspective refuses
# attributes it does not know, rather than answered with a made-up score.
ATTRIBUTES = {"TOXICITY": ABUSIVE, "SPAM": SPAM, "OFF_TOPIC": OFF_TOPIC}
# The OpenAPI view of an attribute map: one or more of the names above (lower case is accepted too).
ATTRIBUTE_NAMES: dict[str, Any] = {"propertyNames": {"enum": list(ATTRIBUTES)}, "minProperties": 1}
# When a suggestion marks several attributes, abuse wins over spam over off-topic (data/README.md).
SUGGEST_PRECEDENCE = ("TOXICITY", "SPAM", "OFF_TOPIC")
GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


class PerspectiveError(Exception):
    """An error to answer in Perspective's shape."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def perspective_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """`{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}`."""
    grpc = GRPC_STATUS.get(status, "INTERNAL")
    return JSONResponse(
        {"error": {"code": status, "message": message, "status": grpc}},
        status_code=status,
        headers=dict(headers or {}),
    )


def _validation_message(exc: RequestValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "Invalid JSON payload received."
    field = dotted_field(first.get("loc", ()))
    return (
        f"Invalid value at '{field}': {first.get('msg', 'invalid value')}" if field else str(first.get("msg"))
    )


class PerspectiveRoute(APIRoute):
    """A route whose every error, validation included, comes back in Perspective's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so its errors are answered as Perspective answers them."""
        handler = super().get_route_handler()

        async def perspective_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except PerspectiveError as exc:
                return perspective_error(exc.status, exc.message)
            except RequestValidationError as exc:
                return perspective_error(400, _validation_message(exc))
            except ApiError as exc:
                return perspective_error(exc.status, exc.message, exc.headers)
            except StarletteHTTPException as exc:
                return perspective_error(exc.status_code, str(exc.detail), exc.headers)

        return perspective_handler


async def require_perspective_key(
    service: ServiceDep,
    key: Annotated[str | None, Query(description="API key (one of RAQIB_API_KEYS).")] = None,
    header_key: Annotated[str | None, Header(alias="X-Goog-Api-Key", include_in_schema=False)] = None,
) -> str | None:
    """Perspective clients send the key as `?key=`; checked against api_keys (open when none); the caller."""
    if service.open_access:
        return None
    presented = key or header_key
    if not presented:
        raise PerspectiveError(403, "The request is missing a valid API key.")
    if not key_matches(presented, service.api_keys):
        raise PerspectiveError(400, "API key not valid. Please pass a valid API key.")
    return caller_id(presented)


PerspectiveCallerDep = Annotated[str | None, Depends(require_perspective_key)]


class PerspectiveErrorBody(BaseModel):
    """Perspective's error: the HTTP status, a message and the gRPC status name."""

    code: int
    message: str
    status: str


class PerspectiveErrorResponse(BaseModel):
    """Every error of the Perspective routes has this shape."""

    error: PerspectiveErrorBody


router = APIRouter(
    tags=["perspective"],
    route_class=PerspectiveRoute,
    dependencies=[Depends(require_perspective_key)],
    responses=error_responses(
        model=PerspectiveErrorResponse,
        described={
            400: "Invalid request, unsupported attribute or wrong API key (INVALID_ARGUMENT).",
            403: "No API key (PERMISSION_DENIED).",
            413: "Body over max_article_body_bytes (INVALID_ARGUMENT).",
            429: "Over this key's rate limit (RESOURCE_EXHAUSTED); retry after Retry-After seconds.",
            503: "No model loaded, or no store for suggestscore (UNAVAILABLE).",
        },
    ),
)


class _Perspective(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextEntry(_Perspective):
    """A text and its type (PLAIN_TEXT or HTML)."""

    text: str = ""
    type: str | None = None


class Context(_Perspective):
    """Text the comment relates to; for Raqib, the article."""

    entries: list[TextEntry] = Field(default_factory=list)


class RequestedAttribute(_Perspective):
    """Options for one requested attribute."""

    scoreType: str | None = None
    scoreThreshold: float | None = None


class AnalyzeRequest(_Perspective):
    """Perspective's AnalyzeComment request."""

    comment: TextEntry
    context: Context | None = None
    requestedAttributes: dict[str, RequestedAttribute] = Field(json_schema_extra=ATTRIBUTE_NAMES)
    languages: list[str] | None = None
    spanAnnotations: bool = False
    doNotStore: bool = False
    clientToken: str | None = None
    sessionId: str | None = None
    communityId: str | None = None


class Score(BaseModel):
    """A probability."""

    value: float
    type: str = "PROBABILITY"


class SpanScore(BaseModel):
    """A score for text[begin:end] (Unicode code points of the text as scored)."""

    begin: int
    end: int
    score: Score


class AttributeScores(BaseModel):
    """One attribute's scores."""

    summaryScore: Score
    spanScores: list[SpanScore]


class AnalyzeResponse(BaseModel):
    """Perspective's AnalyzeComment response."""

    attributeScores: dict[str, AttributeScores]
    languages: list[str]
    detectedLanguages: list[str]
    clientToken: str | None = None


class SuggestedValue(_Perspective):
    """A suggested score (Coral: 1 for a moderator's rejection, 0 for an approval)."""

    value: float = Field(ge=0.0, le=1.0)


class SuggestedAttribute(_Perspective):
    """One attribute's suggested score."""

    summaryScore: SuggestedValue


class SuggestRequest(_Perspective):
    """Perspective's SuggestCommentScore request: a moderator's verdict."""

    comment: TextEntry
    context: Context | None = None
    attributeScores: dict[str, SuggestedAttribute] = Field(json_schema_extra=ATTRIBUTE_NAMES)
    languages: list[str] | None = None
    communityId: str | None = None
    clientToken: str | None = None


class SuggestResponse(BaseModel):
    """Perspective's SuggestCommentScore response."""

    clientToken: str | None = None


SiteQuery = Annotated[str | None, Query(description="Raqib site key for policy, audit and feedback.")]


def _plain_text(entry: TextEntry) -> str:
    return html_to_text(entry.text) if (entry.type or "").upper() == "HTML" else entry.text


def _article_text(context: Context | None) -> str | None:
    if context is None:
        return None
    text = "\n".join(t for t in (_plain_text(e).strip() for e in context.entries) if t)
    return text or None


def comment_id_for(text: str) -> str:
    """Perspective has no comment id: the text's digest joins a comment's analyze and suggestscore."""
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _checked_text(service: Service, entry: TextEntry) -> str:
    text = _plain_text(entry)
    if not text.strip():
        raise PerspectiveError(400, "Comment must be non-empty.")
    if len(text) > service.settings.max_text_chars:
        raise PerspectiveError(
            400,
            f"Comment text too long: {len(text)} characters; the limit is {service.settings.max_text_chars}.",
        )
    return text


def _unsupported(names: list[str], loaded: LoadedModel | None) -> list[str]:
    labels = loaded.model.labels if loaded is not None else tuple(ATTRIBUTES.values())
    return [name for name in names if name not in ATTRIBUTES or ATTRIBUTES[name] not in labels]


def _require_supported(names: list[str], loaded: LoadedModel | None) -> None:
    if not names:
        raise PerspectiveError(400, "No attributes requested; Raqib supports TOXICITY, SPAM and OFF_TOPIC.")
    unsupported = _unsupported(names, loaded)
    if unsupported:
        raise PerspectiveError(
            400,
            f"Attribute {unsupported[0]} is not supported by this server (Raqib); "
            f"supported: {', '.join(ATTRIBUTES)}.",
        )


def _languages(text: str) -> list[str]:
    # Only Arabic can be told from the script; Latin letters may be English, French or Arabizi.
    return ["ar"] if dominant_script(text) == "arabic" else []


def _explained_label(response: ScoreResponse) -> str | None:
    return response.decision.label or (response.label if response.label != ON_TOPIC else None)


def _span_scores(
    label: str, value: float, text: str, response: ScoreResponse, annotate: bool
) -> list[SpanScore]:
    if annotate and response.spans and _explained_label(response) == label:
        return [SpanScore(begin=s.begin, end=s.end, score=Score(value=s.score)) for s in response.spans]
    # Without span annotations Perspective scores the whole text as one span.
    return [SpanScore(begin=0, end=len(text), score=Score(value=value))]


def _analyze(
    service: Service, loaded: LoadedModel, store: Store | None, request: ScoreRequest, keep: bool
) -> ScoreResponse:
    response = score_requests(service, loaded, [request])[0]
    if keep:
        audit_quietly(service, store, [audit_entry(request, response, "perspective")])
    return response


@router.post(
    ANALYZE_PATH,
    response_model=AnalyzeResponse,
    response_model_exclude_none=True,
    summary="Perspective-compatible AnalyzeComment",
)
async def analyze(
    body: AnalyzeRequest,
    http_request: Request,
    service: ServiceDep,
    caller: PerspectiveCallerDep,
    store: OptionalStoreDep,
    site: SiteQuery = None,
) -> AnalyzeResponse:
    """TOXICITY (abusive), SPAM and OFF_TOPIC probabilities; `doNotStore` keeps the comment unstored."""
    enforce_rate_limit(http_request, service, caller, site)
    loaded = service.models.current
    names = [name.upper() for name in body.requestedAttributes]
    _require_supported(names, loaded)
    text = _checked_text(service, body.comment)
    if loaded is None:
        raise PerspectiveError(503, service.models.load_error or "model is not loaded yet")
    try:
        request = ScoreRequest.model_validate(
            {
                "comment": {"id": comment_id_for(text), "text": text},
                "article": {"text": _article_text(body.context)},
                "site": site,
            }
        )
    except ValidationError as exc:
        raise PerspectiveError(400, f"Invalid comment: {exc.errors()[0]['msg']}") from None
    response = await run_in_threadpool(_analyze, service, loaded, store, request, not body.doNotStore)
    thresholds = {name.upper(): options.scoreThreshold for name, options in body.requestedAttributes.items()}
    scores: dict[str, AttributeScores] = {}
    for name in names:
        label = ATTRIBUTES[name]
        value = float(response.scores.get(label, 0.0))
        threshold = thresholds.get(name)
        if threshold is not None and value < threshold:
            continue  # Perspective leaves out attributes under the requested threshold
        scores[name] = AttributeScores(
            summaryScore=Score(value=value),
            spanScores=_span_scores(label, value, text, response, body.spanAnnotations),
        )
    detected = _languages(text)
    return AnalyzeResponse(
        attributeScores=scores,
        languages=body.languages or detected,
        detectedLanguages=detected,
        clientToken=body.clientToken,
    )


def suggested_label(attributes: dict[str, float]) -> str:
    """A moderator's verdict from suggested scores: a marked attribute's label, else on_topic."""
    for name in SUGGEST_PRECEDENCE:
        if attributes.get(name, 0.0) >= 0.5:
            return ATTRIBUTES[name]
    return ON_TOPIC


@router.post(
    SUGGEST_PATH,
    response_model=SuggestResponse,
    response_model_exclude_none=True,
    summary="Perspective-compatible SuggestCommentScore (moderator feedback)",
)
def suggest_score(
    body: SuggestRequest,
    request: Request,
    service: ServiceDep,
    caller: PerspectiveCallerDep,
    store: StoreDep,
    site: SiteQuery = None,
) -> SuggestResponse:
    """A moderator's verdict: TOXICITY 1 → abusive, SPAM 1 → spam, OFF_TOPIC 1 → off_topic, else on_topic."""
    enforce_rate_limit(request, service, caller, site)
    names = {name.upper(): attribute.summaryScore.value for name, attribute in body.attributeScores.items()}
    _require_supported(list(names), None)
    text = _checked_text(service, body.comment)
    context = _article_text(body.context)
    entry = FeedbackEntry(
        comment_id=comment_id_for(text),
        site=site,
        label=suggested_label(names),
        source="perspective",
        text=text,
        article_text=context,
    )
    try:
        store.record_feedback(entry)
    except StoreError as exc:
        raise store_failed(exc) from None
    return SuggestResponse(clientToken=body.clientToken)
