"""Liveness (process answers) and readiness (models loaded and warmed up)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.errors import ApiError, error_responses
from service.api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    operation_id="healthz",
    response_model=HealthResponse,
    summary="Liveness: the process serves HTTP",
)
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=ReadyResponse,
    responses=error_responses(503),
    summary="Readiness: 200 only after every model is loaded and warmed up",
)
async def readyz(request: Request) -> ReadyResponse:
    engine = request.app.state.engine
    if engine.error is not None:
        raise ApiError(503, "models_failed", f"models failed to load: {engine.error}")
    if not engine.ready:
        raise ApiError(503, "not_ready", "models are loading / warming up", {"Retry-After": "1"})
    return ReadyResponse(status="ready", models=[runner.name for runner in engine.runners])
