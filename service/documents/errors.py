"""The one exception document readers raise: an HTTP status and a stable code, so the API can answer a 4xx."""
from __future__ import annotations


class DocumentError(Exception):
    """A document the service will not read (too many pages, encrypted, unreadable): ``status`` is the 4xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
