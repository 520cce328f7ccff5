"""FastAPI app factory: ``uvicorn service.api.app:create_app --factory``.

Models load and warm up in a background task started by the lifespan, so /healthz answers at once and /readyz
turns 200 only when every model is warm (or 503 with the failure if loading broke).
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__
from service.api import log_privacy
from service.api.config import Settings
from service.api.context import RequestIdLogFilter
from service.api.docs import install_offline_docs
from service.api.engine import Engine
from service.api.errors import install_error_handlers
from service.api.metrics import Metrics
from service.api.middleware import RequestContextMiddleware
from service.api.routes import health, metrics, models, ocr

API_VERSION = __version__  # one number: pyproject takes it from service.__version__
TAGS = [
    {"name": "ocr", "description": "Text detection + recognition + profile fields."},
    {"name": "models", "description": "Served models and execution providers."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "metrics", "description": "Prometheus metrics."},
]


def configure_logging(level: str, secrets: tuple[str, ...] = ()) -> None:
    """Log lines carry the request ID; never image bytes, recognized text, query strings or secrets."""
    handlers = []
    for name in ("ocrnet", "service"):
        logger = logging.getLogger(name)
        logger.setLevel(level.upper())
        if not any(getattr(h, "_ocrnet", False) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler._ocrnet = True  # type: ignore[attr-defined]
            handler.addFilter(RequestIdLogFilter())
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
        handlers += [h for h in logger.handlers if getattr(h, "_ocrnet", False)]
    log_privacy.install(secrets, tuple(handlers))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level,
                      (settings.api_key.get_secret_value(),) if settings.api_key is not None else ())
    app_metrics = Metrics()
    engine = Engine(settings, app_metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.close()

    app = FastAPI(
        title="OCRNet",
        version=API_VERSION,
        description="Batched OCR (text detection + recognition) with invoice, ID-document and licence-plate profiles.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from install_offline_docs: local assets, no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = app_metrics
    install_error_handlers(app)
    for router in (ocr.router, models.router, health.router, metrics.router):
        app.include_router(router)
    ocr.register_upload_schema(app)
    install_offline_docs(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"], expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics)
    return app
