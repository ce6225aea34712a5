"""GET /healthz, /readyz and /metrics: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from serving.api.deps import ServiceDep, require_api_key_for_health
from serving.api.errors import error_response
from serving.runtime.metrics import METRICS_CONTENT_TYPE
from serving.services.schemas import ErrorResponse, HealthResponse, ModelRef, ReadyResponse

router = APIRouter(tags=["operations"], dependencies=[Depends(require_api_key_for_health)])


@router.get("/healthz", response_model=HealthResponse, summary="The process is alive")
async def healthz() -> HealthResponse:
    """Always 200 while the process answers, model or not."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="A model is loaded and serving",
    responses={503: {"model": ErrorResponse, "description": "No model loaded; says why."}},
)
async def readyz(service: ServiceDep) -> ReadyResponse | JSONResponse:
    """200 with the model's name and version once one is loaded; 503 with the load error before."""
    loaded = service.models.current
    if loaded is None:
        return error_response(503, "model_not_loaded", service.models.load_error or "model is not loaded yet")
    return ReadyResponse(model=ModelRef(name=loaded.name, version=loaded.version))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {METRICS_CONTENT_TYPE: {}}}},
)
async def metrics(service: ServiceDep) -> Response:
    """Counters, latency histogram and model info in Prometheus text format.

    Under `raqib serve --workers N` every worker answers with the sums over all workers (see
    serving/runtime/metrics.py); one process adds its own `process_*` and `python_*` metrics.
    """
    return Response(service.metrics.render(), media_type=METRICS_CONTENT_TYPE)
