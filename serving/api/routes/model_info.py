"""GET /v1/model: which model serves, with what thresholds, trained on what, and how good it was."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from serving.api.deps import (
    CallerDep,
    ModelDep,
    OptionalStoreDep,
    ServiceDep,
    enforce_rate_limit,
    require_api_key,
)
from serving.features.article_cache import ArticleCache
from serving.model.decisions import Thresholds
from serving.services.schemas import ArticleCacheInfo, ModelInfo, error_responses
from serving.services.shadow import ShadowInfo, shadow_info

router = APIRouter(
    tags=["model"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401, 429, described={503: "No model loaded (model_not_loaded)."}),
)


class ModelInfoResponse(ModelInfo):
    """`ModelInfo` plus the shadow model (null when shadow mode is not configured)."""

    shadow: ShadowInfo | None


def _thresholds(thresholds: Thresholds) -> dict[str, dict[str, float]]:
    return {"reject_at": dict(thresholds.reject_at), "review_at": dict(thresholds.review_at)}


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
        article_cache=_article_cache(loaded.model.article_cache),
        shadow=shadow,
    )


def _article_cache(cache: ArticleCache) -> ArticleCacheInfo:
    return ArticleCacheInfo(
        **dataclasses.asdict(cache.stats()), max_entries=cache.max_entries, max_bytes=cache.max_bytes
    )
