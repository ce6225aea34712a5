"""The queue's JSON: its query parameters, request bodies and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.services.queue import Decision
from serving.services.schemas import ExternalId, ModelRef, ReasonOut, SpanOut
from serving.services.shadow import ShadowInfo

Action = Literal["approve", "review", "reject"]
# SQLite's (and PostgreSQL's bigint) largest integer: a bigger id cannot even be bound as a parameter.
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]

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


class QueueArticle(BaseModel):
    """The article a queued comment sits under, as far as it is known."""

    id: str | None
    title: str | None
    url: str | None


class QueueItem(BaseModel):
    """One comment waiting for a moderator, from its latest audit row."""

    audit_id: int
    comment_id: str
    site: str | None
    text: str
    article: QueueArticle | None
    label: str = Field(description="The label the model gave (the decided label; on_topic when approved).")
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


class QueueShadowResponse(BaseModel):
    """The champion serving now and, when configured, its shadow's agreement with it."""

    champion: ModelRef | None
    shadow: ShadowInfo | None
