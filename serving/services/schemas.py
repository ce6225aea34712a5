"""Request and response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from serving.schema import LABEL_PATTERN

Action = Literal["approve", "review", "reject"]


def _id_as_text(value: Any) -> Any:
    # CMSs use numeric and string ids alike; one type keeps clients and error paths simple.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


ExternalId = Annotated[str, BeforeValidator(_id_as_text)]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_lone_surrogates(value: str | None) -> str | None:
    # JSON allows "\ud800"; such a string cannot be encoded back into a UTF-8 response.
    if value is not None and _LONE_SURROGATE.search(value):
        raise PydanticCustomError("invalid_unicode", "text contains an unpaired UTF-16 surrogate")
    return value


class _Input(BaseModel):
    # Unknown fields are ignored so a CMS can send its own record as it is.
    model_config = ConfigDict(extra="ignore")


class CommentIn(_Input):
    """The comment to moderate."""

    id: ExternalId | None = Field(default=None, description="Your id of the comment; echoed back.")
    text: str = Field(description="The comment as the reader wrote it (at most `max_text_chars`).")
    author: str | None = Field(default=None, description="Author name or id, for trusted authors.")

    @field_validator("text")
    @classmethod
    def _text_has_content(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("empty_text", "comment text is empty")
        _reject_lone_surrogates(value)
        return value

    _clean_author = field_validator("author")(_reject_lone_surrogates)


class ArticleIn(_Input):
    """The article the comment was posted under; without it off_topic cannot be judged."""

    id: ExternalId | None = Field(
        default=None, description="Your article id; a stored article (PUT /v1/articles) fills title and text."
    )
    title: str | None = None
    text: str | None = None
    url: str | None = Field(default=None, description="Also finds a stored article by its URL.")

    _clean = field_validator("title", "text", "url")(_reject_lone_surrogates)


class ScoreRequest(_Input):
    """One comment with its article and the site it was posted on."""

    comment: CommentIn
    article: ArticleIn | None = None
    site: str | None = Field(default=None, description="Site key for per-site policy (settings `sites`).")

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "comment": {"id": "c-1", "text": "للتواصل واتساب ٠٥٥١٢٣٤٥٦٧ ربح مضمون", "author": "u-9"},
                    "article": {
                        "id": "a-7",
                        "title": "الحكومة العراقية تبدأ محادثات مع واشنطن",
                        "text": "قالت الحكومة العراقية إن محادثات مع الولايات المتحدة ...",
                    },
                    "site": "example-news",
                }
            ]
        },
    )


class BatchRequest(BaseModel):
    """Up to `max_batch_items` score requests; each item is validated on its own."""

    # Items stay untyped here on purpose: one malformed item must yield an item-level error,
    # not reject the whole batch, so each is validated against ScoreRequest separately.
    items: list[Any] = Field(
        description="ScoreRequest objects.",
        json_schema_extra={"items": {"$ref": "#/components/schemas/ScoreRequest"}},
    )


class ErrorBody(BaseModel):
    """What went wrong: a stable machine code, a human message and the offending field."""

    code: str
    message: str
    field: str | None = None


class InternalErrorBody(ErrorBody):
    """An internal error also names the request id under which it was logged."""

    request_id: str


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


# What an error status means on the routes that can answer it, for the OpenAPI document.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON, or not UTF-8 (invalid_json).",
    401: "Missing or invalid API key (unauthorized).",
    403: "Forbidden.",
    404: "No such resource (not_found).",
    409: "Conflict.",
    413: "Body over the route's size limit (body_too_large).",
    415: "Body sent without Content-Type: application/json (unsupported_media_type).",
    422: "Invalid request; `field` names the offending field.",
    429: "Over this key's rate limit (rate_limited); retry after `Retry-After` seconds.",
    503: "Unavailable: no model loaded (model_not_loaded) or no store (store_unavailable).",
}
RATE_LIMIT_HEADERS: dict[str, Any] = {
    "Retry-After": {
        "description": "Whole seconds until the key may send again.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Limit": {"description": "The bucket size (burst).", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the bucket now.", "schema": {"type": "integer"}},
}


def error_responses(
    *statuses: int, model: type[BaseModel] = ErrorResponse, described: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, in `model`'s shape (429 with its rate-limit headers)."""
    descriptions = {**ERROR_DESCRIPTIONS, **(described or {})}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in (*statuses, *(described or {})):
        responses[status] = {"model": model, "description": descriptions[status]}
        if status == 429:
            responses[status]["headers"] = RATE_LIMIT_HEADERS
    return responses


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` written in place, for bodies read by hand (openapi_extra)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def request_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    """`openapi_extra` documenting a body the handler reads itself (to verify a signature, or a form)."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": inline_schema(model)}}}}


class ReasonOut(BaseModel):
    """One reason behind the scores."""

    kind: str = Field(
        description="relation (to the article), article (which article was used), ngram, signal, context "
        "or policy."
    )
    detail: str
    weight: float


class SpanOut(BaseModel):
    """A flagged stretch of the comment text as sent: text[begin:end], in code points."""

    begin: int
    end: int
    score: float


class ModelRef(BaseModel):
    """Which model answered."""

    name: str
    version: str


class DecisionOut(BaseModel):
    """The policy's decision; in observe mode `action` here is what would have happened."""

    action: Action
    label: str | None = Field(description="The label that drove a review/reject; null when approved.")
    mode: Literal["enforce", "observe"]


class ScoreResponse(BaseModel):
    """The verdict on one comment."""

    comment_id: ExternalId | None
    label: str = Field(
        description=(
            "The label Raqib gives the comment, always the decision's: the label that drove a review "
            "or reject, on_topic when approved. `scores` has every label's probability."
        )
    )
    scores: dict[str, float] = Field(description="Probability per label.")
    action: Action = Field(description="What the CMS should do now (always approve in observe mode).")
    decision: DecisionOut
    reasons: list[ReasonOut]
    spans: list[SpanOut]
    model: ModelRef


class BatchItemOk(ScoreResponse):
    """A scored batch item."""

    index: int
    ok: Literal[True] = True


class BatchItemError(BaseModel):
    """A batch item that could not be scored, and why."""

    index: int
    ok: Literal[False] = False
    error: ErrorBody


class BatchResponse(BaseModel):
    """One result per item, in request order."""

    results: list[BatchItemOk | BatchItemError]


class ArticleCacheInfo(BaseModel):
    """The serving model's article cache: articles whose features it keeps, and how often they served."""

    entries: int
    bytes: int = Field(description="Estimated memory of the kept article features.")
    max_entries: int
    max_bytes: int
    hits: int = Field(description="Batches that found an article's features kept (one per distinct article).")
    misses: int
    evictions: int
    replaced: int = Field(description="Entries dropped because a new text came under the same article id.")


class ModelInfo(BaseModel):
    """The model serving now and how the service applies it."""

    name: str
    version: str
    labels: list[str]
    thresholds: dict[str, dict[str, float]]
    training_data: dict[str, Any] | None
    metrics: dict[str, Any] | None
    loaded_at: datetime
    bundle_path: str
    sites: dict[str, dict[str, Any]] = Field(description="Per-site mode and effective thresholds.")
    article_cache: ArticleCacheInfo | None = None


class ReloadResponse(BaseModel):
    """Outcome of a successful reload."""

    status: Literal["reloaded"] = "reloaded"
    model: ModelRef
    previous: ModelRef | None
    loaded_at: datetime


class ReloadFailed(BaseModel):
    """A reload that failed: the error, and the model that keeps serving."""

    error: ErrorBody
    model: ModelRef | None


class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """Readiness: a model is loaded."""

    status: Literal["ready"] = "ready"
    model: ModelRef


def _well_formed_label(value: str) -> str:
    if not LABEL_PATTERN.match(value):
        raise PydanticCustomError(
            "invalid_label",
            # pydantic fills {label} from the context and knows no conversions such as !r.
            "label {label} is not a lower_snake_case name (e.g. spam, off_topic)",
            {"label": repr(value)},
        )
    return value


Label = Annotated[str, AfterValidator(_well_formed_label)]
CleanText = Annotated[str, AfterValidator(_reject_lone_surrogates)]


class ArticlePut(_Input):
    """An article to keep, so comments can name it by id or URL instead of sending its text."""

    title: CleanText | None = None
    text: CleanText | None = None
    url: CleanText | None = None
    site: str | None = Field(default=None, description="The site the id belongs to; none: every site.")

    @model_validator(mode="after")
    def _has_content(self) -> ArticlePut:
        if not (self.title or self.text or self.url):
            raise PydanticCustomError("missing", "an article needs at least a title, a text or a url")
        return self


class ArticleOut(BaseModel):
    """A stored article."""

    id: str
    site: str | None
    title: str | None
    text: str | None
    url: str | None
    updated_at: datetime | None


class FeedbackComment(_Input):
    """The comment a verdict is about, so the export has its text even if Raqib never scored it."""

    text: CleanText
    author: str | None = Field(default=None, description="Kept out of the store and of every export.")


def _text_as_comment(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


class FeedbackArticle(_Input):
    """The article a verdict's comment sits under."""

    id: ExternalId | None = None
    title: CleanText | None = None
    text: CleanText | None = None


class FeedbackRequest(_Input):
    """A moderator's verdict on one comment."""

    comment_id: ExternalId = Field(min_length=1)
    label: Label = Field(
        description="on_topic, off_topic, spam, abusive or a site's own lower_snake_case label."
    )
    moderator: str | None = None
    site: str | None = None
    comment: Annotated[FeedbackComment | None, BeforeValidator(_text_as_comment)] = Field(
        default=None, description="The comment text (a string or {text})."
    )
    article: FeedbackArticle | None = None

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"comment_id": "c-1", "label": "spam", "moderator": "mod-3", "site": "example-news"},
            ]
        },
    )


class FeedbackResponse(BaseModel):
    """A recorded verdict: it is on disk."""

    id: int
    comment_id: str
    site: str | None
    label: str | None
    known_label: bool = Field(
        description="Whether the serving model has this label (new labels are allowed)."
    )
    created_at: datetime
