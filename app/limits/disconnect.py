"""Noticing a client that went away while its request waits or runs.

Starlette raises ClientDisconnect when a client leaves mid-upload, but once the
body is in, nothing tells a handler that its client has gone: it would fetch,
queue and predict for nobody, holding a slot. So the work after the body runs
beside a watcher of the connection; when the client goes, the work is cancelled
(a URL fetch, the wait for a slot, a queued prediction: see app/inference/predictor.py) and
ClientDisconnect is raised (app/http/handlers.py answers 499).
"""

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone. Once the body has been read, the server's
    next message for this request is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Coroutine[object, object, T]) -> T:
    """`work`'s result, unless the client goes first: then ClientDisconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task  # its own clean-up (a slot given back) runs before we go on
    if task.cancelled():
        raise ClientDisconnect
    return task.result()
