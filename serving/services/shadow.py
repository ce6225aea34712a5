"""What /v1/model and the queue show of shadow mode: agreement so far and the latest disagreements."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from serving.runtime.loaded import LoadedModel
from serving.runtime.shadow import DISAGREEMENTS_SHOWN
from serving.services.context import Service
from serving.store.store import Store


class VerdictOut(BaseModel):
    """One model's top label and decided action."""

    label: str
    action: str


class DisagreementOut(BaseModel):
    """A comment on which champion and shadow disagreed."""

    comment_id: str | None
    site: str | None
    champion: VerdictOut
    shadow: VerdictOut
    created_at: datetime


class ShadowInfo(BaseModel):
    """The challenger scored beside the champion, and how often the two agree."""

    name: str | None
    version: str | None
    loaded: bool
    error: str | None = Field(description="Why the shadow bundle did not (re)load; the champion serves on.")
    compared: int = Field(description="Comments scored by both models (this champion/shadow pair).")
    agreed: int
    agreement_rate: float | None = Field(description="agreed / compared: same decided action and top label.")
    counted_in: Literal["store", "process"] = Field(
        description='"store": every worker, across restarts; "process": this one only.'
    )
    errors: int = Field(description="Comments the shadow failed to score in this process.")
    disagreements: list[DisagreementOut] = Field(description="The most recent, newest first.")


def shadow_info(service: Service, loaded: LoadedModel, store: Store | None) -> ShadowInfo | None:
    """The shadow section of /v1/model (reads the store: call it off the event loop)."""
    slot = service.models.shadow
    if slot is None:
        return None
    tracker = service.models.shadow_tracker
    if slot.name is not None and slot.version is not None:
        report = tracker.report(store, loaded.version, slot.name, slot.version, DISAGREEMENTS_SHOWN)
        summary, disagreements, counted_in = report.summary, report.disagreements, report.counted_in
    else:  # nothing ever loaded and no readable metadata: there is no pair to count
        summary, disagreements, counted_in = None, [], "process"
    return ShadowInfo(
        name=slot.name,
        version=slot.version,
        loaded=slot.loaded is not None,
        error=slot.error,
        compared=summary.compared if summary else 0,
        agreed=summary.agreed if summary else 0,
        agreement_rate=summary.agreement_rate if summary else None,
        counted_in=counted_in,
        errors=tracker.errors,
        disagreements=[
            DisagreementOut(
                comment_id=d.comment_id,
                site=d.site,
                champion=VerdictOut(label=d.champion.label, action=d.champion.action),
                shadow=VerdictOut(label=d.shadow.label, action=d.shadow.action),
                created_at=d.created_at,
            )
            for d in disagreements
        ],
    )
