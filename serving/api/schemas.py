"""Request and response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

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

    id: ExternalId | None = None
    title: str | None = None
    text: str | None = None

    _clean = field_validator("title", "text")(_reject_lone_surrogates)


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


class ReasonOut(BaseModel):
    """One reason behind the scores."""

    kind: str = Field(description="ngram, signal, context or policy.")
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
    label: str = Field(description="Most probable label.")
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
