"""Request ID plumbing: a contextvar set by the middleware, read by logs and error bodies.

The ID comes from the client's X-Request-ID when it is a sane token (so callers can correlate), else a fresh UUID.
"""
from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: ContextVar[str] = ContextVar("ocrnet_request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str):
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)


def choose_request_id(client_value: str | None) -> str:
    """Keep the client's ID if it is a short token; never echo arbitrary header content into logs."""
    if client_value and _VALID_ID.match(client_value):
        return client_value
    return uuid.uuid4().hex


class RequestIdLogFilter(logging.Filter):
    """Adds ``record.request_id`` so formatters can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True
