"""Pure-ASGI middleware: request ID, access log, Prometheus request metrics, last-resort 500.

Pure ASGI (not BaseHTTPMiddleware) so streamed upload bodies pass through untouched, and so the request ID is
set before any handler runs and is still known when an unexpected exception has to become a 500 body.
"""
from __future__ import annotations

import json
import logging
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.context import (
    REQUEST_ID_HEADER,
    choose_request_id,
    reset_request_id,
    set_request_id,
)
from service.api.metrics import Metrics

log = logging.getLogger("ocrnet.api.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = choose_request_id(headers.get(REQUEST_ID_HEADER.lower()))
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1"))
                ]
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # the client left mid-body (a route that read it without our upload reader)
            if not response_started:
                status = 499
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not response_started:
                body = json.dumps(
                    {"error": {"code": "internal_error", "message": "internal server error", "request_id": request_id,
                               "details": None}}
                ).encode()
                await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_label = getattr(route, "path", None) or (scope["path"] if "endpoint" in scope else "unmatched")
            method = scope.get("method", "-")
            self.metrics.inflight.dec()
            self.metrics.requests.labels(route=route_label, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=route_label, method=method).observe(elapsed)
            log.info("%s %s -> %d in %.1f ms", method, route_label, status, elapsed * 1000)
            reset_request_id(token)
