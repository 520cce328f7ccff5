"""Cancel a request's work when its client goes away.

Starlette does not cancel an endpoint when the client disconnects, so without this a client that gives up (its own
timeout, a closed tab, a balancer retry) still costs a full det + rec pass. Once the body has been read, the ASGI
``receive`` only returns when the connection closes (``http.disconnect``); racing the work against it cancels the
work, and the batchers then skip the cancelled items (see batching.py).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from service.api.errors import ApiError

T = TypeVar("T")
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # late empty body messages: keep waiting


async def unless_disconnected(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """``await work``, cancelled as soon as ``receive`` reports a disconnect (then ApiError 499, which nobody reads)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watcher.exception() is not None:
            return await task  # the watch broke (not a disconnect): no reason to drop the work
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending  # let the cancellation reach the batchers' futures before we return
    if task.cancelled():
        raise ApiError(499, "client_closed_request", "client disconnected before the answer was ready")
    return task.result()
