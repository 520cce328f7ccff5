"""No secret and no query string in any log line, whichever logger writes it.

uvicorn's access logger prints the request target with its query string (``POST /v1/ocr?api_key=... HTTP/1.1``),
so a key a client puts in the URL (refused with 401, rightly) still ended up in the log (issue 20). The service's
own access line carries method, route template, status and request ID, never the URL. This filter, installed on
uvicorn's loggers and on the service's handlers, drops query strings from every path-like argument and replaces
the configured API key wherever it would appear.
"""
from __future__ import annotations

import logging
import re

_QUERY = re.compile(r"\?[^\s\"']*")
REDACTED = "[redacted]"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")


def strip_query(text: str) -> str:
    """``/v1/ocr?api_key=x&profile=id`` -> ``/v1/ocr`` (also inside a longer line)."""
    return _QUERY.sub("", text)


class PrivacyLogFilter(logging.Filter):
    """Rewrites a record in place: query strings out of its arguments, the secret (if any) out of its text."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(strip_query(a) if isinstance(a, str) and ("/" in a or "=" in a) else a
                                for a in record.args)
        if isinstance(record.msg, str) and not record.args:
            record.msg = strip_query(record.msg)
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, REDACTED)
                record.msg, record.args = message, ()
        return True


def install(secrets: tuple[str, ...] = (), handlers: tuple[logging.Handler, ...] = ()) -> None:
    """Put one filter (replacing an earlier one: settings may change between app instances) on uvicorn's loggers
    (records they log themselves) and on ``handlers`` (records of every child logger that reaches them)."""
    privacy = PrivacyLogFilter(secrets)
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    for target in targets + list(handlers):
        for old in [f for f in target.filters if isinstance(f, PrivacyLogFilter)]:
            target.removeFilter(old)
        target.addFilter(privacy)
