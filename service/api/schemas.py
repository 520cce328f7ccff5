"""Every request/response shape of the HTTP API, in one place (the OpenAPI schema is generated from these)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

class ErrorDetail(BaseModel):
    """The one error shape every non-2xx response uses."""

    code: str = Field(..., description="Stable machine-readable code, e.g. `invalid_image`, `file_too_large`.")
    message: str = Field(..., description="Human-readable explanation.")
    request_id: str = Field(..., description="Same value as the X-Request-ID response header.")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems for validation errors.")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": {
                    "code": "invalid_image",
                    "message": "files[0] ('scan.pdf'): not a decodable image",
                    "request_id": "3f2c9a7e5b7d4a1c9e0f6b2d8a4c1e7f",
                    "details": None,
                }
            }
        }
    )

    error: ErrorDetail


class TextLine(BaseModel):
    text: str = Field(..., description="Recognized text of one line.")
    confidence: float = Field(..., ge=0, le=1, description="Mean per-character probability (CTC greedy).")
    polygon: list[tuple[float, float]] | None = Field(
        None, description="Quad [[x,y]*4] in original image pixels, clockwise from top-left; null if not requested."
    )
    source: Literal["ocr", "pdf_text"] = Field(
        "ocr", description="`ocr`: read by the models; `pdf_text`: taken from the PDF's own text layer (exact, "
        "confidence 1)."
    )


class Timings(BaseModel):
    decode: float = Field(..., description="Image decode + conversion (PDF: text layer + rendering), ms.")
    det: float = Field(..., description="Detection (queue wait + batched inference + post-processing), ms.")
    rec: float = Field(..., description="Recognition (queue wait + batched inference + CTC decode), ms.")
    fields: float = Field(..., description="Profile field extraction, ms.")
    total: float = Field(..., description="Wall time for this image inside the request, ms.")


class ImageResult(BaseModel):
    """One page: an image, one page of a multi-page TIFF, or one PDF page (rendered, or read from its text layer)."""

    filename: str | None = Field(None, description="Filename the client sent for this part.")
    file_index: int = Field(0, ge=0, description="Index of the uploaded file in `files` this page belongs to.")
    page: int = Field(1, ge=1, description="1-based page number within its file (PDF page, TIFF page; 1 for an image).")
    width: int = Field(..., description="Width after EXIF orientation, px (PDF pages: as rendered for the detector).")
    height: int = Field(..., description="Height after EXIF orientation, px (PDF pages: as rendered for the detector).")
    lines: list[TextLine]
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Profile-specific structured fields: GenericFields, InvoiceFields, IdDocumentFields or "
        "PlateFields (schemas in components) for profile generic, invoice, id, plate.",
    )
    timings_ms: Timings


class DocumentResult(BaseModel):
    """One uploaded file: its page count and the profile's fields read across all its pages."""

    file_index: int = Field(..., ge=0, description="Index of the file in `files`.")
    filename: str | None = Field(None, description="Filename the client sent for this part.")
    pages: int = Field(..., ge=1, description="Pages of the file in `images` (1 for an image).")
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="The profile's fields over the whole file, its pages read top to bottom (an invoice's total is "
        "often on its last page); the same as the page's own fields for a one-page file.",
    )


class ModelRef(BaseModel):
    name: str
    version: str


class OcrResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "request_id": "3f2c9a7e5b7d4a1c9e0f6b2d8a4c1e7f",
                "profile": "generic",
                "model": {"name": "base", "version": "ppocrv6-small-3.10.0"},
                "execution_provider": "CPUExecutionProvider",
                "images": [
                    {
                        "filename": "receipt.png",
                        "file_index": 0,
                        "page": 1,
                        "width": 640,
                        "height": 200,
                        "lines": [
                            {
                                "text": "TOTAL 42.50",
                                "confidence": 0.98,
                                "polygon": [[12.0, 30.0], [300.0, 30.0], [300.0, 70.0], [12.0, 70.0]],
                                "source": "ocr",
                            }
                        ],
                        "fields": {},
                        "timings_ms": {"decode": 2.1, "det": 80.4, "rec": 25.0, "fields": 0.1, "total": 108.0},
                    }
                ],
                "documents": [{"file_index": 0, "filename": "receipt.png", "pages": 1, "fields": {}}],
            }
        }
    )

    request_id: str
    profile: str
    model: ModelRef
    execution_provider: str = Field(..., description="onnxruntime provider that ran the models.")
    images: list[ImageResult] = Field(..., description="Every page of every file, in upload and page order.")
    documents: list[DocumentResult] = Field(
        default_factory=list, description="One entry per uploaded file: page count and fields across its pages."
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    path: str = Field(..., description="Model bundle directory.")
    profiles: list[str] = Field(..., description="Profiles served by this model.")
    sha256: dict[str, str] = Field(..., description="SHA-256 of det/rec ONNX files (det_cpu / rec_cpu: the int8 "
                                                    "detector / recognizer used on CPU-only hosts), the charset and "
                                                    "fields_model (the learned field extractor, when the bundle has one).")
    providers: list[str] = Field(..., description="onnxruntime providers obtained (first = used).")


class ModelsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "ready": True,
                "models": [
                    {
                        "name": "base",
                        "version": "ppocrv6-small-3.10.0",
                        "path": "models/base",
                        "profiles": ["generic"],
                        "sha256": {"det": "ab12...", "rec": "cd34...", "charset": "ef56..."},
                        "providers": ["CPUExecutionProvider"],
                    }
                ],
            }
        }
    )

    ready: bool
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"status": "ok"}})

    status: str = Field("ok", description="Always `ok` while the process serves HTTP.")


class ReadyResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"status": "ready", "models": ["base"]}})

    status: str = Field(..., description="`ready` once models are loaded and warmed up.")
    models: list[str]
