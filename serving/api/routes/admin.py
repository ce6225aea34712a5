"""POST /v1/admin/reload (and SIGHUP): load the bundle again and swap it in, or keep the old one."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends

from serving.api.deps import ServiceDep, require_admin_key
from serving.model.bundle import BundleError
from serving.runtime.loaded import LoadedModel
from serving.services.context import Service
from serving.services.errors import ApiError
from serving.services.schemas import ErrorResponse, ModelRef, ReloadFailed, ReloadResponse

logger = logging.getLogger("raqib.model")

router = APIRouter(
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)


def _ref(loaded: LoadedModel | None) -> ModelRef | None:
    return ModelRef(name=loaded.name, version=loaded.version) if loaded else None


def perform_reload(service: Service, trigger: str) -> tuple[LoadedModel | None, LoadedModel]:
    """Load the bundle again (sha256 re-verified) and swap it in; BundleError leaves the old one serving."""
    previous = service.models.current
    try:
        loaded = service.models.load()
    except BundleError as exc:
        service.metrics.reloads.labels(outcome="failure").inc()
        still = f"{previous.name} {previous.version}" if previous else "no model"
        logger.error("model reload (%s) failed, still serving %s: %s", trigger, still, exc)
        raise
    service.metrics.reloads.labels(outcome="success").inc()
    service.metrics.set_model(loaded.name, loaded.version)
    logger.info(
        "model reload (%s): now serving %s %s from %s",
        trigger,
        loaded.name,
        loaded.version,
        loaded.bundle_path,
    )
    return previous, loaded


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    summary="Reload the model bundle",
    responses={409: {"model": ReloadFailed, "description": "Load failed; the old model serves on."}},
)
def reload_model(service: ServiceDep) -> ReloadResponse:
    """Re-read and re-verify the bundle, then swap it in atomically; 409 and no change if it fails."""
    try:
        previous, loaded = perform_reload(service, "admin endpoint")
    except BundleError as exc:
        current = _ref(service.models.current)
        raise ApiError(
            409, "reload_failed", str(exc), extra={"model": current.model_dump() if current else None}
        ) from None
    return ReloadResponse(
        model=ModelRef(name=loaded.name, version=loaded.version),
        previous=_ref(previous),
        loaded_at=loaded.loaded_at,
    )
