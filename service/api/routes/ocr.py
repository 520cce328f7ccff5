"""POST /v1/ocr: multipart images and documents (PDF, multi-page TIFF) in, text lines + profile fields out.

The body is read by :func:`service.api.uploads.read_upload_form` (streamed, limits enforced per chunk), so the
multipart schema is declared here for OpenAPI by hand instead of via FastAPI ``File()`` parameters.
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field, ValidationError

from service.api.disconnect import unless_disconnected
from service.api.errors import ApiError, error_responses
from service.api.schemas import OcrResponse
from service.api.security import require_api_key
from service.api.uploads import UploadLimits, read_upload_form
from service.profiles import PROFILES

router = APIRouter(tags=["ocr"], dependencies=[Depends(require_api_key)])


class OcrOptions(BaseModel):
    """Options after merging query string and form fields (form wins)."""

    profile: str = "generic"
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    return_polygons: bool = True
    force_ocr: bool = False
    all_text: bool = False


UPLOAD_SCHEMA_NAME = "OcrUpload"
ALL_TEXT_HELP = ("Read every line of the page. Without it the id profile reads only the MRZ band, located by a "
                 "low-resolution detector pass (the whole page only when no complete MRZ is found there), and "
                 "answers with those lines: several times faster. Other profiles always read the whole page.")


def upload_schema(profiles: list[str], max_files: int | None = None) -> dict[str, Any]:
    """The multipart body schema; registered under components by the app (see ``register_upload_schema``).

    As strict as the upload reader: unknown fields, no files and more than ``max_files`` are all rejected."""
    files: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}
    if max_files is not None:
        files["maxItems"] = max_files
    return {
        "title": UPLOAD_SCHEMA_NAME,
        "type": "object",
        "required": ["files"],
        "additionalProperties": False,
        "properties": {
            "files": {
                **files,
                "description": "One or more images (JPEG, PNG, WebP, BMP, TIFF, GIF, PPM) or PDFs. Every page of a "
                               "PDF or multi-page TIFF is answered; animations are read at their first frame.",
            },
            "profile": {"type": "string", "enum": list(profiles), "default": "generic",
                        "description": "Field extraction profile (overrides the query parameter)."},
            "min_confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0,
                               "description": "Drop lines below this recognition confidence."},
            "return_polygons": {"type": "boolean", "default": True,
                                "description": "Include each line's quad in image pixels."},
            "force_ocr": {"type": "boolean", "default": False,
                          "description": "OCR every PDF page, also those with a text layer (by default their own "
                                         "text is returned, source `pdf_text`)."},
            "all_text": {"type": "boolean", "default": False, "description": ALL_TEXT_HELP},
        },
    }


def register_upload_schema(app: FastAPI) -> None:
    """Add OcrUpload (profiles from the live registry) and each profile's fields model to the OpenAPI
    components, so generated clients get named models for both."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components[UPLOAD_SCHEMA_NAME] = upload_schema(list(app.state.engine.profiles), app.state.settings.max_files)
            for profile in PROFILES.values():
                fields = profile.fields_model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(fields.pop("$defs", {}))
                components.setdefault(profile.fields_model.__name__, fields)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _merge_options(query: dict[str, Any], form: dict[str, str]) -> OcrOptions:
    merged = {k: v for k, v in query.items() if v is not None}
    merged.update(form)
    try:
        return OcrOptions.model_validate(merged)
    except ValidationError as exc:
        details = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        first = details[0]
        raise ApiError(422, "validation_error", f"{'.'.join(first['loc'])}: {first['msg']}", details=details) from None


@router.post(
    "/v1/ocr",
    operation_id="ocr",
    response_model=OcrResponse,
    summary="OCR one or more images or documents",
    description=(
        "Detects and recognizes text lines in each uploaded image and each page of a PDF or multi-page TIFF, then "
        "extracts the profile's fields per page and per file (`documents`). PDF pages with a text layer return "
        "their own text (`source: pdf_text`) unless `force_ocr` is set. Concurrent requests share model batches. "
        "Options may be given as query parameters or form fields."
    ),
    responses=error_responses(400, 401, 408, 413, 415, 422, 503, 504),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{UPLOAD_SCHEMA_NAME}"}}},
        }
    },
)
async def ocr(
    request: Request,
    profile: str | None = Query(None, description="generic | invoice | id | plate", examples=["invoice"]),
    min_confidence: float | None = Query(None, ge=0.0, le=1.0, description="Drop lines below this confidence."),
    return_polygons: bool | None = Query(None, description="Include line polygons (default true)."),
    force_ocr: bool | None = Query(None, description="OCR PDF pages that have a text layer too (default false)."),
    all_text: bool | None = Query(None, description=ALL_TEXT_HELP),
) -> OcrResponse:
    deadline = time.monotonic() + request.app.state.settings.request_timeout_s  # from the first byte on
    engine = request.app.state.engine
    settings = request.app.state.settings
    engine.raise_unless_ready()
    engine.raise_if_overloaded(profile)  # before the body: a refusal costs no upload parsing
    limits = UploadLimits(settings.max_upload_bytes, settings.max_files, settings.upload_timeout_s,
                          settings.upload_idle_timeout_s)
    form = await read_upload_form(request, limits)
    options = _merge_options(
        {"profile": profile, "min_confidence": min_confidence, "return_polygons": return_polygons,
         "force_ocr": force_ocr, "all_text": all_text}, form.fields
    )
    if options.profile not in engine.profiles:
        raise ApiError(
            422, "unknown_profile", f"unknown profile {options.profile!r}; choose one of {', '.join(engine.profiles)}"
        )
    if not form.files:
        raise ApiError(422, "no_files", "send at least one image in the 'files' field")
    # a client that leaves (its own timeout, a balancer retry) must not keep costing det + rec passes
    return await unless_disconnected(
        request.receive,
        engine.ocr(form.files, options.profile, options.min_confidence, options.return_polygons, options.force_ocr,
                   deadline, options.all_text),
    )
