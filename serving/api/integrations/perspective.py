"""Perspective-compatible `comments:analyze` and `comments:suggestscore`, for clients such as Coral.

A client whose Perspective endpoint (default https://commentanalyzer.googleapis.com/v1alpha1) is
set to `https://<raqib>/v1alpha1` keeps working, in Arabic too: TOXICITY is Raqib's `abusive`,
SPAM is `spam`, OFF_TOPIC is `off_topic`. Errors use Perspective's shape
`{"error": {"code", "message", "status"}}`, and the key comes as `?key=` (or `X-Goog-Api-Key`).

Coral's suggestscore carries its comment id (in `clientToken` and in a JSON context entry) and the
story URL: the verdict is recorded under Coral's comment id, so it joins Raqib's own score of that
comment, and the URL finds the stored article. Plain-text context entries are the article text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Header, Query, Request, Response
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
from serving.services.scoring import score_integration_comment
from serving.store.errors import StoreError
from serving.store.records import Article, FeedbackEntry
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

# What Coral sends, from coralproject/talk, server/src/core/server/services/perspective/perspective.ts
# (`formatBody`): suggestscore has clientToken "comment:<comment id>" and one context entry whose text
# is JSON.stringify({url: <story URL with ?commentID=<id> added>, reply_to_id_Coral_comment_id,
# Coral_comment_id}); analyze has neither. Reading them lets a verdict join Raqib's earlier decision
# on the comment (Raqib's Coral integration keys its audit rows by Coral's id) and find the story.
CORAL_TOKEN_PREFIX = "comment:"
CORAL_COMMENT_ID_KEY = "Coral_comment_id"
CORAL_URL_KEY = "url"
CORAL_URL_PARAM = "commentID"


@dataclass(frozen=True)
class ContextParts:
    """A request's context split into the article's text and the client's metadata about the comment."""

    article_text: str | None = None
    comment_id: str | None = None
    url: str | None = None


def _plain_text(entry: TextEntry) -> str:
    return html_to_text(entry.text) if (entry.type or "").upper() == "HTML" else entry.text


def _usable(value: Any) -> str | None:
    """A non-empty string (or integer) id or URL that the store can hold, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        value.encode("utf-8")  # JSON may carry an unpaired surrogate (\ud800), which no store column can hold
    except UnicodeEncodeError:
        return None
    return value.strip()


def _metadata(text: str) -> dict[str, Any] | None:
    """The object a JSON-object entry holds; None for text (including text that only looks like JSON)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):  # "{not json", or nesting too deep to parse
        return None
    return value if isinstance(value, dict) else None


def story_url(url: str) -> str:
    """The story's URL without the `commentID` parameter Coral adds, so it matches the stored article."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url  # not a URL: it can only match itself
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in query if name != CORAL_URL_PARAM]
    if len(kept) == len(query):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))


def context_parts(context: Context | None) -> ContextParts:
    """Plain-text entries are the article; JSON-object entries are metadata, never article text."""
    if context is None:
        return ContextParts()
    texts: list[str] = []
    comment_id: str | None = None
    url: str | None = None
    for entry in context.entries:
        metadata = _metadata(entry.text)
        if metadata is None:
            text = _plain_text(entry).strip()
            if text:
                texts.append(text)
            continue
        # The first entry that names a comment id or URL wins; unknown keys are ignored.
        comment_id = comment_id or _usable(metadata.get(CORAL_COMMENT_ID_KEY))
        found_url = _usable(metadata.get(CORAL_URL_KEY))
        url = url or (story_url(found_url) if found_url else None)
    return ContextParts(article_text="\n".join(texts) or None, comment_id=comment_id, url=url)


def comment_id_for(text: str) -> str:
    """Perspective has no comment id: the text's digest joins a comment's analyze and suggestscore."""
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _token_comment_id(client_token: str | None) -> str | None:
    if client_token is None or not client_token.startswith(CORAL_TOKEN_PREFIX):
        return None
    return _usable(client_token.removeprefix(CORAL_TOKEN_PREFIX))


def request_comment_id(client_token: str | None, parts: ContextParts, text: str) -> str:
    """Coral's `comment:<id>` client token, else the context's Coral_comment_id, else the text's digest."""
    return _token_comment_id(client_token) or parts.comment_id or comment_id_for(text)


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
    """TOXICITY (abusive), SPAM and OFF_TOPIC probabilities; `doNotStore` keeps the comment unstored.

    The audited comment id is Coral's (`clientToken: "comment:<id>"`, else a context Coral_comment_id),
    else the text's digest; a context's story URL finds the stored article.
    """
    enforce_rate_limit(http_request, service, caller, site)
    loaded = service.models.current
    names = [name.upper() for name in body.requestedAttributes]
    _require_supported(names, loaded)
    text = _checked_text(service, body.comment)
    if loaded is None:
        raise PerspectiveError(503, service.models.load_error or "model is not loaded yet")
    parts = context_parts(body.context)
    try:
        request = ScoreRequest.model_validate(
            {
                "comment": {"id": request_comment_id(body.clientToken, parts, text), "text": text},
                "article": {"text": parts.article_text, "url": parts.url},
                "site": site,
            }
        )
    except ValidationError as exc:
        raise PerspectiveError(400, f"Invalid comment: {exc.errors()[0]['msg']}") from None
    response = await score_integration_comment(
        service, loaded, store, request, "perspective", keep=not body.doNotStore
    )
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


def _stored_article(store: Store, url: str | None, site: str | None) -> Article | None:
    if not url:
        return None
    try:
        return store.find_article_by_url(url, site)
    except StoreError:
        return None  # the verdict matters more than its article link; record it without one


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
    """A moderator's verdict: TOXICITY 1 → abusive, SPAM 1 → spam, OFF_TOPIC 1 → off_topic, else on_topic.

    Recorded under Coral's comment id (`clientToken: "comment:<id>"`, else the context's
    Coral_comment_id), else the text's digest; the context's story URL finds the stored article.
    """
    enforce_rate_limit(request, service, caller, site)
    names = {name.upper(): attribute.summaryScore.value for name, attribute in body.attributeScores.items()}
    _require_supported(list(names), None)
    text = _checked_text(service, body.comment)
    parts = context_parts(body.context)
    article = _stored_article(store, parts.url, site)
    entry = FeedbackEntry(
        comment_id=request_comment_id(body.clientToken, parts, text),
        site=site,
        label=suggested_label(names),
        source="perspective",
        text=text,
        article_id=article.article_id if article else None,
        article_text=parts.article_text,
    )
    try:
        store.record_feedback(entry)
    except StoreError as exc:
        raise store_failed(exc) from None
    return SuggestResponse(clientToken=body.clientToken)
