"""GET /v1/model: which model serves, with what thresholds, trained on what, and how good it was."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from serving.api.deps import ModelDep, require_api_key
from serving.api.schemas import ErrorResponse, ModelInfo
from serving.model import Thresholds

router = APIRouter(
    tags=["model"],
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)


def _thresholds(thresholds: Thresholds) -> dict[str, dict[str, float]]:
    return {"reject_at": dict(thresholds.reject_at), "review_at": dict(thresholds.review_at)}


@router.get("/v1/model", response_model=ModelInfo, summary="The model serving now")
async def model_info(loaded: ModelDep) -> ModelInfo:
    """Name, version, labels, thresholds, training data fingerprint, metrics, load time and bundle path."""
    metadata: dict[str, Any] = loaded.model.metadata
    sites = {
        site: {
            "mode": rules.mode,
            "thresholds": _thresholds(rules.thresholds),
            "trusted_authors": len(rules.trusted_authors),
        }
        for site, rules in loaded.sites.items()
    }
    return ModelInfo(
        name=loaded.name,
        version=loaded.version,
        labels=list(loaded.model.labels),
        thresholds=_thresholds(loaded.model.thresholds),
        training_data=metadata.get("training_data"),
        metrics=metadata.get("metrics"),
        loaded_at=loaded.loaded_at,
        bundle_path=str(loaded.bundle_path),
        sites=sites,
    )
