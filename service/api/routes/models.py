"""Which models are served, their versions, hashes and the onnxruntime providers obtained."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.api.errors import error_responses
from service.api.schemas import ModelsResponse
from service.api.security import require_api_key

router = APIRouter(tags=["models"], dependencies=[Depends(require_api_key)])


@router.get(
    "/v1/models",
    operation_id="list_models",
    response_model=ModelsResponse,
    responses=error_responses(401),
    summary="Served models, versions, SHA-256 and execution providers",
)
async def list_models(request: Request) -> ModelsResponse:
    engine = request.app.state.engine
    return ModelsResponse(ready=engine.ready, models=[runner.info() for runner in engine.runners])
