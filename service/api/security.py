"""Optional API-key check (X-API-Key), constant-time compared; a no-op when no key is configured."""
from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from service.api.errors import ApiError

API_KEY_HEADER = "X-API-Key"
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Required only when the server sets OCRNET_API_KEY.",
)


async def require_api_key(request: Request, key: str | None = Security(api_key_scheme)) -> None:
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if key is None or not hmac.compare_digest(key.encode("utf-8"), expected.get_secret_value().encode("utf-8")):
        raise ApiError(401, "unauthorized", f"missing or invalid {API_KEY_HEADER} header", {"WWW-Authenticate": "ApiKey"})
