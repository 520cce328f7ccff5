"""One error model for the whole API: ``{"error": {"code", "message", "request_id"}}``.

Routes raise :class:`ApiError`; FastAPI's own 422s and Starlette's 404/405 are reformatted into the same shape,
and anything unexpected becomes a 500 with no internals leaked (the traceback goes to the log, tagged with the
request ID).
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.context import current_request_id
from service.api.schemas import ErrorResponse

log = logging.getLogger("ocrnet.api")


class ApiError(Exception):
    """An expected failure with an HTTP status and a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": current_request_id(), "details": details}}
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        details.append({"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")})
    return details


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc']) or 'request'}: {first['msg']}"
        return error_response(422, "validation_error", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error model for the given statuses."""
    descriptions = {
        400: "Bad input: empty file, not an image, corrupt or truncated image.",
        401: "Missing or wrong X-API-Key (only when the server has an API key configured).",
        408: "The request body did not arrive within the upload timeouts (stalled or trickling client).",
        413: "File over the size limit, image (or all images together) over the pixel limit, too many files/parts.",
        415: "Unsupported media type (request not multipart, or an image format we do not decode).",
        422: "Validation error (unknown profile, bad option value, no files).",
        503: "Overloaded (queue full, retry after `Retry-After` seconds) or models not ready.",
        504: "Processing exceeded the per-request timeout.",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": descriptions[status]}
        if status == 503:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
            }
        out[status] = entry
    return out
