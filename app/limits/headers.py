"""uvicorn's httptools protocol, with the two limits it lacks: header size and header time.

httptools buffers headers of any size (a 10 MB header is accepted) and uvicorn
waits forever for a request's headers to finish, so a client could hold memory,
or a connection slot, for as long as it liked. This protocol answers 431 past
MAX_HEADER_KB and 408 when a request's headers take longer than HEADER_TIMEOUT,
and closes the connection. Bodies are bounded in the app (app/limits/body.py).
"""

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.error_codes import ERRORS

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class HeadersTooLarge(Exception):
    """Raised from a parser callback: uvicorn then stops parsing and answers."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self, *args: Any, max_header_bytes: int, header_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.header_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._time_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timing_headers()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0
        self._time_headers()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_timing_headers()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; ours when the error was the size."""
        if self.header_bytes > self.max_header_bytes:
            self._refuse("headers_too_large", "The request's headers are over the limit.")
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > self.max_header_bytes:
            raise HeadersTooLarge

    def _time_headers(self) -> None:
        self._stop_timing_headers()
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_timing_headers(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        """Headers unfinished (or none sent at all) after HEADER_TIMEOUT seconds. A
        connection idle between requests is uvicorn's keep-alive timeout's to close."""
        self.header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self._refuse("request_timeout", "The request's headers took too long.")

    def _refuse(self, code: str, message: str) -> None:
        status = ERRORS[code].status
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body)
        )
        self.transport.close()
