"""GET /v1/model: which model serves, with what thresholds, trained on what, and how good it was."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from serving.api.deps import (
    CallerDep,
    ModelDep,
    OptionalStoreDep,
    Service,
    ServiceDep,
    enforce_rate_limit,
    require_api_key,
)
from serving.api.schemas import ModelInfo, error_responses
from serving.model.decisions import Thresholds
from serving.runtime.loaded import LoadedModel
from serving.runtime.shadow import DISAGREEMENTS_SHOWN
from serving.store.store import Store

router = APIRouter(
    tags=["model"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401, 429, described={503: "No model loaded (model_not_loaded)."}),
)


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


class ModelInfoResponse(ModelInfo):
    """`ModelInfo` plus the shadow model (null when shadow mode is not configured)."""

    shadow: ShadowInfo | None


def _thresholds(thresholds: Thresholds) -> dict[str, dict[str, float]]:
    return {"reject_at": dict(thresholds.reject_at), "review_at": dict(thresholds.review_at)}


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


@router.get("/v1/model", response_model=ModelInfoResponse, summary="The model serving now")
async def model_info(
    request: Request, loaded: ModelDep, service: ServiceDep, caller: CallerDep, store: OptionalStoreDep
) -> ModelInfoResponse:
    """Name, version, labels, thresholds, training data fingerprint, metrics, load time and bundle path."""
    enforce_rate_limit(request, service, caller)
    metadata: dict[str, Any] = loaded.model.metadata
    sites = {
        site: {
            "mode": rules.mode,
            "thresholds": _thresholds(rules.thresholds),
            "trusted_authors": len(rules.trusted_authors),
        }
        for site, rules in loaded.sites.items()
    }
    shadow = None
    if service.models.shadow is not None:
        shadow = await run_in_threadpool(shadow_info, service, loaded, store)
    return ModelInfoResponse(
        name=loaded.name,
        version=loaded.version,
        labels=list(loaded.model.labels),
        thresholds=_thresholds(loaded.model.thresholds),
        training_data=metadata.get("training_data"),
        metrics=metadata.get("metrics"),
        loaded_at=loaded.loaded_at,
        bundle_path=str(loaded.bundle_path),
        sites=sites,
        shadow=shadow,
    )
